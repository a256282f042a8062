package initagent

import (
	"bytes"
	"encoding/hex"
	"fmt"
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

// lazyAttach checks the tree against the document, starts the keeper on
// one end of a socket pair, gives the kernel the other end as an NBD
// device, and stacks dm-verity on it with the tree on a loop device. It
// returns the keeper, for a Keep step to hand it iSCSI sessions.
func (e *LinuxExecutor) lazyAttach(s LazyAttach) (string, error) {
	h := s.Source
	v := h.Verity
	root, err := hex.DecodeString(v.RootHash)
	if err != nil {
		return "", fmt.Errorf("root hash: %w", err)
	}
	salt, err := hex.DecodeString(v.Salt)
	if err != nil {
		return "", fmt.Errorf("salt: %w", err)
	}
	tf, err := os.Open(s.TreeFile)
	if err != nil {
		return "", err
	}
	sb, err := verity.ReadSuperblock(tf)
	tf.Close()
	if err != nil {
		return "", fmt.Errorf("dm-verity tree of %s: %w", h.Digest, err)
	}
	if sb.DataBlocks*verity.BlockSize != uint64(h.Size) || v.Salt != "" && !bytes.Equal(sb.Salt, salt) {
		return "", fmt.Errorf("dm-verity tree of %s: it describes %d bytes with salt %x, the document %d bytes with salt %s", h.Digest, sb.DataBlocks*verity.BlockSize, sb.Salt, h.Size, v.Salt)
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
	k, err := keeper.Start(keeper.Config{Image: &keeper.Image{URL: h.URL, Size: h.Size, Fill: h.Mode == boot.LowerFill, CacheBytes: s.CacheBytes, Name: string(h.Digest)}}, agentEnd)
	agentEnd.Close()
	if err != nil {
		return "", err
	}
	tKeeper := time.Since(t0)
	dev, err := nbd.Connect(nbd.Config{Index: nbd.AnyIndex, Size: h.Size}, kernelEnd)
	if err != nil {
		k.Kill()
		return "", err
	}
	e.keeper = k
	hashDev, lf, err := attachLoop(s.TreeFile)
	if err != nil {
		return "", err
	}
	defer lf.Close()
	tNBD := time.Since(t0) - tKeeper
	t := sb.Target(dev.Path(), hashDev, root)
	d, err := verity.Create(lazyDMName, t)
	if err != nil {
		return "", fmt.Errorf("dm-verity on %s for %s: %w", dev.Path(), h.Digest, err)
	}
	os.Remove(s.Link)
	if err := os.Symlink(d.Path, s.Link); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s: %s (keeper pid %d) checked by dm-verity as %s, root hash %s (keeper ready %.2fs, nbd %.2fs, verity %.2fs)",
		strings.TrimPrefix(string(h.Digest), "sha256:")[:12], dev.Path(), k.Pid(), d.Path, v.RootHash[:12],
		tKeeper.Seconds(), tNBD.Seconds(), (time.Since(t0) - tKeeper - tNBD).Seconds()), nil
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
