package initramfs

import (
	"fmt"
	"io"
)

// newc format: "070701", then 13 fields of 8 hex digits, the name with its
// NUL, padded to 4 bytes, then the data padded to 4 bytes (the kernel's
// init/initramfs.c reads exactly this).
const (
	newcMagic     = "070701"
	newcCRCMagic  = "070702"
	newcHeaderLen = 110
	trailerName   = "TRAILER!!!"
)

// Mode bits of cpio records (the same as stat's).
const (
	modeDir     = 0o040000
	modeFile    = 0o100000
	modeSymlink = 0o120000
	modeChar    = 0o020000
	modeBlock   = 0o060000
	modeFIFO    = 0o010000
	modeType    = 0o170000
)

// Entry is one record of an archive.
type Entry struct {
	Name     string
	Mode     uint32 // type and permission bits, as in stat(2)
	UID, GID uint32
	Size     int64
	Major    uint32 // device number of a device node
	Minor    uint32
	Link     string // symlink target
}

// Type returns a one-letter type as ls prints it.
func (e Entry) Type() byte {
	switch e.Mode & modeType {
	case modeDir:
		return 'd'
	case modeSymlink:
		return 'l'
	case modeChar:
		return 'c'
	case modeBlock:
		return 'b'
	case modeFIFO:
		return 'p'
	case modeFile:
		return '-'
	}
	return '?'
}

// cpioWriter writes newc records with stable inode numbers.
type cpioWriter struct {
	w     io.Writer
	ino   uint32
	n     int64
	count int
}

func (c *cpioWriter) write(p []byte) error {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return err
}

func (c *cpioWriter) pad() error {
	if r := c.n % 4; r != 0 {
		return c.write(make([]byte, 4-r))
	}
	return nil
}

// record writes one header, name and data. All times are zero so the
// output depends only on the inputs.
func (c *cpioWriter) record(name string, mode, uid, gid uint32, major, minor uint32, data io.Reader, size int64) error {
	c.ino++
	nlink := uint32(1)
	if mode&modeType == modeDir {
		nlink = 2
	}
	ino := c.ino
	if name == trailerName {
		ino = 0
	}
	hdr := fmt.Sprintf("%s%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		newcMagic, ino, mode, uid, gid, nlink, 0, size, 0, 0, major, minor, len(name)+1, 0)
	if err := c.write([]byte(hdr)); err != nil {
		return err
	}
	if err := c.write(append([]byte(name), 0)); err != nil {
		return err
	}
	if err := c.pad(); err != nil {
		return err
	}
	if size > 0 {
		n, err := io.CopyN(c.w, data, size)
		c.n += n
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if err := c.pad(); err != nil {
			return err
		}
	}
	if name != trailerName {
		c.count++
	}
	return nil
}

func (c *cpioWriter) trailer() error {
	return c.record(trailerName, 0, 0, 0, 0, 0, nil, 0)
}
