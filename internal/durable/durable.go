// Package durable makes writes to files survive a crash: what a rename or
// a write put on disk is flushed before the caller goes on. It is used by
// the blob store, mkimage, the state store's backups and the disk files.
package durable

import (
	"fmt"
	"os"
)

// Sync flushes a file, or a directory's entries (after a create, rename
// or remove in it), to disk.
func Sync(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return nil
}
