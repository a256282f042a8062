//go:build !linux

package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// openPublic opens the file at path, absolute and without symlinks, if
// every user may read it: each directory from / down has the
// others-execute bit, and the file is regular with the others-read bit.
// (The Linux version checks the descriptors it opens; this one the paths.)
func openPublic(path string) (*os.File, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("%s: not an absolute path", path)
	}
	for d := filepath.Dir(path); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return nil, err
		}
		if fi.Mode()&0o001 == 0 {
			return nil, &notPublicError{fmt.Sprintf("directory %s is mode %04o: not every user may enter it", d, fi.Mode().Perm())}
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, errors.New(path + " is not a regular file")
	}
	if fi.Mode()&0o004 == 0 {
		return nil, &notPublicError{fmt.Sprintf("%s is mode %04o: not every user may read it", path, fi.Mode().Perm())}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	if fi2, err := f.Stat(); err != nil || !os.SameFile(fi, fi2) {
		f.Close()
		return nil, fmt.Errorf("%s changed while being opened", path)
	}
	return f, nil
}
