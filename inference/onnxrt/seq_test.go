package onnxrt_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/infergate/infergate/inference/onnxrt"
	"github.com/infergate/infergate/inference/tensor"
	onnxpb "github.com/infergate/infergate/proto/onnx"
)

// TestRecurrentExports runs the LSTM, GRU, bidirectional LSTM and RNN models
// that testdata/export_seq.py exported from torch (opsets 13 and 17, dynamic
// batch) and compares with torch's outputs (rtol 1e-4, atol 1e-5), on a fresh
// and on a reused state.
func TestRecurrentExports(t *testing.T) {
	for _, name := range []string{"lstm_cls", "gru_cls", "bilstm", "rnn_relu", "lstm_state"} {
		for _, opset := range []int{13, 17} {
			file := fmt.Sprintf("%s_opset%d.json", name, opset)
			t.Run(file, func(t *testing.T) { checkTorchCases(t, file) })
		}
	}
}

// TestTransformerExport runs the pre-norm transformer encoder layer that
// testdata/export_transformer.py exported from torch (4-head self-attention
// over 32 tokens of width 64, GELU feed-forward, mean and a linear head;
// opset 13 with LayerNorm as a ReduceMean chain, opset 17 with
// LayerNormalization) against torch's outputs.
func TestTransformerExport(t *testing.T) {
	for _, opset := range []int{13, 17} {
		file := fmt.Sprintf("transformer_opset%d.json", opset)
		t.Run(file, func(t *testing.T) { checkTorchCases(t, file) })
	}
}

// checkTorchCases runs a model on the inputs of a gen.py-format case file
// and compares with torch's outputs (rtol 1e-4, atol 1e-5), on a fresh and
// on a reused state.
func checkTorchCases(t *testing.T, file string) {
	m, cf := readCases(t, file)
	for ci, c := range cf.Cases {
		in := make(map[string]*tensor.Tensor)
		for k, v := range c.Inputs {
			in[k] = tensor.FromFloat32(v.Data, v.Shape...)
		}
		for run := range 2 {
			out, err := m.Run(in, nil)
			if err != nil {
				t.Fatalf("case %d: %v", ci, err)
			}
			for k, want := range c.Outputs {
				got := out[k]
				if got == nil || !slices.Equal(got.Shape, want.Shape) {
					t.Fatalf("case %d run %d: output %q is %v, want shape %v", ci, run, k, got, want.Shape)
				}
				for i, g := range got.Float32s() {
					w := want.Data[i]
					if math.Abs(float64(g-w)) > 1e-5+1e-4*math.Abs(float64(w)) {
						t.Fatalf("case %d run %d: %s[%d] = %g, torch says %g", ci, run, k, i, g, w)
					}
				}
			}
		}
	}
}

// rnnGraph builds a one-node LSTM/GRU/RNN model with run-time X (and
// sequence_lens when lens is set) and the given constant weights.
func rnnGraph(opType string, attrs []*onnxpb.AttributeProto, w, r, b []float32, wShape, rShape []int64, lens bool) []byte {
	f32 := func(name string, data []float32, dims []int64) *onnxpb.TensorProto {
		return &onnxpb.TensorProto{Name: name, Dims: dims, DataType: int32(onnxpb.TensorProto_FLOAT), FloatData: data}
	}
	inits := []*onnxpb.TensorProto{f32("W", w, wShape), f32("R", r, rShape), f32("B", b, []int64{wShape[0], 2 * wShape[1]})}
	inputs := []*onnxpb.ValueInfoProto{typedInput("X", onnxpb.TensorProto_FLOAT, -1, -1, wShape[2])}
	nodeIn := []string{"X", "W", "R", "B"}
	if lens {
		inputs = append(inputs, typedInput("L", onnxpb.TensorProto_INT32, -1))
		nodeIn = append(nodeIn, "L")
	}
	nd := op(opType, "rnn", nodeIn, []string{"Y", "Yh"})
	nd.Attribute = attrs
	return graph(14, inputs, []string{"Y", "Yh"}, inits, nd)
}

func strAttr(name, v string) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_STRING, S: []byte(v)}
}

