//go:build !linux

package mkimage

import "io/fs"

// attrs are the owner, permission bits and modification time of a file.
type attrs struct {
	UID, GID uint32
	Mode     uint32
	Mtime    int64
}

// fileAttrs is Linux only: mksquashfs images are built on Linux.
func fileAttrs(fs.FileInfo) (attrs, bool) { return attrs{}, false }
