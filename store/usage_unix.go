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

// freeBytes is the space in dir's file system that an unprivileged process may still use.
func freeBytes(dir string) (int64, bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, false
	}
	return int64(st.Bavail) * int64(st.Bsize), true
}