// TestRecurrentSequenceLensAndReverse checks the properties the spec defines
// sequence_lens and direction by, on every recurrent operator: a batch row
// with length L gives the outputs of that row cut to L steps run alone (Y
// zero past L, Y_h the state after step L); "reverse" equals "forward" over
// the time-reversed sequence; "bidirectional" is forward and reverse side by
// side.
func TestRecurrentSequenceLensAndReverse(t *testing.T) {
	const T, I, H = 6, 3, 4
	rng := rand.New(rand.NewPCG(3, 4))
	randv := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64() * 0.5)
		}
		return v
	}
	for _, tc := range []struct {
		op    string
		gates int
		extra []*onnxpb.AttributeProto
	}{
		{"RNN", 1, nil},
		{"GRU", 3, nil},
		{"GRU", 3, []*onnxpb.AttributeProto{intAttr("linear_before_reset", 1)}},
		{"LSTM", 4, []*onnxpb.AttributeProto{floatAttr("clip", 0.7)}},
	} {
		t.Run(fmt.Sprintf("%s_%d", tc.op, len(tc.extra)), func(t *testing.T) {
			G := tc.gates
			w2, r2, b2 := randv(2*G*H*I), randv(2*G*H*H), randv(2*2*G*H)
			load := func(dir string, d int, lens bool) *onnxrt.Model {
				attrs := append([]*onnxpb.AttributeProto{strAttr("direction", dir), intAttr("hidden_size", H)}, tc.extra...)
				w, r, b := w2[d*G*H*I:(d+1)*G*H*I], r2[d*G*H*H:(d+1)*G*H*H], b2[d*2*G*H:(d+1)*2*G*H]
				dirs := int64(1)
				if dir == "bidirectional" {
					w, r, b, dirs = w2, r2, b2, 2
				}
				m, err := onnxrt.Load(rnnGraph(tc.op, attrs, w, r, b, []int64{dirs, int64(G * H), I}, []int64{dirs, int64(G * H), H}, lens))
				if err != nil {
					t.Fatal(err)
				}
				return m
			}
			run := func(m *onnxrt.Model, x []float32, steps, batch int, lens []int32) (y, yh []float32) {
				in := map[string]*tensor.Tensor{"X": tensor.FromFloat32(x, int64(steps), int64(batch), I)}
				if lens != nil {
					in["L"] = &tensor.Tensor{DType: tensor.Int32, Shape: []int64{int64(batch)}, Data: lens}
				}
				out, err := m.Run(in, nil)
				if err != nil {
					t.Fatal(err)
				}
				return out["Y"].Float32s(), out["Yh"].Float32s()
			}
			near := func(what string, got, want []float32) {
				t.Helper()
				if len(got) != len(want) {
					t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
				}
				for i := range got {
					if math.Abs(float64(got[i]-want[i])) > 1e-6+1e-5*math.Abs(float64(want[i])) {
						t.Fatalf("%s[%d] = %g, want %g", what, i, got[i], want[i])
					}
				}
			}
			lens := []int32{T, 3, 0}
			x := randv(T * len(lens) * I) // [T, B, I]
			for d, dir := range []string{"forward", "reverse"} {
				withLens := load(dir, d, true)
				plain := load(dir, d, false)
				y, yh := run(withLens, x, T, len(lens), lens)
				for b, L := range lens {
					// Row b alone, cut to L steps.
					xb := make([]float32, 0, T*I)
					for s := range int(L) {
						xb = append(xb, x[(s*len(lens)+b)*I:][:I]...)
					}
					wantH := make([]float32, H) // zero state when L = 0
					var yb []float32
					if L > 0 {
						yb, wantH = run(plain, xb, int(L), 1, nil)
					}
					near(fmt.Sprintf("%s Y_h row %d", dir, b), yh[b*H:(b+1)*H], wantH)
					for s := range T {
						got := y[(s*len(lens)+b)*H:][:H]
						want := make([]float32, H)
						if s < int(L) {
							want = yb[s*H : (s+1)*H]
						}
						near(fmt.Sprintf("%s Y step %d row %d", dir, s, b), got, want)
					}
				}
			}
			// reverse == forward over the reversed sequence, and
			// bidirectional == both side by side.
			B := 2
			x = randv(T * B * I)
			xr := make([]float32, 0, len(x))
			for s := T - 1; s >= 0; s-- {
				xr = append(xr, x[s*B*I:(s+1)*B*I]...)
			}
			yf, hf := run(load("forward", 0, false), x, T, B, nil)
			yrev, hrev := run(load("reverse", 1, false), x, T, B, nil)
			yfr, hfr := run(load("forward", 1, false), xr, T, B, nil)
			near("reverse Y_h", hrev, hfr)
			for s := range T {
				near(fmt.Sprintf("reverse Y step %d", s), yrev[s*B*H:(s+1)*B*H], yfr[(T-1-s)*B*H:(T-s)*B*H])
			}
			ybi, hbi := run(load("bidirectional", 0, false), x, T, B, nil)
			near("bidirectional Y_h", hbi, append(slices.Clone(hf), hrev...))
			for s := range T {
				near(fmt.Sprintf("bidirectional Y step %d", s), ybi[s*2*B*H:(s*2+1)*B*H], yf[s*B*H:(s+1)*B*H])
				near(fmt.Sprintf("bidirectional Y step %d (reverse)", s), ybi[(s*2+1)*B*H:(s*2+2)*B*H], yrev[s*B*H:(s+1)*B*H])
			}
		})
	}
}

