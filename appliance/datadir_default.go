//go:build !windows

package appliance

// defaultDataDir is data_dir's default: next to where infergate runs.
func defaultDataDir() string { return "./infergate-data" }

// restrictDataDir has nothing to do here: prepareDataDir creates the data
// dir with mode 0750 and the admin token with 0600.
func restrictDataDir(string) error { return nil }
