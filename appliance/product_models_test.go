package appliance

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/infergate/infergate/inference/onnxrt"
	"github.com/infergate/infergate/inference/tensor"
	"github.com/infergate/infergate/internal/testutil"
	"github.com/infergate/infergate/web"
)

// TestUploadedModelsThroughThePipeline is issue 11's "through the product":
// a 2-D CNN and an ONNX-ML tree ensemble are uploaded through the
// dashboard's upload API (the endpoint the dashboard's upload form calls,
// with the admin token) as new models of a running appliance; requests for
// them are produced to the requests topic and the results on the results
// topic must equal what the runtime computes in process on the same inputs.
func TestUploadedModelsThroughThePipeline(t *testing.T) {
	a := start(t, testConfig(t))
	api := newAPIClient(t, a)
	prod := producer(t, a)

	cases := []struct {
		name, file string
		requests   int
	}{
		{"cnn2d", filepath.Join("..", "inference", "onnxrt", "testdata", "cnn2d_opset17.onnx"), 6},
		{"rfreg", filepath.Join("..", "inference", "onnxrt", "testdata", "trees", "rf_reg.onnx"), 20},
	}
	var recs []*kgo.Record
	rng := rand.New(rand.NewPCG(11, 12))
	want := map[string][]float32{} // request_id -> expected prediction, flattened
	for _, c := range cases {
		file, err := os.ReadFile(c.file)
		if err != nil {
			t.Fatal(err)
		}
		var up struct {
			Name    string `json:"name"`
			Version int64  `json:"version"`
		}
		api.json("POST", "/api/v1/models/"+c.name+"/versions?version=1", file, 201, &up)
		if up.Name != c.name || up.Version != 1 {
			t.Fatalf("upload of %s: %+v", c.file, up)
		}
		m, err := onnxrt.Load(file)
		if err != nil {
			t.Fatal(err)
		}
		in, outs := m.Inputs(), m.Outputs()
		if len(in) != 1 || len(outs) != 1 || in[0].DType != tensor.Float {
			t.Fatalf("%s: want one float32 input and one output, got %+v -> %+v", c.file, in, outs)
		}
		row := in[0].Shape[1:]
		n := int64(1)
		for _, d := range row {
			if d < 1 {
				t.Fatalf("%s: input shape %v has a free dimension besides the batch", c.file, in[0].Shape)
			}
			n *= d
		}
		for i := range c.requests {
			data := make([]float32, n)
			for j := range data {
				data[j] = float32(rng.NormFloat64())
			}
			got, err := m.Run(map[string]*tensor.Tensor{in[0].Name: tensor.FromFloat32(data, append([]int64{1}, row...)...)}, nil)
			if err != nil {
				t.Fatal(err)
			}
			id := fmt.Sprintf("%s-%d", c.name, i)
			want[id] = got[outs[0].Name].Float32s()
			if len(want[id]) == 0 {
				t.Fatalf("%s: output %s is not float32", c.file, outs[0].Name)
			}
			v, _ := json.Marshal(map[string]any{"request_id": id, "model": c.name, "features": nest(data, row)})
			recs = append(recs, &kgo.Record{Key: []byte(id), Value: v})
		}
	}
	testutil.Eventually(t, 2*time.Minute, func() error {
		var models struct {
			Models []web.Model `json:"models"`
		}
		api.json("GET", "/api/v1/models", nil, 200, &models)
		for _, c := range cases {
			if s := modelState(models.Models, c.name, 1); s != web.ModelAvailable {
				return fmt.Errorf("%s version 1: %q", c.name, s)
			}
		}
		return nil
	})
	produce(t, prod, recs...)

	cons, err := kgo.NewClient(kgo.SeedBrokers(a.BrokerAddr()), kgo.ConsumeTopics(a.Config().Pipeline.ResultsTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	seen := map[string]bool{}
	for len(seen) < len(want) {
		fs := cons.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%d of %d results after 3m", len(seen), len(want))
		}
		if err := fs.Err(); err != nil {
			t.Fatal(err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			var res struct {
				RequestID  string          `json:"request_id"`
				Model      string          `json:"model"`
				Prediction json.RawMessage `json:"prediction"`
			}
			if err := json.Unmarshal(r.Value, &res); err != nil {
				t.Fatalf("result %s: %v", r.Value, err)
			}
			exp, ok := want[res.RequestID]
			if !ok || seen[res.RequestID] {
				t.Fatalf("unexpected or repeated result %s", r.Value)
			}
			seen[res.RequestID] = true
			var pred any
			if err := json.Unmarshal(res.Prediction, &pred); err != nil {
				t.Fatalf("result %s: prediction: %v", r.Value, err)
			}
			got := flatten(pred, nil)
			if len(got) != len(exp) {
				t.Fatalf("%s: %d values, want %d: %s", res.RequestID, len(got), len(exp), r.Value)
			}
			for i := range exp {
				// Batched calls may pick another GEMM kernel than the
				// single-row reference: equal up to float32 rounding.
				if d := math.Abs(got[i] - float64(exp[i])); d > 1e-5*math.Max(1, math.Abs(float64(exp[i]))) {
					t.Errorf("%s [%d]: %v, want %v (model %s)", res.RequestID, i, got[i], exp[i], res.Model)
				}
			}
		})
	}
}

// nest shapes flat row-major data as nested lists of the given shape.
func nest(data []float32, shape []int64) any {
	if len(shape) == 0 {
		return data[0]
	}
	if len(shape) == 1 {
		return data
	}
	step := len(data) / int(shape[0])
	out := make([]any, shape[0])
	for i := range out {
		out[i] = nest(data[i*step:(i+1)*step], shape[1:])
	}
	return out
}

// flatten appends the numbers of nested JSON lists in order.
func flatten(v any, out []float64) []float64 {
	switch x := v.(type) {
	case float64:
		return append(out, x)
	case []any:
		for _, e := range x {
			out = flatten(e, out)
		}
	}
	return out
}
