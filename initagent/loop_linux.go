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
	dev, lf, err := attachLoop(s.File)
	if err != nil {
		return "", err
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

// attachLoop attaches file to a free loop device, read-only, detached
// automatically when its last user goes. The caller keeps the returned
// open device until something else (a mount, a device-mapper table) holds
// it.
func attachLoop(file string) (string, *os.File, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", nil, err
	}
	defer f.Close()
	// Another process could take the free device first; retry a few times.
	for try := 0; ; try++ {
		dev, err := loop.FindDevice()
		if err != nil {
			return "", nil, fmt.Errorf("find a free loop device: %w: is the loop module in the initramfs?", err)
		}
		lf, err := os.OpenFile(dev, os.O_RDWR, 0)
		if err != nil {
			return "", nil, err
		}
		cfg := unix.LoopConfig{Fd: uint32(f.Fd())}
		cfg.Info.Flags = unix.LO_FLAGS_READ_ONLY | unix.LO_FLAGS_AUTOCLEAR
		copy(cfg.Info.File_name[:], file)
		err = unix.IoctlLoopConfigure(int(lf.Fd()), &cfg)
		if err == nil {
			return dev, lf, nil
		}
		lf.Close()
		if !errors.Is(err, unix.EBUSY) || try == 4 {
			return "", nil, &os.PathError{Op: "configure loop device", Path: dev, Err: err}
		}
	}
}
