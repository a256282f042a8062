package initagent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// mount performs a Mount step. The early mounts may be there already: the
// kernel command line was read before the plan ran, which may have needed
// /proc.
func mount(s Mount) error {
	if s.PhaseOf == PhaseEarly && isMountPoint(s.Target) {
		return nil
	}
	return doMount(s.Source, s.Target, s.FSType, s.Options)
}

// mkdirs performs a Mkdir step.
func mkdirs(s Mkdir) error {
	for _, p := range s.Paths {
		if err := os.MkdirAll(p, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// mountFlags splits mount(8)-style options into MS_* flags and the data
// string the filesystem reads.
func mountFlags(opts []string) (uintptr, string) {
	var flags uintptr
	var data []string
	for _, o := range opts {
		switch o {
		case "ro":
			flags |= unix.MS_RDONLY
		case "nosuid":
			flags |= unix.MS_NOSUID
		case "nodev":
			flags |= unix.MS_NODEV
		case "noexec":
			flags |= unix.MS_NOEXEC
		case "noatime":
			flags |= unix.MS_NOATIME
		case "nodiratime":
			flags |= unix.MS_NODIRATIME
		case "relatime":
			flags |= unix.MS_RELATIME
		case "sync":
			flags |= unix.MS_SYNCHRONOUS
		default:
			data = append(data, o)
		}
	}
	return flags, strings.Join(data, ",")
}

func doMount(source, target, fstype string, opts []string) error {
	if err := os.MkdirAll(target, 0o755); err != nil {
		return err
	}
	flags, data := mountFlags(opts)
	// The kernel shows the source as given: mount the device a link such
	// as /run/overboot/root.dev points to, so /proc/mounts names /dev/sdX.
	if strings.HasPrefix(source, RunDir+"/") {
		if dev, err := filepath.EvalSymlinks(source); err == nil {
			source = dev
		}
	}
	if err := unix.Mount(source, target, fstype, flags, data); err != nil {
		err = &os.PathError{Op: "mount " + fstype + " " + source + " on", Path: target, Err: err}
		if errors.Is(err, unix.ENODEV) {
			return fmt.Errorf("%w: the kernel does not know %s: is its module in the initramfs (overboot mkimage initramfs --modules)?", err, fstype)
		}
		return err
	}
	return nil
}

// isMountPoint reports whether dir is on another filesystem than its parent.
func isMountPoint(dir string) bool {
	var st, parent unix.Stat_t
	if unix.Stat(dir, &st) != nil || unix.Stat(filepath.Join(dir, ".."), &parent) != nil {
		return false
	}
	return st.Dev != parent.Dev
}

// MountProc mounts /proc, for reading the kernel command line before the
// plan runs.
func MountProc() error {
	if isMountPoint("/proc") {
		return nil
	}
	return doMount("proc", "/proc", "proc", []string{"nosuid", "nodev", "noexec"})
}
