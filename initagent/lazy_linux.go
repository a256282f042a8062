package initagent

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/overboot/overboot/boot"
	"github.com/overboot/overboot/initagent/keeper"
	"github.com/overboot/overboot/internal/nbd"
	"github.com/overboot/overboot/internal/verity"
)

// lazyDMName is the device-mapper name of a lazy root's verity device.
const lazyDMName = "overboot-lower"

// lazyAttach starts the keeper on one end of a socket pair, gives the
// kernel the other end as an NBD device holding the image and, behind it,
// its dm-verity tree (both read on demand), and stacks dm-verity on it.
// The keeper stays for a Keep step to hand it iSCSI sessions.
func (e *LinuxExecutor) lazyAttach(s LazyAttach) (string, error) {
	h := s.Source
	v := h.Verity
	t, err := lazyTarget(h)
	if err != nil {
		return "", err
	}
	if e.keeper != nil {
		return "", fmt.Errorf("a keeper runs already (pid %d): one lazy root per machine", e.keeper.Pid())
	}
	t0 := time.Now()
	kernelEnd, agentEnd, err := socketpairFiles()
	if err != nil {
		return "", err
	}
	defer kernelEnd.Close()
	k, err := keeper.Start(keeper.Config{Image: &keeper.Image{URL: h.URL, Mirrors: h.Mirrors, Size: h.Size, TreeURL: v.HashURL, TreeMirrors: v.HashMirrors, TreeSize: v.HashSize,
		Fill: h.Mode == boot.LowerFill, CacheBytes: s.CacheBytes, Name: string(h.Digest), Report: s.Report, WorkingSet: h.WorkingSet}}, agentEnd)
	agentEnd.Close()
	if err != nil {
		return "", err
	}
	tKeeper := time.Since(t0)
	dev, err := nbd.Connect(nbd.Config{Index: nbd.AnyIndex, Size: h.Size + v.HashSize}, kernelEnd)
	if err != nil {
		k.Kill()
		return "", err
	}
	e.keeper = k
	tNBD := time.Since(t0) - tKeeper
	t.DataDevice, t.HashDevice = dev.Path(), dev.Path()
	if t.Salt == nil {
		// The tree's own superblock says; a wrong one fails every read.
		sb, err := readSuperblockAt(dev.Path(), h.Size)
		if err != nil {
			return "", fmt.Errorf("dm-verity tree of %s: %w", h.Digest, err)
		}
		if sb.DataBlocks != t.DataBlocks {
			return "", fmt.Errorf("dm-verity tree of %s: it describes %d bytes, the image has %d", h.Digest, sb.DataBlocks*verity.BlockSize, h.Size)
		}
		t.Salt = sb.Salt
	}
	d, err := verity.Create(lazyDMName, t)
	if err != nil {
		return "", fmt.Errorf("dm-verity on %s for %s: %w", dev.Path(), h.Digest, err)
	}
	for _, p := range []string{dev.Path(), d.Path} {
		if err := setReadAhead(p, lazyReadAheadKB); err != nil {
			return "", err
		}
	}
	os.Remove(s.Link)
	if err := os.Symlink(d.Path, s.Link); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s: %s (keeper pid %d) checked by dm-verity as %s, root hash %s (keeper ready %.2fs, nbd %.2fs, verity %.2fs)",
		strings.TrimPrefix(string(h.Digest), "sha256:")[:12], dev.Path(), k.Pid(), d.Path, v.RootHash[:12],
		tKeeper.Seconds(), tNBD.Seconds(), (time.Since(t0) - tKeeper - tNBD).Seconds()), nil
}

// lazyReadAheadKB is the read-ahead of a lazy root's devices: every
// request is a round trip through the keeper, and the kernel's default of
// 128 KiB makes a sequential read of the device (dd, a checksum of the
// image) one of them per 128 KiB.
const lazyReadAheadKB = 2048

// setReadAhead sets the read-ahead of the block device at path (/dev/NAME).
func setReadAhead(path string, kb int) error {
	f := "/sys/block/" + strings.TrimPrefix(path, "/dev/") + "/queue/read_ahead_kb"
	if err := os.WriteFile(f, []byte(fmt.Sprintf("%d\n", kb)), 0); err != nil {
		return fmt.Errorf("read-ahead of %s: %w", path, err)
	}
	return nil
}

// readSuperblockAt reads the dm-verity superblock at offset off of the
// block device at path.
func readSuperblockAt(path string, off int64) (*verity.Superblock, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return verity.ReadSuperblock(io.NewSectionReader(f, off, verity.BlockSize))
}

// socketpairFiles is nbd.Socketpair with both ends as files: one for the
// kernel, one for the keeper process.
func socketpairFiles() (kernel, agent *os.File, err error) {
	k, a, err := nbd.Socketpair()
	if err != nil {
		return nil, nil, err
	}
	defer a.Close()
	type filer interface{ File() (*os.File, error) }
	f, ok := a.(filer)
	if !ok {
		k.Close()
		return nil, nil, fmt.Errorf("nbd socket pair: %T has no file", a)
	}
	af, err := f.File()
	if err != nil {
		k.Close()
		return nil, nil, err
	}
	return k, af, nil
}
