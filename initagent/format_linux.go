package initagent

import (
	"fmt"
	"io"
	"os"
	"time"

	diskfile "github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/ext4"
)

// formatBlank makes ext4 on a blank device (go-diskfs: no mkfs binary in
// the initramfs).
func formatBlank(s FormatBlank) (string, error) {
	f, err := os.OpenFile(s.Device, os.O_RDWR, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	head := make([]byte, BlankCheckBytes)
	if _, err := io.ReadFull(f, head); err != nil {
		return "", fmt.Errorf("read %s: %w", s.Device, err)
	}
	switch ClassifyDisk(head) {
	case DiskExt4:
		return "ext4", nil
	case DiskOther:
		return "", fmt.Errorf("%s is neither ext4 nor blank: not formatting a disk that holds data (reset the machine's disk on the server to start over)", s.Device)
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return "", err
	}
	start := time.Now()
	_, err = ext4.Create(diskfile.New(f, false), size, 0, 512, &ext4.Params{
		VolumeName: s.Label, SectorsPerBlock: 8,
		// e2fsck finds go-diskfs's resize inode invalid: no online growth.
		Features: []ext4.FeatureOpt{ext4.WithFeatureReservedGDTBlocksForExpansion(false)},
	})
	if err != nil {
		return "", fmt.Errorf("format %s: %w", s.Device, err)
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("format %s: %w", s.Device, err)
	}
	return fmt.Sprintf("blank: formatted %d MiB ext4 in %.1fs", size>>20, time.Since(start).Seconds()), nil
}
