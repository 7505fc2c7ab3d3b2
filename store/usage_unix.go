//go:build unix

package store

import (
	"io/fs"
	"syscall"
)

// allocated is the disk space a file occupies. Badger preallocates sparse memtable and
// value-log files at twice their configured size, so the apparent size would overstate usage.
func allocated(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int64(st.Blocks) * 512
	}
	return fi.Size()
}
