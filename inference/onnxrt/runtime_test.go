package onnxrt_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/infergate/infergate/inference/demo"
	"github.com/infergate/infergate/inference/onnxrt"
	"github.com/infergate/infergate/inference/tensor"
	onnxpb "github.com/infergate/infergate/proto/onnx"
)

// caseFile is the format gen.py and ../demo/train.py write: inputs and the
// outputs torch or numpy computed for them.
type caseFile struct {
	Model string `json:"model"`
	Cases []struct {
		Inputs  map[string]jsonTensor `json:"inputs"`
		Outputs map[string]jsonTensor `json:"outputs"`
	} `json:"cases"`
}

type jsonTensor struct {
	Shape []int64   `json:"shape"`
	Data  []float32 `json:"data"`
}

func readCases(t testing.TB, name string) (*onnxrt.Model, *caseFile) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var cf caseFile
	if err := json.Unmarshal(b, &cf); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	m, err := onnxrt.LoadFile(filepath.Join("testdata", cf.Model))
	if err != nil {
		t.Fatal(err)
	}
	return m, &cf
}

// closeEnough allows for float32 rounding and a different summation order.
func closeEnough(got, want float32) bool {
	return math.Abs(float64(got-want)) <= 2e-5+2e-4*math.Abs(float64(want))
}

func TestMatchesReferenceOutputs(t *testing.T) {
	for _, name := range []string{"demo.json", "ops_opset13.json", "ops_opset11.json", "gemm.json", "mlp64.json", "norm_opset13.json", "norm_opset17.json"} {
		t.Run(strings.TrimSuffix(name, ".json"), func(t *testing.T) {
			m, cf := readCases(t, name)
			if len(cf.Cases) == 0 {
				t.Fatal("no cases")
			}
			for ci, c := range cf.Cases {
				in := make(map[string]*tensor.Tensor)
				for k, v := range c.Inputs {
					in[k] = tensor.FromFloat32(v.Data, v.Shape...)
				}
				// Run twice: the second run reuses pooled buffers, which must
				// not leak values from the first.
				for run := range 2 {
					out, err := m.Run(in, nil)
					if err != nil {
						t.Fatalf("case %d: %v", ci, err)
					}
					if len(out) != len(c.Outputs) {
						t.Fatalf("case %d: got %d outputs, want %d", ci, len(out), len(c.Outputs))
					}
					for k, want := range c.Outputs {
						got := out[k]
						if got == nil {
							t.Fatalf("case %d: output %q missing", ci, k)
						}
						if tensor.ShapeString(got.Shape) != tensor.ShapeString(want.Shape) {
							t.Fatalf("case %d run %d: %s shape %v, want %v", ci, run, k, got.Shape, want.Shape)
						}
						g := got.Float32s()
						for i := range want.Data {
							if !closeEnough(g[i], want.Data[i]) {
								t.Fatalf("case %d run %d: %s[%d] = %g, want %g", ci, run, k, i, g[i], want.Data[i])
							}
						}
					}
				}
			}
		})
	}
}

