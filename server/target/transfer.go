package target

import "io"

// writePiece is the size of the pieces a write's data is kept in.
const writePiece = 256 << 10

// writeData is the Data-Out of a WRITE (or of a VERIFY that compares) as
// far as it has arrived: pieces of writePiece bytes, the last one no
// larger than the write needs, each allocated when the first byte lands
// in it. A write holds what the initiator sent, never what its CDB
// announced.
type writeData struct {
	pieces [][]byte // each full (writePiece bytes) but the last
	n      int      // bytes held
	size   int      // bytes the write takes in all
}

func newWriteData(size int) *writeData { return &writeData{size: size} }

// Len is the bytes held; a nil writeData holds none.
func (d *writeData) Len() int {
	if d == nil {
		return 0
	}
	return d.n
}

// add appends p, cut at the write's size.
func (d *writeData) add(p []byte) {
	p = p[:min(len(p), d.size-d.n)]
	for len(p) > 0 {
		last := len(d.pieces) - 1
		if last < 0 || len(d.pieces[last]) == cap(d.pieces[last]) {
			d.pieces = append(d.pieces, make([]byte, 0, min(writePiece, d.size-d.n)))
			last++
		}
		b := d.pieces[last]
		k := copy(b[len(b):cap(b)], p)
		d.pieces[last] = b[:len(b)+k]
		d.n += k
		p = p[k:]
	}
}

// piece returns the data from off to the end of its piece.
func (d *writeData) piece(off int) []byte {
	return d.pieces[off/writePiece][off%writePiece:]
}

// writeTo writes the data to b at off: in one write to a CowBacking
// (after a crash it reads back all old or all new), piece by piece to a
// FileBacking (a file write is not atomic anyway), and from one buffer to
// any other Backing, which gets a single WriteAt as it always did.
func (d *writeData) writeTo(b Backing, off int64) error {
	var pieces [][]byte
	if d != nil {
		pieces = d.pieces
	}
	switch b := b.(type) {
	case *CowBacking:
		_, err := b.writeVec(pieces, off)
		return err
	case *FileBacking:
		for _, p := range pieces {
			if _, err := b.WriteAt(p, off); err != nil {
				return err
			}
			off += int64(len(p))
		}
		return nil
	}
	var buf []byte
	switch len(pieces) {
	case 0:
	case 1:
		buf = pieces[0]
	default:
		buf = make([]byte, 0, d.n)
		for _, p := range pieces {
			buf = append(buf, p...)
		}
	}
	_, err := b.WriteAt(buf, off)
	return err
}

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
