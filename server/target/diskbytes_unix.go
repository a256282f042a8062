//go:build unix

package target

import (
	"os"
	"syscall"
)

// allocated is the bytes of disk a file takes: its allocated blocks.
func allocated(fi os.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int64(st.Blocks) * 512
	}
	return fi.Size()
}
