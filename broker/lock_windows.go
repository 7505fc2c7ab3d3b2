package broker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/windows"
)

// lockFileName sits next to kfake's files; kfake ignores names it does not know.
const lockFileName = "infergate-broker.lock"

// lockDataDir takes an exclusive LockFileEx lock on the lock file, Windows'
// counterpart of flock: held until the handle closes, released by the
// system when the process dies, so a crash never leaves a stale lock behind.
func lockDataDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockFileName)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("broker.data_dir: %s is not writable: %w", dir, err)
	}
	// One byte at offset 0 stands for the whole file; the byte need not exist.
	err = windows.LockFileEx(windows.Handle(f.Fd()), windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, new(windows.Overlapped))
	if err != nil {
		f.Close()
		if errors.Is(err, windows.ERROR_LOCK_VIOLATION) {
			return nil, fmt.Errorf("broker.data_dir: %s is in use by another running broker: %w", dir, ErrDataDirLocked)
		}
		return nil, fmt.Errorf("broker.data_dir: locking %s: %w", path, err)
	}
	return f, nil
}

func unlockDataDir(f *os.File) {
	if f != nil {
		f.Close() // closing the handle releases the lock
	}
}
