package initagent

import (
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// switchRoot makes root the new "/" and executes init as PID 1, like
// util-linux switch_root: move the kernel filesystems, move root over "/",
// chroot, delete the initramfs's files (they would hold RAM forever), exec.
func switchRoot(root, init string) error {
	for _, m := range []string{"/dev", "/proc", "/sys", "/run"} {
		dst := filepath.Join(root, m)
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m, dst, "", unix.MS_MOVE, ""); err != nil {
			return &os.PathError{Op: "move mount " + m + " to", Path: dst, Err: err}
		}
	}
	old, err := os.Open("/")
	if err != nil {
		return err
	}
	defer old.Close()
	if err := unix.Chdir(root); err != nil {
		return err
	}
	if err := unix.Mount(root, "/", "", unix.MS_MOVE, ""); err != nil {
		return &os.PathError{Op: "move mount to /", Path: root, Err: err}
	}
	if err := unix.Chroot("."); err != nil {
		return err
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(old.Fd()), &st); err == nil {
		// Best effort: a leftover file costs RAM, not correctness.
		_ = removeAllOnDevice(int(old.Fd()), st.Dev)
	}
	argv := append([]string{init}, os.Args[1:]...)
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "UROOT_") {
			env = append(env, kv)
		}
	}
	return &os.PathError{Op: "exec", Path: init, Err: unix.Exec(init, argv, env)}
}

// removeAllOnDevice deletes everything below the directory dirfd that lives
// on device dev, without crossing into other filesystems.
func removeAllOnDevice(dirfd int, dev uint64) error {
	d := os.NewFile(uintptr(dirfd), "dir")
	names, err := d.Readdirnames(-1)
	if err != nil {
		return err
	}
	for _, n := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(dirfd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || st.Dev != dev {
			continue
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			fd, err := unix.Openat(dirfd, n, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				continue
			}
			_ = removeAllOnDevice(fd, dev)
			unix.Close(fd)
			_ = unix.Unlinkat(dirfd, n, unix.AT_REMOVEDIR)
			continue
		}
		_ = unix.Unlinkat(dirfd, n, 0)
	}
	return nil
}
