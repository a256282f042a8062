package mkimage

import (
	"io/fs"
	"syscall"
)

// attrs are the owner, permission bits and modification time of a file.
type attrs struct {
	UID, GID uint32
	Mode     uint32 // permission bits with setuid, setgid and sticky
	Mtime    int64  // seconds since the epoch
}

// fileAttrs reads attrs from an Lstat result.
func fileAttrs(fi fs.FileInfo) (attrs, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return attrs{}, false
	}
	return attrs{UID: st.Uid, GID: st.Gid, Mode: st.Mode & 0o7777, Mtime: st.Mtim.Sec}, true
}
