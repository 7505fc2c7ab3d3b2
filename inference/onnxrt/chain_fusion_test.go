package onnxrt_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/infergate/infergate/inference/onnxrt"
	"github.com/infergate/infergate/inference/tensor"
	onnxpb "github.com/infergate/infergate/proto/onnx"
)

// runFusedAndUnfused loads the graph twice — as is, and with the values in
// keep also listed as graph outputs, which stops any fusion from removing
// them — runs both on x and checks that the fused model fused (its node
// list contains wantOp, unless wantOp is "") and that both give the same
// output y, shape included, within tol (relative, with tol as the floor).
func runFusedAndUnfused(t *testing.T, inputs []*onnxpb.ValueInfoProto, inits []*onnxpb.TensorProto, nodes []*onnxpb.NodeProto,
	keep []string, feed map[string]*tensor.Tensor, wantOp string, tol float64) {
	t.Helper()
	fused, err := onnxrt.Load(graph(13, inputs, []string{"y"}, inits, nodes...))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := onnxrt.Load(graph(13, inputs, append([]string{"y"}, keep...), inits, nodes...))
	if err != nil {
		t.Fatal(err)
	}
	ops := onnxrt.NodeOps(fused)
	if wantOp != "" && !slices.ContainsFunc(ops, func(s string) bool { return strings.Contains(s, wantOp) }) {
		t.Fatalf("not fused: nodes %v, want one with %s", ops, wantOp)
	}
	if wantOp == "" && !slices.Equal(ops, onnxrt.NodeOps(plain)) {
		t.Fatalf("fused %v although it must not be (unfused: %v)", ops, onnxrt.NodeOps(plain))
	}
	got, gerr := fused.Run(feed, []string{"y"})
	want, werr := plain.Run(feed, []string{"y"})
	if gerr != nil || werr != nil {
		t.Fatalf("fused: %v, unfused: %v", gerr, werr)
	}
	g, w := got["y"], want["y"]
	if !slices.Equal(g.Shape, w.Shape) {
		t.Fatalf("fused shape %v, unfused %v", g.Shape, w.Shape)
	}
	for i, wv := range w.Float32s() {
		gv := g.Float32s()[i]
		if d := math.Abs(float64(gv - wv)); !(d <= tol+tol*math.Abs(float64(wv))) && !(gv != gv && wv != wv) {
			t.Fatalf("y[%d]: fused %v, unfused %v", i, gv, wv)
		}
	}
}

func scalarF(name string, v float32) *onnxpb.TensorProto { return floats(name, nil, v) }

