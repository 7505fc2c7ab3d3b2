// Package diskfree measures the free space of a directory's file system, for the
// writers that must keep min_free_bytes free (see docs/operations.md, "Disk full").
package diskfree

// Free is the space in dir's file system that this process's user may still use
// (statfs's f_bavail on Unix, GetDiskFreeSpaceEx on Windows); ok is false where it
// cannot be measured, and then no floor applies.
func Free(dir string) (n int64, ok bool) { return free(dir) }
