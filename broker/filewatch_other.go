//go:build !linux

package broker

// newFileWatch has no watch to offer here: every round scans the data dir.
func newFileWatch() fileWatch { return nil }