func mustDemo(t testing.TB) *onnxrt.Model {
	t.Helper()
	m, err := onnxrt.Load(demo.ONNX)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestSignature(t *testing.T) {
	m := mustDemo(t)
	in, out := m.Inputs(), m.Outputs()
	if len(in) != 1 || in[0].Name != "input" || in[0].DType != tensor.Float || tensor.ShapeString(in[0].Shape) != "[-1,16]" {
		t.Errorf("inputs = %+v", in)
	}
	if len(out) != 1 || out[0].Name != "output" || out[0].DType != tensor.Float || tensor.ShapeString(out[0].Shape) != "[-1,1]" {
		t.Errorf("outputs = %+v", out)
	}
	// The specs are copies: changing them must not change the model.
	in[0].Shape[1] = 3
	if m.Inputs()[0].Shape[1] != 16 {
		t.Error("Inputs() returned the model's own slice")
	}

	m2, _ := readCases(t, "ops_opset13.json")
	var names []string
	for _, s := range m2.Outputs() {
		names = append(names, s.Name)
	}
	if strings.Join(names, ",") != "features,probs" {
		t.Errorf("outputs of ops model = %v, want graph order features,probs", names)
	}
}

func TestRunSelectedOutputs(t *testing.T) {
	m, cf := readCases(t, "ops_opset13.json")
	c := cf.Cases[0]
	x := c.Inputs["x"]
	out, err := m.Run(map[string]*tensor.Tensor{"x": tensor.FromFloat32(x.Data, x.Shape...)}, []string{"probs"})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 || out["probs"] == nil {
		t.Fatalf("got outputs %v, want only probs", out)
	}
	_, err = m.Run(map[string]*tensor.Tensor{"x": tensor.FromFloat32(x.Data, x.Shape...)}, []string{"nope"})
	if !errors.Is(err, onnxrt.ErrInvalidInput) || !strings.Contains(err.Error(), `"nope"`) {
		t.Errorf("unknown output: err = %v, want ErrInvalidInput naming it", err)
	}
}

func TestRunRejectsInvalidInput(t *testing.T) {
	m := mustDemo(t)
	ok := make([]float32, 2*16)
	tests := []struct {
		name   string
		inputs map[string]*tensor.Tensor
		want   string
	}{
		{"missing", map[string]*tensor.Tensor{}, `missing input "input"`},
		{"nil tensor", map[string]*tensor.Tensor{"input": nil}, `missing input "input"`},
		{"unknown name", map[string]*tensor.Tensor{"input": tensor.FromFloat32(ok, 2, 16), "extra": tensor.FromFloat32(ok, 2, 16)}, `no input "extra"`},
		{"wrong name", map[string]*tensor.Tensor{"inputs": tensor.FromFloat32(ok, 2, 16)}, `no input "inputs"`},
		{"dtype", map[string]*tensor.Tensor{"input": {DType: tensor.Double, Shape: []int64{2, 16}, Data: make([]float64, 32)}}, "is DT_DOUBLE, the model expects DT_FLOAT"},
		{"width", map[string]*tensor.Tensor{"input": tensor.FromFloat32(make([]float32, 30), 2, 15)}, "shape [2,15], the model expects [-1,16]"},
		{"rank", map[string]*tensor.Tensor{"input": tensor.FromFloat32(ok, 32)}, "shape [32]"},
		{"data length", map[string]*tensor.Tensor{"input": tensor.FromFloat32(ok[:20], 2, 16)}, "needs 32 values"},
		{"data type", map[string]*tensor.Tensor{"input": {DType: tensor.Float, Shape: []int64{1, 16}, Data: make([]float64, 16)}}, "holds []float64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := m.Run(tt.inputs, nil)
			if !errors.Is(err, onnxrt.ErrInvalidInput) {
				t.Fatalf("err = %v, want ErrInvalidInput", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %q, want it to contain %q", err, tt.want)
			}
		})
	}
	// An empty batch is valid and gives an empty result.
	out, err := m.Run(map[string]*tensor.Tensor{"input": tensor.FromFloat32(nil, 0, 16)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := tensor.ShapeString(out["output"].Shape); got != "[0,1]" {
		t.Errorf("empty batch gives shape %s, want [0,1]", got)
	}
}

// graph builds a small model in Go, for error cases no exporter would write.
func graph(opset int64, inputs []*onnxpb.ValueInfoProto, outputs []string, inits []*onnxpb.TensorProto, nodes ...*onnxpb.NodeProto) []byte {
	g := &onnxpb.GraphProto{Name: "t", Node: nodes, Input: inputs, Initializer: inits}
	for _, o := range outputs {
		g.Output = append(g.Output, &onnxpb.ValueInfoProto{Name: o})
	}
	b, err := proto.Marshal(&onnxpb.ModelProto{
		IrVersion:   8,
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Version: opset}},
		Graph:       g,
	})
	if err != nil {
		panic(err)
	}
	return b
}

func protoUnmarshal(b []byte, m proto.Message) error { return proto.Unmarshal(b, m) }
func protoMarshal(m proto.Message) ([]byte, error)   { return proto.Marshal(m) }

func floatInput(name string, dims ...int64) *onnxpb.ValueInfoProto {
	return typedInput(name, onnxpb.TensorProto_FLOAT, dims...)
}

func typedInput(name string, et onnxpb.TensorProto_DataType, dims ...int64) *onnxpb.ValueInfoProto {
	shape := &onnxpb.TensorShapeProto{}
	for _, d := range dims {
		dim := &onnxpb.TensorShapeProto_Dimension{}
		if d < 0 {
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: "n"}
		} else {
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d}
		}
		shape.Dim = append(shape.Dim, dim)
	}
	return &onnxpb.ValueInfoProto{Name: name, Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
		TensorType: &onnxpb.TypeProto_Tensor{ElemType: int32(et), Shape: shape}}}}
}

