package onnxrt_test

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/infergate/infergate/inference/onnxrt"
	"github.com/infergate/infergate/inference/tensor"
	onnxpb "github.com/infergate/infergate/proto/onnx"
)

// runner is what runMLCases needs of a model.
type runner interface {
	Run(map[string]*tensor.Tensor, []string) (map[string]*tensor.Tensor, error)
}

// mlCaseFile is export_trees.py's format: gen.py's, with NaN as null.
type mlCaseFile struct {
	Model string `json:"model"`
	Cases []struct {
		Inputs  map[string]mlTensor `json:"inputs"`
		Outputs map[string]mlTensor `json:"outputs"`
	} `json:"cases"`
}

type mlTensor struct {
	Shape []int64    `json:"shape"`
	Data  []*float64 `json:"data"`
}

func (m mlTensor) values() []float64 {
	v := make([]float64, len(m.Data))
	for i, p := range m.Data {
		v[i] = math.NaN()
		if p != nil {
			v[i] = *p
		}
	}
	return v
}

// runMLCases runs every case of testdata/trees/<name>.json through m and
// compares with the framework's predictions (rtol 1e-4, atol 1e-5; labels
// exactly).
func runMLCases(t *testing.T, m runner, name string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "trees", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var cf mlCaseFile
	if err := json.Unmarshal(b, &cf); err != nil {
		t.Fatal(err)
	}
	if len(cf.Cases) == 0 {
		t.Fatal("no cases")
	}
	for ci, c := range cf.Cases {
		in := make(map[string]*tensor.Tensor)
		for k, v := range c.Inputs {
			f := make([]float32, len(v.Data))
			for i, x := range v.values() {
				f[i] = float32(x)
			}
			in[k] = tensor.FromFloat32(f, v.Shape...)
		}
		out, err := m.Run(in, nil)
		if err != nil {
			t.Fatalf("case %d: %v", ci, err)
		}
		for k, want := range c.Outputs {
			got := out[k]
			if got == nil {
				t.Fatalf("case %d: no output %q (have %v)", ci, k, out)
			}
			if !slices.Equal(got.Shape, want.Shape) {
				t.Fatalf("case %d: output %q has shape %v, want %v", ci, k, got.Shape, want.Shape)
			}
			g, w := asFloat64(got), want.values()
			for i := range w {
				tol := 1e-5 + 1e-4*math.Abs(w[i])
				if got.DType == tensor.Int64 {
					tol = 0
				}
				if !(math.Abs(g[i]-w[i]) <= tol) {
					t.Fatalf("case %d: %s[%d] = %g, the framework says %g", ci, k, i, g[i], w[i])
				}
			}
		}
	}
}

// TestTreeAndLinearModels runs the ai.onnx.ml models export_trees.py built
// from xgboost and scikit-learn models and compares with their predictions.
func TestTreeAndLinearModels(t *testing.T) {
	for _, name := range []string{"xgb_reg", "xgb_reg_v5", "xgb_bin", "xgb_multi", "rf_reg", "rf_cls", "gb_bin",
		"logreg_multi", "logreg_bin", "scaled_linreg"} {
		t.Run(name, func(t *testing.T) {
			m, err := onnxrt.LoadFile(filepath.Join("testdata", "trees", name+".onnx"))
			if err != nil {
				t.Fatal(err)
			}
			runMLCases(t, m, name)
		})
	}
}

// TestZipMapServesScores: ZipMap's output is served as the [N, classes]
// float32 scores tensor.
func TestZipMapServesScores(t *testing.T) {
	m, err := onnxrt.LoadFile("testdata/trees/rf_cls.onnx")
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, o := range m.Outputs() {
		if o.Name == "output_probability" {
			found = true
			if o.DType != tensor.Float {
				t.Fatalf("ZipMap output has type %s, want float32", o.DType)
			}
		}
	}
	if !found {
		t.Fatalf("outputs %v", m.Outputs())
	}
}

// TestTreeModelErrors: malformed ensembles are refused at load with the
// reason, never run into a loop or out of range.
func TestTreeModelErrors(t *testing.T) {
	for _, tc := range []struct {
		name, file, attr string
		mutate           func(v []int64) []int64
		want             string
	}{
		{"two roots", "xgb_reg", "nodes_truenodeids", func(v []int64) []int64 { v[3] = 1; return v }, "more than one root"},
		{"dangling child", "xgb_reg", "nodes_falsenodeids", func(v []int64) []int64 { v[0] = 999; return v }, "missing node 999"},
		{"short attribute", "xgb_reg", "nodes_featureids", func(v []int64) []int64 { return v[:3] }, "nodes_featureids has 3 entries"},
		{"leaf weight on a branch", "xgb_reg", "target_nodeids", func(v []int64) []int64 { v[0] = 0; return v }, "not a leaf"},
		{"target out of range", "xgb_reg", "target_ids", func(v []int64) []int64 { v[0] = 4; return v }, "target 4"},
		{"cycle", "xgb_reg_v5", "nodes_falsenodeids", func(v []int64) []int64 { v[1] = 0; return v }, "reached twice"},
		{"root out of range", "xgb_reg_v5", "tree_roots", func(v []int64) []int64 { v[0] = -1; return v }, "tree root -1"},
		{"leaf out of range", "xgb_reg_v5", "nodes_trueleafs", func(v []int64) []int64 { v[0] = 1; return v }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", "trees", tc.file+".onnx"))
			if err != nil {
				t.Fatal(err)
			}
			var mp onnxpb.ModelProto
			if err := protoUnmarshal(b, &mp); err != nil {
				t.Fatal(err)
			}
			found := false
			for _, a := range mp.Graph.Node[0].Attribute {
				if a.Name == tc.attr {
					a.Ints = tc.mutate(a.Ints)
					found = true
				}
			}
			if !found {
				t.Fatalf("no attribute %s", tc.attr)
			}
			bb, err := protoMarshal(&mp)
			if err != nil {
				t.Fatal(err)
			}
			m, err := onnxrt.Load(bb)
			if tc.want == "" {
				// Valid or not, it must load or refuse cleanly and run without panicking.
				if err == nil {
					in := map[string]*tensor.Tensor{"input": tensor.FromFloat32(make([]float32, 12), 2, 6)}
					if _, err := m.Run(in, nil); err != nil && strings.Contains(err.Error(), "internal error") {
						t.Fatal(err)
					}
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// BenchmarkTrees: tree ensembles from export_trees.py at batch 1 and 32
// (docs/runtime.md compares these with ONNX Runtime).
func BenchmarkTrees(b *testing.B) {
	for _, name := range []string{"xgb_reg", "rf_reg", "xgb_multi"} {
		m, err := onnxrt.LoadFile(filepath.Join("testdata", "trees", name+".onnx"))
		if err != nil {
			b.Fatal(err)
		}
		for _, n := range []int{1, 32} {
			x := make([]float32, n*6)
			for i := range x {
				x[i] = float32(i%13)/6.5 - 1
			}
			in := map[string]*tensor.Tensor{"input": tensor.FromFloat32(x, int64(n), 6)}
			b.Run(fmt.Sprintf("%s/batch=%d", name, n), func(b *testing.B) {
				for b.Loop() {
					if _, err := m.Run(in, nil); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