// seqInput is a [batch, 50, 8] input of fixed pseudo-random values.
func seqInput(batch int) *tensor.Tensor {
	rng := rand.New(rand.NewPCG(1, uint64(batch)))
	x := make([]float32, batch*50*8)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	return tensor.FromFloat32(x, int64(batch), 50, 8)
}

// TestRecurrentAllocations: a steady stream of calls allocates only the
// results, not per step or per call inside the recurrent kernels.
func TestRecurrentAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	for _, name := range []string{"lstm_cls_opset13.onnx", "gru_cls_opset13.onnx"} {
		m, err := onnxrt.LoadFile("testdata/" + name)
		if err != nil {
			t.Fatal(err)
		}
		in := map[string]*tensor.Tensor{"x": seqInput(32)}
		allocs := testing.AllocsPerRun(20, func() {
			if _, err := m.Run(in, nil); err != nil {
				t.Fatal(err)
			}
		})
		if allocs > 6 {
			t.Errorf("%s: Run allocates %.0f times per call, want at most 6", name, allocs)
		}
	}
}

// BenchmarkRecurrent: the torch-exported sequence classifiers over 50 steps ×
// 8 channels. docs/runtime.md compares these with ONNX Runtime.
func BenchmarkRecurrent(b *testing.B) {
	for _, name := range []string{"lstm_cls", "gru_cls", "bilstm"} {
		m, err := onnxrt.LoadFile("testdata/" + name + "_opset13.onnx")
		if err != nil {
			b.Fatal(err)
		}
		for _, batch := range []int{1, 32} {
			in := map[string]*tensor.Tensor{"x": seqInput(batch)}
			b.Run(fmt.Sprintf("%s/batch=%d", name, batch), func(b *testing.B) {
				for b.Loop() {
					if _, err := m.Run(in, nil); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkTransformer: the exported encoder layer at batch 1 and 32, one
// thread: go test -bench Transformer -run XXX ./inference/onnxrt/
func BenchmarkTransformer(b *testing.B) {
	m, err := onnxrt.LoadFileWithOptions("testdata/transformer_opset13.onnx", onnxrt.LoadOptions{Threads: 1})
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, batch := range []int64{1, 32} {
		x := make([]float32, batch*32*64)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		in := map[string]*tensor.Tensor{"x": tensor.FromFloat32(x, batch, 32, 64)}
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			for b.Loop() {
				if _, err := m.Run(in, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestFloat16Model runs the torch-exported MLP converted to float16
// (testdata/export_half.py: FLOAT16 initializers, input and output): the
// signature is DT_HALF, and the outputs equal numpy's float32 layers over the
// float16 weights, rounded to float16 — within one float16 ulp, as a last-bit
// difference in float32 may round the other way. A float32 input is accepted
// and rounded at the boundary: one that is not a float16 value gives the same
// outputs as its rounded value.
func TestFloat16Model(t *testing.T) {
	m, cf := readCases(t, "mlp64_fp16.json")
	if in := m.Inputs(); in[0].DType != tensor.Half {
		t.Fatalf("input is %s, want DT_HALF in the signature", in[0].DType)
	}
	if out := m.Outputs(); out[0].DType != tensor.Half {
		t.Fatalf("output is %s, want DT_HALF in the signature", out[0].DType)
	}
	for ci, c := range cf.Cases {
		x := c.Inputs["input"]
		out, err := m.Run(map[string]*tensor.Tensor{"input": {DType: tensor.Half, Shape: x.Shape, Data: x.Data}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, want := range c.Outputs {
			if out[k].DType != tensor.Half {
				t.Fatalf("case %d: output %s is %s, want DT_HALF", ci, k, out[k].DType)
			}
			got := out[k].Float32s()
			for i, w := range want.Data {
				if math.Abs(float64(got[i]-w)) > math.Abs(float64(w))/1024+1e-7 {
					t.Fatalf("case %d: %s[%d] = %g, numpy says %g", ci, k, i, got[i], w)
				}
				if h := float64(got[i]) * 2048; h != math.Trunc(h) && math.Abs(float64(got[i])) >= 0.5 {
					t.Fatalf("case %d: %s[%d] = %g is not a float16 value", ci, k, i, got[i])
				}
			}
		}
		// A float32 input (what clients sent before the signature said
		// DT_HALF) nudged by less than half a float16 ulp: same outputs.
		nudged := make([]float32, len(x.Data))
		for i, v := range x.Data {
			nudged[i] = v + v/8192
		}
		again, err := m.Run(map[string]*tensor.Tensor{"input": tensor.FromFloat32(nudged, x.Shape...)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k := range c.Outputs {
			if !slices.Equal(again[k].Float32s(), out[k].Float32s()) {
				t.Fatalf("case %d: inputs within half a float16 ulp give %v, not %v", ci, again[k].Float32s(), out[k].Float32s())
			}
		}
	}
}
