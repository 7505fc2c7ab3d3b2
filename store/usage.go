package store

import (
	"os"
	"path/filepath"
)

// dirUsage sums the disk space of Badger's table and memtable files (LSM) and value-log files.
func dirUsage(dir string) (lsm, vlog int64) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, 0
	}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil || !fi.Mode().IsRegular() {
			continue
		}
		switch filepath.Ext(e.Name()) {
		case ".sst", ".mem":
			lsm += allocated(fi)
		case ".vlog":
			vlog += allocated(fi)
		}
	}
	return lsm, vlog
}
