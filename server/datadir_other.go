//go:build !linux

package server

import (
	"errors"
	"os"
)

func openLockFile(p string) (*os.File, error) {
	return os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
}

func openNoFollow(p string) (*os.File, error) { return os.Open(p) }

// tryLock: no flock on this system.
func tryLock(f *os.File) (bool, error) { return false, errors.ErrUnsupported }
