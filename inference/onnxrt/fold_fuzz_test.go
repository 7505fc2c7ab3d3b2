package onnxrt_test

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/infergate/infergate/inference/demo"
	"github.com/infergate/infergate/inference/onnxrt"
)

// FuzzLoadAllocs: loading any file, however mutated, allocates at most a
// bound proportional to the file plus one set by LoadOptions.MaxFoldedBytes
// (FuzzLoad checks that it never panics). A bound on bytes, not a timing.
func FuzzLoadAllocs(f *testing.F) {
	f.Add(demo.ONNX)
	f.Add(foldBomb(8, 1<<18))
	for _, name := range []string{"gemm.onnx", "ops_opset13.onnx", "norm_opset17.onnx"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	const maxFolded = 1 << 20
	f.Fuzz(func(t *testing.T, b []byte) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, _ = onnxrt.LoadWithOptions(b, onnxrt.LoadOptions{MaxFoldedBytes: maxFolded})
		runtime.ReadMemStats(&after)
		got := after.TotalAlloc - before.TotalAlloc
		if bound := 64*uint64(len(b)) + 4*maxFolded + 1<<20; got > bound {
			t.Fatalf("a %d-byte file allocated %d bytes loading, over the bound %d", len(b), got, bound)
		}
	})
}
