package modelserver

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/infergate/infergate/inference/onnxrt"
	"github.com/infergate/infergate/inference/tfserving"
	"github.com/infergate/infergate/proto/servingpb"
	"github.com/infergate/infergate/proto/tfpb"
)

// TestXGBoostJSONVersion serves an XGBoost JSON model (<model>/<version>/
// model.json, written by inference/onnxrt/testdata/export_trees.py) over
// gRPC and compares Predict with xgboost's own predictions for the same rows,
// missing values (NaN) included.
func TestXGBoostJSONVersion(t *testing.T) {
	src := filepath.Join("..", "onnxrt", "testdata", "trees")
	b, err := os.ReadFile(filepath.Join(src, "xgb_bin.model.json"))
	if err != nil {
		t.Fatal(err)
	}
	base := t.TempDir()
	dir := filepath.Join(base, "1")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, XGBoostFileName), b, 0o644); err != nil {
		t.Fatal(err)
	}
	var cases struct {
		Cases []struct {
			Inputs map[string]struct {
				Shape []int64
				Data  []*float64
			} `json:"inputs"`
			Outputs map[string]struct {
				Shape []int64
				Data  []*float64
			} `json:"outputs"`
		} `json:"cases"`
	}
	cb, err := os.ReadFile(filepath.Join(src, "xgb_bin.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(cb, &cases); err != nil {
		t.Fatal(err)
	}
	c := cases.Cases[len(cases.Cases)-1]
	in, want := c.Inputs["input"], c.Outputs["probability"]
	x := make([]float32, len(in.Data))
	for i, p := range in.Data {
		x[i] = float32(math.NaN())
		if p != nil {
			x[i] = float32(*p)
		}
	}

	s := startServer(t, testConfig(tfserving.ModelConfig{Name: "risk", BasePath: base}))
	cl := dial(t, s.GRPCAddr())
	resp, err := cl.pred.Predict(context.Background(), &servingpb.PredictRequest{
		ModelSpec: specFor("risk"),
		Inputs:    map[string]*tfpb.TensorProto{onnxrt.XGBoostInputName: floatProto(in.Shape, x, false)},
	})
	if err != nil {
		t.Fatal(err)
	}
	got := resp.Outputs[onnxrt.XGBoostOutputName].GetFloatVal()
	if len(got) != len(want.Data) {
		t.Fatalf("%d predictions, want %d", len(got), len(want.Data))
	}
	for i, w := range want.Data {
		if math.Abs(float64(got[i])-*w) > 1e-5+1e-4*math.Abs(*w) {
			t.Fatalf("prediction %d = %g, xgboost says %g", i, got[i], *w)
		}
	}
}
