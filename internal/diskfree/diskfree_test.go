package diskfree_test

import (
	"path/filepath"
	"runtime"
	"testing"

	"github.com/infergate/infergate/internal/diskfree"
)

// Free measures a temp dir, and says it cannot measure a path that does not exist.
func TestFree(t *testing.T) {
	dir := t.TempDir()
	before, ok := diskfree.Free(dir)
	if !ok {
		if runtime.GOOS != "linux" && runtime.GOOS != "windows" && runtime.GOOS != "darwin" {
			t.Skip("not measured on " + runtime.GOOS)
		}
		t.Fatal("Free of a temp dir: not measured")
	}
	if before <= 0 {
		t.Fatalf("Free = %d", before)
	}
	if _, ok := diskfree.Free(filepath.Join(dir, "missing", "dir")); ok {
		t.Error("Free of a missing directory claims a measurement")
	}
}
