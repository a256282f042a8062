package vmtest

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// SanDiskOptions shape BuildSanDisk.
type SanDiskOptions struct {
	Kernel, Initramfs string // copied into the boot partition
	Append            string // the kernel command line SYSLINUX passes
	RootDir           string // tree copied into the root partition (ext4)
	BootMiB, RootMiB  int64  // partition sizes (default 32 and 24)
	MBR               string // SYSLINUX's MBR code (default /usr/lib/syslinux/mbr/mbr.bin)
}

// Partition numbers on the sanboot disk.
const (
	SanBootPartition = 1 // FAT, SYSLINUX, kernel and initramfs
	SanRootPartition = 2 // ext4, the root
)

// BuildSanDisk writes a small bootable raw disk to path, without root or
// loop devices: an MBR (SYSLINUX's boot code), partition 1 FAT with
// SYSLINUX (mtools), the kernel and initramfs, partition 2 ext4 made from
// RootDir (mkfs.ext4 -d). Any BIOS that boots disks, iPXE's sanboot
// included, boots it.
func BuildSanDisk(ctx context.Context, path string, o SanDiskOptions) error {
	if o.BootMiB == 0 {
		o.BootMiB = 32
	}
	if o.RootMiB == 0 {
		o.RootMiB = 24
	}
	if o.MBR == "" {
		o.MBR = "/usr/lib/syslinux/mbr/mbr.bin"
	}
	const sector = 512
	const first = 2048 // partition 1 starts at 1 MiB
	bootSectors := o.BootMiB << 20 / sector
	rootSectors := o.RootMiB << 20 / sector
	tmp, err := os.MkdirTemp(filepath.Dir(path), ".sandisk-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	run := func(name string, args ...string) error {
		out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
		}
		return nil
	}

	bootImg := filepath.Join(tmp, "boot.img")
	cfg := filepath.Join(tmp, "syslinux.cfg")
	text := "DEFAULT overboot\nPROMPT 0\nTIMEOUT 0\nLABEL overboot\n  KERNEL /vmlinuz\n  INITRD /initrd\n  APPEND " + o.Append + "\n"
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		return err
	}
	// -H: the hidden sectors before the partition, which SYSLINUX's boot
	// sector adds to every read.
	if err := run("mformat", "-i", bootImg, "-C", "-T", fmt.Sprint(bootSectors), "-h", "64", "-s", "32", "-H", fmt.Sprint(first), "-v", "SANBOOT", "::"); err != nil {
		return fmt.Errorf("boot partition (install mtools): %w", err)
	}
	if err := run("syslinux", "--install", bootImg); err != nil {
		return fmt.Errorf("boot partition (install syslinux): %w", err)
	}
	for _, c := range [][2]string{{o.Kernel, "::/vmlinuz"}, {o.Initramfs, "::/initrd"}, {cfg, "::/syslinux.cfg"}} {
		if err := run("mcopy", "-i", bootImg, c[0], c[1]); err != nil {
			return err
		}
	}

	rootImg := filepath.Join(tmp, "root.img")
	if err := run("mkfs.ext4", "-q", "-F", "-L", "sanroot", "-d", o.RootDir, rootImg, fmt.Sprintf("%dM", o.RootMiB)); err != nil {
		return fmt.Errorf("root partition: %w", err)
	}

	mbrCode, err := os.ReadFile(o.MBR)
	if err != nil {
		return fmt.Errorf("MBR boot code (install syslinux-common): %w", err)
	}
	if len(mbrCode) > 440 {
		return fmt.Errorf("%s: %d bytes, more than the 440 of an MBR's code", o.MBR, len(mbrCode))
	}
	mbr := make([]byte, sector)
	copy(mbr, mbrCode)
	entry := func(i int, active bool, typ byte, start, count int64) {
		e := mbr[446+16*i : 446+16*(i+1)]
		if active {
			e[0] = 0x80
		}
		// CHS fields say "use LBA": 1023/254/63.
		copy(e[1:4], []byte{0xfe, 0xff, 0xff})
		e[4] = typ
		copy(e[5:8], []byte{0xfe, 0xff, 0xff})
		binary.LittleEndian.PutUint32(e[8:], uint32(start))
		binary.LittleEndian.PutUint32(e[12:], uint32(count))
	}
	entry(SanBootPartition-1, true, 0x0e, first, bootSectors) // FAT16 LBA
	entry(SanRootPartition-1, false, 0x83, first+bootSectors, rootSectors)
	mbr[510], mbr[511] = 0x55, 0xaa

	out, err := os.OpenFile(path+".tmp", os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer os.Remove(path + ".tmp")
	if _, err := out.Write(mbr); err != nil {
		out.Close()
		return err
	}
	for _, p := range []struct {
		img string
		at  int64
	}{{bootImg, first * sector}, {rootImg, (first + bootSectors) * sector}} {
		in, err := os.Open(p.img)
		if err != nil {
			out.Close()
			return err
		}
		_, err = io.Copy(io.NewOffsetWriter(out, p.at), in)
		in.Close()
		if err != nil {
			out.Close()
			return err
		}
	}
	if err := out.Truncate((first + bootSectors + rootSectors) * sector); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}
