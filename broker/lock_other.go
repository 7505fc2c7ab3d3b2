//go:build !unix && !windows

package broker

import (
	"fmt"
	"os"
	"path/filepath"
)

const lockFileName = "infergate-broker.lock"

// lockDataDir only checks that the data dir is writable where flock is not
// available; running two brokers on one data dir there is not detected.
func lockDataDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFileName), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("broker.data_dir: %s is not writable: %w", dir, err)
	}
	return f, nil
}

func unlockDataDir(f *os.File) {
	if f != nil {
		f.Close()
	}
}
