//go:build unix

package broker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockFileName sits next to kfake's files; kfake ignores names it does not know.
const lockFileName = "infergate-broker.lock"

// lockDataDir takes an exclusive flock on the data dir. Two brokers appending
// to the same segment files would corrupt them; the kernel drops the lock when
// the process dies, so a crash never leaves a stale lock behind.
func lockDataDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockFileName)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("broker.data_dir: %s is not writable: %w", dir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("broker.data_dir: %s is in use by another running broker: %w", dir, ErrDataDirLocked)
		}
		return nil, fmt.Errorf("broker.data_dir: locking %s: %w", path, err)
	}
	return f, nil
}

func unlockDataDir(f *os.File) {
	if f != nil {
		f.Close() // closing the descriptor releases the flock
	}
}