// TestLayerNormChainFusion: opset 13's LayerNorm chain (ReduceMean, Sub, Pow,
// ReduceMean, Add ε, Sqrt, Div, × scale, + bias) runs as one kernel and
// gives the chain's numbers on odd shapes, one row, with the commutative ops
// either way round, without the affine part or its bias, with an int64
// exponent — and where the fused kernel's assumption does not hold (a last
// axis of 1 that the scale broadcasts to 3, a scale of one value), the
// chain's own result, shape included. A chain whose pieces differ (keepdims
// 0, exponent 3, a centred value read elsewhere) is left alone.
func TestLayerNormChainFusion(t *testing.T) {
	type variant struct {
		name      string
		x         []int64
		d         int64 // scale/bias length (0: no scale)
		bias      bool
		swap      bool
		intExp    bool
		exp       float32
		keepdims0 bool
		wantFused bool
	}
	vs := []variant{
		{name: "odd shape", x: []int64{3, 5, 7}, d: 7, bias: true, exp: 2, wantFused: true},
		{name: "one row", x: []int64{1, 7}, d: 7, bias: true, exp: 2, wantFused: true},
		{name: "operands swapped", x: []int64{2, 4, 9}, d: 9, bias: true, swap: true, exp: 2, wantFused: true},
		{name: "no affine", x: []int64{4, 6}, exp: 2, wantFused: true},
		{name: "scale only", x: []int64{4, 6}, d: 6, exp: 2, wantFused: true},
		{name: "int64 exponent", x: []int64{5, 8}, d: 8, bias: true, intExp: true, exp: 2, wantFused: true},
		{name: "width 64 rows 1024", x: []int64{32, 32, 64}, d: 64, bias: true, exp: 2, wantFused: true},
		{name: "last axis 1 broadcast by scale", x: []int64{4, 1}, d: 3, bias: true, exp: 2, wantFused: true},
		{name: "scale of one value", x: []int64{3, 5}, d: 1, bias: true, exp: 2, wantFused: true},
		{name: "exponent 3", x: []int64{3, 5}, d: 5, bias: true, exp: 3},
		{name: "keepdims 0", x: []int64{3, 5}, d: 5, bias: true, exp: 2, keepdims0: true},
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for _, v := range vs {
		t.Run(v.name, func(t *testing.T) {
			rank := len(v.x)
			inputs := []*onnxpb.ValueInfoProto{floatInput("x", slices.Repeat([]int64{-1}, rank)...)}
			inits := []*onnxpb.TensorProto{scalarF("eps", 1e-5)}
			if v.intExp {
				inits = append(inits, &onnxpb.TensorProto{Name: "two", DataType: int32(onnxpb.TensorProto_INT64), Int64Data: []int64{2}})
			} else {
				inits = append(inits, scalarF("two", v.exp))
			}
			mean := withAttr(op("ReduceMean", "mean", []string{"x"}, []string{"mu"}), intsAttr("axes", -1))
			if v.keepdims0 {
				mean = withAttr(mean, intAttr("keepdims", 0))
			}
			nodes := []*onnxpb.NodeProto{
				mean,
				op("Sub", "sub", []string{"x", "mu"}, []string{"d"}),
				op("Pow", "pow", []string{"d", "two"}, []string{"sq"}),
				withAttr(op("ReduceMean", "var", []string{"sq"}, []string{"var"}), intsAttr("axes", -1)),
				op("Add", "addeps", []string{"var", "eps"}, []string{"ve"}),
				op("Sqrt", "sqrt", []string{"ve"}, []string{"sd"}),
			}
			last := "n"
			if v.d == 0 {
				last = "y"
			}
			nodes = append(nodes, op("Div", "div", []string{"d", "sd"}, []string{last}))
			if v.d > 0 {
				inits = append(inits, floats("w", []int64{v.d}, randFloats(rng, int(v.d))...))
				mulOut := "y"
				if v.bias {
					mulOut = "s"
					inits = append(inits, floats("b", []int64{v.d}, randFloats(rng, int(v.d))...))
				}
				in := []string{"n", "w"}
				if v.swap {
					in = []string{"w", "n"}
				}
				nodes = append(nodes, op("Mul", "mul", in, []string{mulOut}))
				if v.bias {
					in := []string{"s", "b"}
					if v.swap {
						in = []string{"b", "s"}
					}
					nodes = append(nodes, op("Add", "addb", in, []string{"y"}))
				}
			}
			x := randFloats(rng, int(numel(v.x)))
			for i := range x {
				x[i] = 3*x[i] + 5 // a mean and spread away from 0 and 1
			}
			want := "LayerNorm"
			if !v.wantFused {
				want = ""
			}
			runFusedAndUnfused(t, inputs, inits, nodes, []string{"d", "sd", "mu"},
				map[string]*tensor.Tensor{"x": tensor.FromFloat32(x, v.x...)}, want, 2e-5)
		})
	}
}

// TestGeluChainFusion: torch's GELU (Div by √2, Erf, Add 1, Mul by the input,
// Mul 0.5) runs as one kernel, alone or absorbed by the dense layer before
// it, with the same numbers as the chain; other constants, a rank-1
// divisor, or an intermediate read elsewhere leave the chain alone.
func TestGeluChainFusion(t *testing.T) {
	type variant struct {
		name      string
		dense     bool
		swap      bool
		one, half float32
		rank1Div  bool
		wantOp    string
	}
	vs := []variant{
		{name: "alone", one: 1, half: 0.5, wantOp: "Gelu"},
		{name: "operands swapped", swap: true, one: 1, half: 0.5, wantOp: "Gelu"},
		{name: "after a dense layer", dense: true, one: 1, half: 0.5, wantOp: "MatMul+Add+Gelu"},
		{name: "add 2", one: 2, half: 0.5},
		{name: "times 0.25", one: 1, half: 0.25},
		{name: "rank-1 divisor", one: 1, half: 0.5, rank1Div: true},
	}
	rng := rand.New(rand.NewPCG(7, 8))
	for _, v := range vs {
		for _, shape := range [][]int64{{3, 300}, {1, 17}, {2, 5, 33}} {
			t.Run(fmt.Sprintf("%s/%v", v.name, shape), func(t *testing.T) {
				r := len(shape)
				inputs := []*onnxpb.ValueInfoProto{floatInput("x", slices.Repeat([]int64{-1}, r)...)}
				inits := []*onnxpb.TensorProto{scalarF("one", v.one), scalarF("half", v.half)}
				if v.rank1Div {
					inits = append(inits, floats("sqrt2", []int64{1}, 1.4142135))
				} else {
					inits = append(inits, scalarF("sqrt2", 1.4142135))
				}
				var nodes []*onnxpb.NodeProto
				h := "x"
				if v.dense {
					k, n := shape[r-1], int64(40)
					inits = append(inits, floats("w", []int64{k, n}, randFloats(rng, int(k*n))...), floats("bias", []int64{n}, randFloats(rng, int(n))...))
					nodes = append(nodes, op("MatMul", "mm", []string{"x", "w"}, []string{"mmo"}), op("Add", "bias", []string{"bias", "mmo"}, []string{"h"}))
					h = "h"
				}
				pair := func(a, b string) []string {
					if v.swap {
						return []string{b, a}
					}
					return []string{a, b}
				}
				nodes = append(nodes,
					op("Div", "div", []string{h, "sqrt2"}, []string{"t"}),
					op("Erf", "erf", []string{"t"}, []string{"e"}),
					op("Add", "add1", pair("e", "one"), []string{"a"}),
					op("Mul", "mul", pair(h, "a"), []string{"m"}),
					op("Mul", "half", pair("m", "half"), []string{"y"}))
				x := randFloats(rng, int(numel(shape)))
				for i := range x {
					x[i] *= 3
				}
				runFusedAndUnfused(t, inputs, inits, nodes, []string{"t", "a"},
					map[string]*tensor.Tensor{"x": tensor.FromFloat32(x, shape...)}, v.wantOp, 1e-6)
			})
		}
	}
}
