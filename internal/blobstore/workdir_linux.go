package blobstore

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
)

// holdDir opens the directory p and takes an exclusive flock on it without
// waiting. It returns nil, and no error, if p is gone or someone else holds
// it (a starting server about to remove it).
func holdDir(p string) (*heldDir, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if errors.Is(err, syscall.EWOULDBLOCK) {
		f.Close()
		return nil, nil
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	w := &heldDir{path: p, f: f}
	if !stillThere(w) { // removed between our open and our lock
		f.Close()
		return nil, nil
	}
	return w, nil
}
