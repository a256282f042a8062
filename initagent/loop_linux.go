package initagent

import (
	"errors"
	"fmt"
	"os"

	"github.com/u-root/u-root/pkg/mount/loop"
	"golang.org/x/sys/unix"
)

// loopMount attaches the image to a read-only loop device (LOOP_CONFIGURE,
// Linux 5.8+) and mounts it read-only.
func loopMount(s LoopMount) (string, error) {
	f, err := os.Open(s.File)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var dev string
	var lf *os.File
	// Another process could take the free device first; retry a few times.
	for try := 0; ; try++ {
		dev, err = loop.FindDevice()
		if err != nil {
			return "", fmt.Errorf("find a free loop device: %w: is the loop module in the initramfs?", err)
		}
		lf, err = os.OpenFile(dev, os.O_RDWR, 0)
		if err != nil {
			return "", err
		}
		cfg := unix.LoopConfig{Fd: uint32(f.Fd())}
		cfg.Info.Flags = unix.LO_FLAGS_READ_ONLY | unix.LO_FLAGS_AUTOCLEAR
		copy(cfg.Info.File_name[:], s.File)
		err = unix.IoctlLoopConfigure(int(lf.Fd()), &cfg)
		if err == nil {
			break
		}
		lf.Close()
		if !errors.Is(err, unix.EBUSY) || try == 4 {
			return "", &os.PathError{Op: "configure loop device", Path: dev, Err: err}
		}
	}
	// With AUTOCLEAR, the device detaches when the last user goes: keep our
	// fd until the mount holds it.
	defer lf.Close()
	if err := doMount(dev, s.Target, s.FSType, []string{"ro"}); err != nil {
		if errors.Is(err, unix.EINVAL) {
			return "", fmt.Errorf("%w: the image is not a valid %s filesystem", err, s.FSType)
		}
		return "", err
	}
	return dev + " read-only", nil
}
