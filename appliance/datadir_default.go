//go:build !windows

package appliance

// defaultDataDir is data_dir's default: next to where infergate runs.
func defaultDataDir() string { return "./infergate-data" }