func op(opType, name string, in, out []string) *onnxpb.NodeProto {
	return &onnxpb.NodeProto{OpType: opType, Name: name, Input: in, Output: out}
}

func TestLoadErrors(t *testing.T) {
	x := []*onnxpb.ValueInfoProto{floatInput("x", -1, 4)}
	tests := []struct {
		name  string
		bytes []byte
		want  string
	}{
		{"empty", nil, "not an ONNX model"},
		{"truncated", demo.ONNX[:len(demo.ONNX)/2], "not an ONNX model"},
		{"text", []byte("this is not a model at all, just some text\n"), "not an ONNX model"},
		{"unsupported op", graph(13, x, []string{"y"}, nil, op("NonMaxSuppression", "nms1", []string{"x"}, []string{"y"})),
			`node "nms1": unsupported operator NonMaxSuppression`},
		{"other domain", graph(13, x, []string{"y"}, nil, &onnxpb.NodeProto{OpType: "FusedGemm", Domain: "com.microsoft", Input: []string{"x"}, Output: []string{"y"}}),
			"unsupported operator com.microsoft.FusedGemm"},
		{"opset", graph(99, x, []string{"y"}, nil, op("Relu", "r", []string{"x"}, []string{"y"})), "operator set 99 is not supported"},
		{"dangling input", graph(13, x, []string{"y"}, nil, op("Add", "a", []string{"x", "z"}, []string{"y"})),
			`input "z" is not produced`},
		{"dangling output", graph(13, x, []string{"q"}, nil, op("Relu", "r", []string{"x"}, []string{"y"})),
			`graph output "q" is not produced`},
		{"cycle", graph(13, x, []string{"b"}, nil,
			op("Add", "a1", []string{"x", "b"}, []string{"a"}), op("Relu", "a2", []string{"a"}, []string{"b"})), "cycle"},
		{"string input", graph(13, []*onnxpb.ValueInfoProto{typedInput("x", onnxpb.TensorProto_STRING, 1)}, []string{"y"}, nil,
			op("Relu", "r", []string{"x"}, []string{"y"})), `input "x" has type DT_STRING`},
		{"bad initializer", graph(13, x, []string{"y"}, []*onnxpb.TensorProto{{Name: "w", Dims: []int64{4, 2}, DataType: 1, RawData: make([]byte, 12)}},
			op("MatMul", "mm", []string{"x", "w"}, []string{"y"})), `initializer "w": shape [4 2] needs 32 bytes`},
		{"dtype mix", graph(13, []*onnxpb.ValueInfoProto{floatInput("x", 2), typedInput("i", onnxpb.TensorProto_INT64, 2)}, []string{"y"}, nil,
			op("Add", "add", []string{"x", "i"}, []string{"y"})), "different types"},
		{"int relu", graph(13, []*onnxpb.ValueInfoProto{typedInput("i", onnxpb.TensorProto_INT64, 2)}, []string{"y"}, nil,
			op("Relu", "r", []string{"i"}, []string{"y"})), "DT_INT64, which this operator does not support"},
		{"redefined", graph(13, x, []string{"y"}, nil, op("Relu", "r1", []string{"x"}, []string{"y"}), op("Relu", "r2", []string{"x"}, []string{"y"})),
			`value "y" is defined more than once`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := onnxrt.Load(tt.bytes)
			if err == nil {
				t.Fatalf("Load succeeded with inputs %v", m.Inputs())
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %q, want it to contain %q", err, tt.want)
			}
		})
	}
	if _, err := onnxrt.LoadFile(filepath.Join(t.TempDir(), "missing.onnx")); err == nil {
		t.Error("LoadFile of a missing file succeeded")
	}
}

