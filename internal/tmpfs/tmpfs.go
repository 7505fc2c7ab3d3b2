//go:build linux

// Package tmpfs mounts a small tmpfs for tests that fill a disk. Mounting needs root (or
// CAP_SYS_ADMIN): where it is not permitted — most containers, unprivileged CI — the test is
// skipped with a message, in CI too, because whether mount works is a property of the machine,
// decided by trying it.
package tmpfs

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Mount mounts a tmpfs of size bytes on a new directory, unmounted when the test ends.
func Mount(t testing.TB, size int64) string {
	t.Helper()
	dir, err := TryMount(t, size)
	if err != nil {
		t.Skip(err)
	}
	return dir
}

// TryMount is Mount for a test that can go on without the tmpfs: it returns the error
// instead of skipping.
func TryMount(t testing.TB, size int64) (string, error) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		return "", fmt.Errorf("cannot mount a tmpfs to fill (needs root or CAP_SYS_ADMIN): %w", err)
	}
	t.Cleanup(func() {
		// The code under test may still be closing files; retry a busy unmount briefly,
		// then detach it lazily.
		for range 50 {
			if err := unix.Unmount(dir, 0); err == nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		_ = unix.Unmount(dir, unix.MNT_DETACH)
	})
	return dir, nil
}

// Fill writes a file in dir until the file system has at most leave bytes free (leave 0:
// until it is full, ENOSPC) and returns its path; removing it gives the space back.
func Fill(t testing.TB, dir string, leave int64) string {
	t.Helper()
	path := filepath.Join(dir, fmt.Sprintf("filler-%d", time.Now().UnixNano()))
	f, err := os.Create(path)
	if err != nil {
		t.Fatalf("creating the filler: %v", err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		free := Free(t, dir)
		if free <= leave {
			return path
		}
		n := min(int64(len(buf)), free-leave)
		if _, err := f.Write(buf[:n]); err != nil {
			if leave == 0 {
				return path // full
			}
			t.Fatalf("filling %s: %v", dir, err)
		}
	}
}

// Free is the space left in dir's file system.
func Free(t testing.TB, dir string) int64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * int64(st.Bsize)
}
