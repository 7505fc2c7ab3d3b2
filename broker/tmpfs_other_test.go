//go:build !linux

package broker

import "testing"

func mountTmpfs(t *testing.T, _ int64) string {
	t.Skip("tmpfs tests run on Linux only")
	return ""
}

func fillTmpfs(*testing.T, string, int64) string { return "" }
