package iscsi

import "io"

// readSpec is the Data-In of a READ: n bytes of b from off, read piece by
// piece as they are sent rather than held at once.
type readSpec struct {
	b   Backing
	off int64
	n   int
}

// readAt fills p with the bytes at off (relative to the READ's start).
func (r *readSpec) readAt(p []byte, off int) error {
	n, err := r.b.ReadAt(p, r.off+int64(off))
	if err == io.EOF {
		clear(p[n:])
		err = nil
	}
	return err
}
