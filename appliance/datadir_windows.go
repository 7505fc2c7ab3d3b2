package appliance

import (
	"os"
	"path/filepath"
)

// defaultDataDir is data_dir's default on Windows: under %ProgramData%, so
// that the service (whose working directory is System32) and an
// interactive `infergate run` use the same data.
func defaultDataDir() string { return filepath.Join(WindowsHome(), "data") }

// WindowsHome is %ProgramData%\infergate: the service's working directory,
// with its infergate.yaml, log and data dir.
func WindowsHome() string {
	pd := os.Getenv("ProgramData")
	if pd == "" {
		pd = `C:\ProgramData`
	}
	return filepath.Join(pd, "infergate")
}
