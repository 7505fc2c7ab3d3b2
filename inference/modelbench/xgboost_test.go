package modelbench

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/infergate/infergate/inference/onnxrt"
	"github.com/infergate/infergate/inference/tensor"
)

// TestOpenXGBoostJSON: a model.json file, and a version directory holding
// one, open as XGBoost models and run.
func TestOpenXGBoostJSON(t *testing.T) {
	src := filepath.Join("..", "onnxrt", "testdata", "trees", "xgb_reg.model.json")
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "risk")
	if err := os.MkdirAll(filepath.Join(dir, "3"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "3", "model.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{src, dir} {
		m, err := Open(path, 1)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if m.Format != "XGBoost JSON" || len(m.Inputs) != 1 || m.Inputs[0].Name != onnxrt.XGBoostInputName {
			t.Fatalf("%s: %+v", path, m)
		}
		out, err := m.Run(map[string]*tensor.Tensor{onnxrt.XGBoostInputName: tensor.FromFloat32(make([]float32, 12), 2, 6)})
		if err != nil {
			t.Fatal(err)
		}
		if p := out[onnxrt.XGBoostOutputName]; p == nil || len(p.Float32s()) != 2 {
			t.Fatalf("%s: outputs %v", path, out)
		}
	}
}
