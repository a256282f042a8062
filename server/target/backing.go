package target

import (
	"fmt"
	"os"
)

// FileBacking is a LUN stored in a file: read-only (a squashfs image, a
// raw disk) or writable (a machine's private disk).
type FileBacking struct {
	f    *os.File
	size int64
	ro   bool
}

// OpenFile opens a file LUN. Its size is rounded down to whole blocks.
func OpenFile(path string, readOnly bool) (*FileBacking, error) {
	flag := os.O_RDWR
	if readOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	size := fi.Size() / BlockSize * BlockSize
	if size == 0 {
		f.Close()
		return nil, fmt.Errorf("%s: smaller than one %d-byte block", path, BlockSize)
	}
	return &FileBacking{f: f, size: size, ro: readOnly}, nil
}

// CreateSparse opens path as a writable LUN, creating it sparse (mode
// 0600) with size bytes when it does not exist.
func CreateSparse(path string, size int64) (*FileBacking, error) {
	if size < BlockSize || size%BlockSize != 0 {
		return nil, fmt.Errorf("%s: size %d: want a positive multiple of %d", path, size, BlockSize)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		if err := f.Truncate(size); err != nil {
			f.Close()
			os.Remove(path)
			return nil, err
		}
		f.Close()
	} else if !os.IsExist(err) {
		return nil, err
	}
	return OpenFile(path, false)
}

func (b *FileBacking) ReadAt(p []byte, off int64) (int, error)  { return b.f.ReadAt(p, off) }
func (b *FileBacking) WriteAt(p []byte, off int64) (int, error) { return b.f.WriteAt(p, off) }
func (b *FileBacking) Size() int64                              { return b.size }
func (b *FileBacking) ReadOnly() bool                           { return b.ro }
func (b *FileBacking) Sync() error                              { return b.f.Sync() }
func (b *FileBacking) Close() error                             { return b.f.Close() }
