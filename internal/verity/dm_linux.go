package verity

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The device-mapper ioctl interface, include/uapi/linux/dm-ioctl.h:
// every request is one buffer, a struct dm_ioctl header (unix.DmIoctl,
// 312 bytes) followed by its payload at data_start; DM_TABLE_LOAD's
// payload is a struct dm_target_spec (unix.DmTargetSpec, 40 bytes) and
// the NUL-terminated parameter string, padded to 8 bytes.
const (
	controlPath = "/dev/mapper/control"
	// controlSysfs holds the control node's MAJOR:MINOR once dm-mod is
	// loaded, for when no devtmpfs made /dev/mapper/control.
	controlSysfs = "/sys/class/misc/device-mapper/dev"
	// dmNameMax is DM_NAME_LEN less the NUL.
	dmNameMax = unix.DM_NAME_LEN - 1
)

// dmVersion is the interface version requests carry. The kernel accepts
// a request when the major matches and the minor is not newer than its
// own (check_version in drivers/md/dm-ioctl.c); 4.0.0 asks for nothing
// newer than what every 4.x kernel has.
var dmVersion = [3]uint32{unix.DM_VERSION_MAJOR, 0, 0}

// Device is an active dm-verity device that Create set up.
type Device struct {
	// Name is the device-mapper name (dmsetup's).
	Name string
	// Path is the block device, /dev/dm-MINOR.
	Path string
	// Dev is the device number (unix.Mkdev).
	Dev uint64

	madeNode bool // Create made Path with mknod, so Remove removes it
}

// Create sets up the read-only dm-verity device name for t through
// /dev/mapper/control, as `dmsetup create NAME --readonly --table T`
// does (t.DmsetupCommand): DM_DEV_CREATE, DM_TABLE_LOAD with
// DM_READONLY_FLAG (dm-verity refuses a writable table), then
// DM_DEV_SUSPEND without DM_SUSPEND_FLAG, which resumes the device with
// the loaded table. It returns the device at /dev/dm-N, made with mknod
// when no devtmpfs did. If a step fails, the device is removed again.
//
// It needs CAP_SYS_ADMIN and the dm-mod and dm-verity modules loaded:
// the kernel's own request_module for dm-verity needs a modprobe, which
// an initramfs may not have. The reason for a failed table load is in
// the kernel log ("device-mapper: table: ...: verity: ...").
func Create(name string, t Target) (*Device, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if err := t.Validate(); err != nil {
		return nil, err
	}
	fd, err := openControl()
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)

	if _, err := dmIoctl(fd, unix.DM_VERSION, dmRequest("", 0, 0, nil)); err != nil {
		return nil, fmt.Errorf("device-mapper version (DM_VERSION on %s): %w", controlPath, err)
	}
	hdr, err := dmIoctl(fd, unix.DM_DEV_CREATE, dmRequest(name, 0, 0, nil))
	if err != nil {
		if errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("create dm device %s: %w: a device of that name exists (dmsetup remove %s)", name, err, name)
		}
		return nil, fmt.Errorf("create dm device %s: %w", name, err)
	}
	d := &Device{Name: name, Dev: hdr.Dev}
	d.Path = dmPath(d.Dev)
	fail := func(err error) (*Device, error) {
		if _, rerr := dmIoctl(fd, unix.DM_DEV_REMOVE, dmRequest(name, 0, 0, nil)); rerr != nil {
			err = fmt.Errorf("%w (and removing dm device %s again: %v)", err, name, rerr)
		}
		return nil, err
	}
	if _, err := dmIoctl(fd, unix.DM_TABLE_LOAD, tableLoadRequest(name, t)); err != nil {
		return fail(fmt.Errorf("load table %q into dm device %s: %w: is dm-verity loaded (modprobe dm-verity), are both devices readable block devices of the right size? the kernel log says why", t, name, err))
	}
	if _, err := dmIoctl(fd, unix.DM_DEV_SUSPEND, dmRequest(name, 0, 0, nil)); err != nil {
		return fail(fmt.Errorf("resume dm device %s: %w", name, err))
	}
	made, err := ensureNode(d.Path, d.Dev)
	if err != nil {
		return fail(err)
	}
	d.madeNode = made
	return d, nil
}

