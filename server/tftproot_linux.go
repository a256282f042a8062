package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// openPublic opens the file at path, absolute and without symlinks (as
// filepath.EvalSymlinks leaves it), if every user of this machine may read
// it: each directory from / down has the others-execute bit, and the file
// is regular with the others-read bit. It opens one component at a time
// from / without following symlinks and checks each descriptor it opened,
// so what it returns is what it checked; a device or FIFO is never opened.
// A refusal by mode bits is a *notPublicError.
func openPublic(path string) (*os.File, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("%s: not an absolute path", path)
	}
	// Directories are opened O_PATH: entering one needs only its execute
	// bit, as for any user.
	fd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: "/", Err: err}
	}
	defer func() {
		if fd >= 0 {
			unix.Close(fd)
		}
	}()
	dir := "/"
	names := strings.Split(strings.TrimPrefix(filepath.Clean(path), "/"), "/")
	for i, name := range names {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return nil, &os.PathError{Op: "stat", Path: dir, Err: err}
		}
		if st.Mode&0o001 == 0 {
			return nil, &notPublicError{fmt.Sprintf("directory %s is mode %04o: not every user may enter it", dir, st.Mode&0o7777)}
		}
		if name == "" { // path is /
			return nil, errors.New("/ is not a regular file")
		}
		p := filepath.Join(dir, name)
		if i < len(names)-1 {
			next, err := unix.Openat(fd, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				return nil, &os.PathError{Op: "open", Path: p, Err: err}
			}
			unix.Close(fd)
			fd, dir = next, p
			continue
		}
		// Look first, so that only a regular file is opened at all.
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return nil, &os.PathError{Op: "stat", Path: p, Err: err}
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			return nil, errors.New(p + " is not a regular file")
		}
		ffd, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: p, Err: err}
		}
		if err := unix.Fstat(ffd, &st); err != nil {
			unix.Close(ffd)
			return nil, &os.PathError{Op: "stat", Path: p, Err: err}
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			unix.Close(ffd)
			return nil, errors.New(p + " is not a regular file")
		}
		if st.Mode&0o004 == 0 {
			unix.Close(ffd)
			return nil, &notPublicError{fmt.Sprintf("%s is mode %04o: not every user may read it", p, st.Mode&0o7777)}
		}
		unix.SetNonblock(ffd, false)
		return os.NewFile(uintptr(ffd), path), nil
	}
	return nil, fmt.Errorf("%s: empty path", path)
}
