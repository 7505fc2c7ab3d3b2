package store

import (
	"io/fs"

	"golang.org/x/sys/windows"
)

// allocated is the apparent size: Badger on Windows extends its files to their
// full size rather than leaving them sparse.
func allocated(fi fs.FileInfo) int64 { return fi.Size() }

// freeBytes is the space in dir's volume available to this process's user
// (GetDiskFreeSpaceEx honours quotas, as statfs's f_bavail does on Unix).
func freeBytes(dir string) (int64, bool) {
	p, err := windows.UTF16PtrFromString(dir)
	if err != nil {
		return 0, false
	}
	var avail, total, free uint64
	if err := windows.GetDiskFreeSpaceEx(p, &avail, &total, &free); err != nil {
		return 0, false
	}
	return int64(avail), true
}