// An unused initializer of an unsupported type does not stop a model loading.
func TestLoadIgnoresUnusedInitializers(t *testing.T) {
	b := graph(13, []*onnxpb.ValueInfoProto{floatInput("x", -1, 2)}, []string{"y"},
		[]*onnxpb.TensorProto{{Name: "unused", Dims: []int64{1}, DataType: int32(onnxpb.TensorProto_DOUBLE), DoubleData: []float64{1}}},
		op("Relu", "r", []string{"x"}, []string{"y"}))
	m, err := onnxrt.Load(b)
	if err != nil {
		t.Fatal(err)
	}
	out, err := m.Run(map[string]*tensor.Tensor{"x": tensor.FromFloat32([]float32{-1, 2}, 1, 2)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(out["y"].Float32s()) != "[0 2]" {
		t.Errorf("relu = %v", out["y"].Float32s())
	}
}

// Outputs belong to the caller: they must not share memory with inputs (an
// Identity graph) or with buffers a later Run reuses.
func TestOutputsAreOwnedByCaller(t *testing.T) {
	b := graph(13, []*onnxpb.ValueInfoProto{floatInput("x", -1, 2)}, []string{"y", "z"}, nil,
		op("Identity", "id", []string{"x"}, []string{"y"}), op("Neg", "neg", []string{"x"}, []string{"z"}))
	m, err := onnxrt.Load(b)
	if err != nil {
		t.Fatal(err)
	}
	in := []float32{1, 2}
	out1, err := m.Run(map[string]*tensor.Tensor{"x": tensor.FromFloat32(in, 1, 2)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	in[0] = 100
	if _, err := m.Run(map[string]*tensor.Tensor{"x": tensor.FromFloat32([]float32{7, 8}, 1, 2)}, nil); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(out1["y"].Float32s(), out1["z"].Float32s()) != "[1 2] [-1 -2]" {
		t.Errorf("first results changed to %v %v", out1["y"].Float32s(), out1["z"].Float32s())
	}
}

// Shape errors that only show at run time (dims the signature leaves open)
// are the caller's fault: ErrInvalidInput, naming the node.
func TestRunShapeErrorIsInvalidInput(t *testing.T) {
	b := graph(13, []*onnxpb.ValueInfoProto{floatInput("a", -1, -1), floatInput("b", -1, -1)}, []string{"y"}, nil,
		op("MatMul", "mm", []string{"a", "b"}, []string{"y"}))
	m, err := onnxrt.Load(b)
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.Run(map[string]*tensor.Tensor{
		"a": tensor.FromFloat32(make([]float32, 6), 2, 3),
		"b": tensor.FromFloat32(make([]float32, 8), 4, 2),
	}, nil)
	if !errors.Is(err, onnxrt.ErrInvalidInput) || !strings.Contains(err.Error(), `node "mm"`) {
		t.Errorf("err = %v, want ErrInvalidInput naming node mm", err)
	}
}

func TestConcurrentRun(t *testing.T) {
	m := mustDemo(t)
	gen := demo.NewGenerator(1)
	type job struct {
		in   []float32
		want []float32
	}
	var jobs []job
	for _, n := range []int{1, 3, 4, 5, 32, 33, 100} {
		in := make([]float32, 0, n*16)
		for range n {
			r, _ := gen.Reading()
			in = append(in, r...)
		}
		out, err := m.Run(map[string]*tensor.Tensor{"input": tensor.FromFloat32(in, int64(n), 16)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, job{in, out["output"].Float32s()})
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				j := jobs[(i+w)%len(jobs)]
				out, err := m.Run(map[string]*tensor.Tensor{"input": tensor.FromFloat32(j.in, int64(len(j.in)/16), 16)}, nil)
				if err != nil {
					errs <- err
					return
				}
				got := out["output"].Float32s()
				for k := range j.want {
					if got[k] != j.want[k] {
						errs <- fmt.Errorf("worker %d run %d: row %d = %g, want %g", w, i, k, got[k], j.want[k])
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestRunAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	m := mustDemo(t)
	in := map[string]*tensor.Tensor{"input": tensor.FromFloat32(make([]float32, 32*16), 32, 16)}
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := m.Run(in, nil); err != nil {
			t.Fatal(err)
		}
	})
	// The result map, and per output the tensor, its shape, its data and the
	// interface box around the data.
	if allocs > 6 {
		t.Errorf("Run allocates %.0f times per call, want at most 6", allocs)
	}
}

// TestExportAllocations: the torch exports that go through the generic
// kernels (reductions, broadcasting, batched MatMul, Slice, the recurrent
// nets, the transformer layer) allocate only their results in steady state:
// the map (and its buckets) and, per output, the tensor, shape, data and the
// interface box.
func TestExportAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	for _, name := range []string{"transformer_opset13.json", "transformer_opset17.json", "ops_opset13.json", "ops_opset11.json",
		"norm_opset13.json", "norm_opset17.json", "bilstm_opset13.json", "lstm_state_opset13.json", "rnn_relu_opset13.json"} {
		m, cf := readCases(t, name)
		c := cf.Cases[len(cf.Cases)-1]
		in := map[string]*tensor.Tensor{}
		for _, spec := range m.Inputs() {
			v := c.Inputs[spec.Name]
			if spec.DType == tensor.Int64 {
				d := make([]int64, len(v.Data))
				for i, x := range v.Data {
					d[i] = int64(x)
				}
				in[spec.Name] = &tensor.Tensor{DType: tensor.Int64, Shape: v.Shape, Data: d}
				continue
			}
			in[spec.Name] = &tensor.Tensor{DType: spec.DType, Shape: v.Shape, Data: v.Data}
		}
		allocs := testing.AllocsPerRun(50, func() {
			if _, err := m.Run(in, nil); err != nil {
				t.Fatal(err)
			}
		})
		if want := 2 + 4*len(m.Outputs()); allocs > float64(want) {
			t.Errorf("%s: Run allocates %.0f times per call, want at most %d (results only)", name, allocs, want)
		}
	}
}

func FuzzLoad(f *testing.F) {
	f.Add(demo.ONNX)
	for _, name := range []string{"gemm.onnx", "ops_opset13.onnx", "ops_opset11.onnx", "norm_opset13.onnx", "norm_opset17.onnx",
		"rnn_relu_opset13.onnx", "lstm_state_opset17.onnx", "trees/xgb_reg_v5.onnx", "trees/gb_bin.onnx", "trees/rf_cls.onnx",
		"trees/logreg_bin.onnx", "trees/scaled_linreg.onnx"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(demo.ONNX[:100])
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := onnxrt.Load(b)
		if err != nil {
			if strings.Contains(err.Error(), "internal error") {
				t.Fatal(err)
			}
			return
		}
		// A model that loads must run (or refuse) without a kernel panicking.
		in := make(map[string]*tensor.Tensor)
		for _, s := range m.Inputs() {
			shape := make([]int64, len(s.Shape))
			for i, d := range s.Shape {
				shape[i] = d
				if d < 0 {
					shape[i] = 2
				}
			}
			n, err := tensor.NumElements(shape)
			if err != nil || n > 1<<12 {
				return
			}
			tt, err := tensor.New(s.DType, shape...)
			if err != nil {
				return
			}
			in[s.Name] = tt
		}
		if _, err := m.Run(in, nil); err != nil && strings.Contains(err.Error(), "internal error") {
			t.Fatal(err)
		}
	})
}

// BenchmarkRun measures the bundled demo model (16→32→16→1).
func BenchmarkRun(b *testing.B) { benchModel(b, mustDemo(b)) }

// BenchmarkRunMLP64 measures the 16→64→64→1 MLP of shared/model-runtimes.md.
func BenchmarkRunMLP64(b *testing.B) {
	m, _ := readCases(b, "mlp64.json")
	benchModel(b, m)
}

func benchModel(b *testing.B, m *onnxrt.Model) {
	gen := demo.NewGenerator(2)
	for _, n := range []int{1, 32, 256} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			data := make([]float32, 0, n*16)
			for range n {
				r, _ := gen.Reading()
				data = append(data, r...)
			}
			in := map[string]*tensor.Tensor{"input": tensor.FromFloat32(data, int64(n), 16)}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := m.Run(in, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "predictions/s")
		})
	}
}