// Remove removes the device (DM_DEV_REMOVE), and its node if Create made
// it. The device must not be in use.
func (d *Device) Remove() error {
	fd, err := openControl()
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if _, err := dmIoctl(fd, unix.DM_DEV_REMOVE, dmRequest(d.Name, 0, 0, nil)); err != nil {
		if errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("remove dm device %s (%s): %w: is it still mounted or open?", d.Name, d.Path, err)
		}
		return fmt.Errorf("remove dm device %s (%s): %w", d.Name, d.Path, err)
	}
	if d.madeNode {
		if err := os.Remove(d.Path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// dmPath is the node of dm device dev: the kernel names the disk
// "dm-MINOR" (alloc_dev in drivers/md/dm.c). dev is encoded as
// huge_encode_dev does, which unix.Minor decodes.
func dmPath(dev uint64) string { return fmt.Sprintf("/dev/dm-%d", unix.Minor(dev)) }

// checkName allows the names a dm device can take and a shell prints
// unquoted: the kernel rejects "/" (and, lately, "." and "..").
func checkName(name string) error {
	if name == "" || len(name) > dmNameMax || name == "." || name == ".." ||
		strings.ContainsFunc(name, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.+", r))
		}) {
		return fmt.Errorf("dm device name %q: want 1 to %d of A-Z a-z 0-9 - _ . +", name, dmNameMax)
	}
	return nil
}

// openControl opens /dev/mapper/control, first making the node from
// sysfs when there is no devtmpfs (devtmpfs names it mapper/control).
func openControl() (int, error) {
	fd, err := unix.Open(controlPath, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		if merr := mknodControl(); merr != nil {
			return -1, merr
		}
		fd, err = unix.Open(controlPath, unix.O_RDWR|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: controlPath, Err: err}
	}
	return fd, nil
}

func mknodControl() error {
	b, err := os.ReadFile(controlSysfs)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("open %s: no such device, and no %s: is dm-mod loaded (modprobe dm-mod)?", controlPath, controlSysfs)
	}
	if err != nil {
		return err
	}
	var major, minor uint32
	if _, err := fmt.Sscanf(strings.TrimSpace(string(b)), "%d:%d", &major, &minor); err != nil {
		return fmt.Errorf("parse %s %q: %w", controlSysfs, b, err)
	}
	if err := os.MkdirAll(filepath.Dir(controlPath), 0o755); err != nil {
		return err
	}
	if err := unix.Mknod(controlPath, unix.S_IFCHR|0o600, int(unix.Mkdev(major, minor))); err != nil && !errors.Is(err, unix.EEXIST) {
		return &os.PathError{Op: "mknod", Path: controlPath, Err: err}
	}
	return nil
}

// ensureNode makes sure path is the block device dev: devtmpfs has made
// it by the time the table is loaded; without devtmpfs, mknod makes it.
// made reports a mknod.
func ensureNode(path string, dev uint64) (made bool, err error) {
	var st unix.Stat_t
	err = unix.Stat(path, &st)
	if errors.Is(err, unix.ENOENT) {
		if err := unix.Mknod(path, unix.S_IFBLK|0o600, int(dev)); err != nil {
			return false, &os.PathError{Op: "mknod", Path: path, Err: err}
		}
		return true, nil
	}
	if err != nil {
		return false, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK || uint64(st.Rdev) != dev {
		return false, fmt.Errorf("%s exists but is not block device %d:%d: a stale node? (/dev should be a devtmpfs)", path, unix.Major(dev), unix.Minor(dev))
	}
	return false, nil
}

// dmRequest lays out an ioctl buffer: the header for device name (empty
// for DM_VERSION) with flags and the number of target specs in payload,
// then payload at data_start.
func dmRequest(name string, flags, targets uint32, payload []byte) []byte {
	hdr := unix.DmIoctl{
		Version:      dmVersion,
		Data_size:    uint32(unix.SizeofDmIoctl + len(payload)),
		Data_start:   unix.SizeofDmIoctl,
		Target_count: targets,
		Flags:        flags,
	}
	copy(hdr.Name[:dmNameMax], name)
	buf := make([]byte, unix.SizeofDmIoctl+len(payload))
	copy(buf, unsafe.Slice((*byte)(unsafe.Pointer(&hdr)), unix.SizeofDmIoctl))
	copy(buf[unix.SizeofDmIoctl:], payload)
	return buf
}

// tableLoadRequest is DM_TABLE_LOAD's buffer: one read-only verity target
// over the whole device.
func tableLoadRequest(name string, t Target) []byte {
	params := t.Params()
	// The spec, the parameters and their NUL, padded so a next spec
	// would be 8-byte aligned (the kernel checks, libdevmapper pads).
	n := (unix.SizeofDmTargetSpec + len(params) + 1 + 7) &^ 7
	spec := unix.DmTargetSpec{
		Sector_start: 0,
		Length:       t.Sectors(),
		Next:         uint32(n), // from this spec to the next; unused for the last
	}
	copy(spec.Target_type[:], "verity")
	payload := make([]byte, n)
	copy(payload, unsafe.Slice((*byte)(unsafe.Pointer(&spec)), unix.SizeofDmTargetSpec))
	copy(payload[unix.SizeofDmTargetSpec:], params)
	return dmRequest(name, unix.DM_READONLY_FLAG, 1, payload)
}

// dmIoctl sends one request on the control fd and returns the header the
// kernel wrote back (dev, flags, the kernel's version).
func dmIoctl(fd int, req uint, buf []byte) (unix.DmIoctl, error) {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(unsafe.Pointer(&buf[0])))
	var hdr unix.DmIoctl
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&hdr)), unix.SizeofDmIoctl), buf)
	if errno != 0 {
		return hdr, errno
	}
	return hdr, nil
}
