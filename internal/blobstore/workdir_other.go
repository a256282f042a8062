//go:build !linux

package blobstore

// holdDir: no flock on this system; the directory is only remembered.
func holdDir(p string) (*heldDir, error) {
	return &heldDir{path: p}, nil
}
