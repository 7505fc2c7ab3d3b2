package onnxrt_test

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/infergate/infergate/inference/onnxrt"
	"github.com/infergate/infergate/inference/tensor"
)

// TestXGBoostJSON loads the xgboost models export_trees.py saved in xgboost's
// JSON format and compares with xgboost's own predictions (the same cases as
// the hand-converted ONNX models, whose output is named differently).
func TestXGBoostJSON(t *testing.T) {
	for _, tc := range []struct{ name, output string }{
		{"xgb_reg", "variable"}, {"xgb_bin", "probability"}, {"xgb_multi", "probabilities"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", "trees", tc.name+".model.json"))
			if err != nil {
				t.Fatal(err)
			}
			m, err := onnxrt.LoadXGBoostJSON(b)
			if err != nil {
				t.Fatal(err)
			}
			in, out := m.Inputs(), m.Outputs()
			if len(in) != 1 || in[0].Name != onnxrt.XGBoostInputName || in[0].DType != tensor.Float ||
				len(in[0].Shape) != 2 || in[0].Shape[1] != 6 {
				t.Fatalf("inputs %+v", in)
			}
			if len(out) != 1 || out[0].Name != onnxrt.XGBoostOutputName {
				t.Fatalf("outputs %+v", out)
			}
			runMLCases(t, renamed{m, tc.output}, tc.name)
		})
	}
}

// renamed serves a model's predictions under the name the case file uses.
type renamed struct {
	m    *onnxrt.Model
	name string
}

func (r renamed) Run(in map[string]*tensor.Tensor, _ []string) (map[string]*tensor.Tensor, error) {
	out, err := r.m.Run(in, nil)
	if err != nil {
		return nil, err
	}
	p := out[onnxrt.XGBoostOutputName]
	res := map[string]*tensor.Tensor{r.name: p}
	if len(p.Shape) == 2 && p.Shape[1] > 1 {
		// multi:softprob: xgboost's predict() is the most probable class.
		rows, cols := int(p.Shape[0]), int(p.Shape[1])
		label := make([]int64, rows)
		for i := range rows {
			row := p.Float32s()[i*cols : (i+1)*cols]
			for j := range row {
				if row[j] > row[label[i]] {
					label[i] = int64(j)
				}
			}
		}
		res["label"] = &tensor.Tensor{DType: tensor.Int64, Shape: []int64{int64(rows)}, Data: label}
	}
	return res, nil
}

func TestXGBoostJSONErrors(t *testing.T) {
	b, err := os.ReadFile("testdata/trees/xgb_reg.model.json")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, tc := range []struct{ name, json, want string }{
		{"not json", "{", "not an xgboost JSON model"},
		{"empty object", "{}", "num_feature 0"},
		{"objective", strings.Replace(s, `"reg:squarederror"`, `"rank:pairwise"`, 1), `objective "rank:pairwise" is not supported`},
		{"booster", strings.Replace(s, `"name":"gbtree"`, `"name":"gblinear"`, 1), `booster "gblinear"`},
		{"feature", strings.Replace(s, `"num_feature":"6","num_target"`, `"num_feature":"1","num_target"`, 1), "splits on feature"},
		{"base score", strings.Replace(s, `"base_score":"`, `"base_score":"x`, 1), "base_score"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := onnxrt.LoadXGBoostJSON([]byte(tc.json))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// FuzzLoadXGBoostJSON: arbitrary bytes load or fail cleanly, and a model
// that loads runs on zeros and NaNs without an internal error.
func FuzzLoadXGBoostJSON(f *testing.F) {
	// Small seeds: the coverage-guided fuzzer minimises every new input, which
	// takes minutes on the 50 KB test models.
	small := `{"learner":{"gradient_booster":{"name":"gbtree","model":{"trees":[` +
		`{"left_children":[1,-1,-1],"right_children":[2,-1,-1],"split_indices":[0,0,0],"split_conditions":[0.5,1,2],"default_left":[1,0,0],"split_type":[0,0,0]},` +
		`{"left_children":[1,3,-1,-1,-1],"right_children":[2,4,-1,-1,-1],"split_indices":[1,0,0,0,0],"split_conditions":[-0.5,0.25,1,2,3],"default_left":[false,true,false,false,false]}` +
		`],"tree_info":[0,%s]}},"learner_model_param":{"base_score":"5E-1","num_class":"%s","num_feature":"2"},"objective":{"name":"%s"}}}`
	f.Add([]byte(fmt.Sprintf(small, "0", "0", "reg:squarederror")))
	f.Add([]byte(fmt.Sprintf(small, "0", "0", "binary:logistic")))
	f.Add([]byte(fmt.Sprintf(small, "0", "0", "count:poisson")))
	f.Add([]byte(fmt.Sprintf(small, "1", "2", "multi:softprob")))
	f.Add([]byte(fmt.Sprintf(small, "1", "2", "multi:softmax")))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := onnxrt.LoadXGBoostJSON(b)
		if err != nil {
			if strings.Contains(err.Error(), "internal error") {
				t.Fatal(err)
			}
			return
		}
		nf := m.Inputs()[0].Shape[1]
		if nf > 1<<12 {
			return
		}
		x := make([]float32, 2*nf)
		x[0] = float32(math.NaN())
		if _, err := m.Run(map[string]*tensor.Tensor{onnxrt.XGBoostInputName: tensor.FromFloat32(x, 2, nf)}, nil); err != nil {
			t.Fatal(err)
		}
	})
}
