//go:build !unix && !windows

package store

import "io/fs"

func allocated(fi fs.FileInfo) int64 { return fi.Size() }

// freeBytes is not measured here: the disk guard is off.
func freeBytes(string) (int64, bool) { return 0, false }
