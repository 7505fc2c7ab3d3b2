package onnxrt_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/infergate/infergate/inference/onnxrt"
	"github.com/infergate/infergate/inference/tensor"
	onnxpb "github.com/infergate/infergate/proto/onnx"
)

func intsAttr(name string, v ...int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_INTS, Ints: v}
}

// convCase is one Conv configuration, checked against naiveConv.
type convCase struct {
	n, c, m, group int
	in, k          []int // spatial
	strides, dils  []int
	pads           []int // begins then ends; nil = none
	autoPad        string
}

// naiveConv is Conv written from the spec's definition, one output at a
// time, in float64.
func naiveConv(tc convCase, x, w, b []float32) ([]int64, []float32) {
	nsp := len(tc.in)
	out := make([]int, nsp)
	padB := make([]int, nsp)
	for d := range nsp {
		ext := (tc.k[d]-1)*tc.dils[d] + 1
		switch tc.autoPad {
		case "SAME_UPPER", "SAME_LOWER":
			out[d] = (tc.in[d] + tc.strides[d] - 1) / tc.strides[d]
			total := max(0, (out[d]-1)*tc.strides[d]+ext-tc.in[d])
			padB[d] = total / 2
			if tc.autoPad == "SAME_LOWER" {
				padB[d] = total - total/2
			}
		default:
			pb, pe := 0, 0
			if tc.pads != nil {
				pb, pe = tc.pads[d], tc.pads[nsp+d]
			}
			padB[d] = pb
			out[d] = (tc.in[d]+pb+pe-ext)/tc.strides[d] + 1
		}
	}
	shape := []int64{int64(tc.n), int64(tc.m)}
	osz, isz, ksz := 1, 1, 1
	for d := range nsp {
		shape = append(shape, int64(out[d]))
		osz *= out[d]
		isz *= tc.in[d]
		ksz *= tc.k[d]
	}
	cg, mg := tc.c/tc.group, tc.m/tc.group
	y := make([]float32, tc.n*tc.m*osz)
	oidx := make([]int, nsp)
	kidx := make([]int, nsp)
	for n := range tc.n {
		for m := range tc.m {
			g := m / mg
			for o := range osz {
				r := o
				for d := nsp - 1; d >= 0; d-- {
					oidx[d] = r % out[d]
					r /= out[d]
				}
				s := 0.0
				if b != nil {
					s = float64(b[m])
				}
				for ci := range cg {
					c := g*cg + ci
					for kk := range ksz {
						r := kk
						for d := nsp - 1; d >= 0; d-- {
							kidx[d] = r % tc.k[d]
							r /= tc.k[d]
						}
						at, inside := 0, true
						for d := range nsp {
							p := oidx[d]*tc.strides[d] - padB[d] + kidx[d]*tc.dils[d]
							if p < 0 || p >= tc.in[d] {
								inside = false
								break
							}
							at = at*tc.in[d] + p
						}
						if inside {
							s += float64(x[(n*tc.c+c)*isz+at]) * float64(w[(m*cg+ci)*ksz+kk])
						}
					}
				}
				y[(n*tc.m+m)*osz+o] = float32(s)
			}
		}
	}
	return shape, y
}

func randFloats(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

func i64s(v []int) []int64 {
	out := make([]int64, len(v))
	for i, x := range v {
		out[i] = int64(x)
	}
	return out
}

// Conv against a direct implementation of the spec, over the attributes and
// shapes that take different paths: 1-D, 2-D and 3-D, groups and depthwise,
// strides, dilations, asymmetric pads, SAME_UPPER/LOWER, panels that span
// output rows, weights packed at load and weights fed at run time, the
// portable and the assembly micro-kernel.
func TestConvMatchesDefinition(t *testing.T) {
	cases := []convCase{
		{n: 2, c: 3, m: 16, group: 1, in: []int{9, 11}, k: []int{3, 3}, strides: []int{1, 1}, dils: []int{1, 1}, pads: []int{1, 1, 1, 1}},
		{n: 1, c: 4, m: 6, group: 2, in: []int{7, 8}, k: []int{3, 2}, strides: []int{2, 1}, dils: []int{1, 2}, pads: []int{0, 1, 2, 0}},
		{n: 3, c: 8, m: 8, group: 8, in: []int{6, 5}, k: []int{3, 3}, strides: []int{1, 1}, dils: []int{1, 1}, pads: []int{1, 1, 1, 1}},
		{n: 2, c: 5, m: 7, group: 1, in: []int{40}, k: []int{5}, strides: []int{3}, dils: []int{2}, pads: []int{2, 1}},
		{n: 1, c: 2, m: 3, group: 1, in: []int{5, 6, 4}, k: []int{2, 3, 2}, strides: []int{1, 2, 1}, dils: []int{1, 1, 2}, pads: []int{1, 0, 1, 0, 1, 1}},
		{n: 2, c: 3, m: 4, group: 1, in: []int{7, 9}, k: []int{3, 3}, strides: []int{2, 2}, dils: []int{1, 1}, autoPad: "SAME_UPPER"},
		{n: 1, c: 3, m: 4, group: 1, in: []int{8, 6}, k: []int{2, 4}, strides: []int{3, 1}, dils: []int{1, 1}, autoPad: "SAME_LOWER"},
		{n: 1, c: 1, m: 1, group: 1, in: []int{3, 3}, k: []int{3, 3}, strides: []int{1, 1}, dils: []int{1, 1}},
		{n: 2, c: 16, m: 40, group: 1, in: []int{1, 37}, k: []int{1, 1}, strides: []int{1, 1}, dils: []int{1, 1}},
		// Wide rows: the direct path (conv_direct.go) — full and partial
		// panels, height strides, dilations, groups, depthwise, 1-D, SAME_*,
		// and one image split into row chunks for two threads.
		{n: 2, c: 3, m: 16, group: 1, in: []int{9, 64}, k: []int{3, 3}, strides: []int{1, 1}, dils: []int{1, 1}, pads: []int{1, 1, 1, 1}},
		{n: 1, c: 4, m: 10, group: 2, in: []int{7, 45}, k: []int{3, 2}, strides: []int{2, 1}, dils: []int{1, 2}, pads: []int{0, 1, 2, 0}},
		{n: 3, c: 8, m: 8, group: 8, in: []int{6, 32}, k: []int{3, 3}, strides: []int{1, 1}, dils: []int{1, 1}, pads: []int{1, 1, 1, 1}},
		{n: 2, c: 5, m: 7, group: 1, in: []int{70}, k: []int{5}, strides: []int{1}, dils: []int{2}, pads: []int{2, 1}},
		{n: 1, c: 3, m: 4, group: 1, in: []int{8, 30}, k: []int{2, 4}, strides: []int{3, 1}, dils: []int{1, 1}, autoPad: "SAME_LOWER"},
		{n: 1, c: 8, m: 19, group: 1, in: []int{37, 40}, k: []int{3, 3}, strides: []int{1, 1}, dils: []int{1, 1}, pads: []int{1, 1, 1, 1}},
		{n: 2, c: 6, m: 9, group: 3, in: []int{5, 17}, k: []int{1, 1}, strides: []int{1, 1}, dils: []int{1, 1}},
		// Depthwise (one input and one output channel per group), which the
		// portable builds run on their own path (conv_depthwise.go): strides
		// 2 and 3 with odd sizes, dilations, pads wider than the kernel
		// reaches, SAME_*, 1-D and 3-D, and few channels (rows split).
		{n: 2, c: 6, m: 6, group: 6, in: []int{9, 11}, k: []int{3, 3}, strides: []int{2, 2}, dils: []int{1, 1}, pads: []int{1, 1, 1, 1}},
		{n: 1, c: 3, m: 3, group: 3, in: []int{10, 13}, k: []int{3, 2}, strides: []int{3, 2}, dils: []int{2, 3}, pads: []int{0, 4, 2, 1}},
		{n: 1, c: 2, m: 2, group: 2, in: []int{4, 5}, k: []int{3, 3}, strides: []int{1, 1}, dils: []int{1, 1}, pads: []int{3, 0, 1, 4}},
		{n: 2, c: 4, m: 4, group: 4, in: []int{7, 9}, k: []int{3, 3}, strides: []int{2, 1}, dils: []int{1, 1}, autoPad: "SAME_UPPER"},
		{n: 1, c: 5, m: 5, group: 5, in: []int{8, 6}, k: []int{2, 4}, strides: []int{1, 3}, dils: []int{1, 1}, autoPad: "SAME_LOWER"},
		{n: 3, c: 4, m: 4, group: 4, in: []int{23}, k: []int{5}, strides: []int{2}, dils: []int{2}, pads: []int{3, 2}},
		{n: 1, c: 3, m: 3, group: 3, in: []int{4, 6, 5}, k: []int{2, 3, 2}, strides: []int{1, 2, 1}, dils: []int{2, 1, 1}, pads: []int{1, 0, 1, 1, 0, 1}},
		{n: 1, c: 2, m: 2, group: 2, in: []int{40, 33}, k: []int{3, 3}, strides: []int{1, 1}, dils: []int{1, 1}, pads: []int{1, 1, 1, 1}},
		// Pads wider than the kernel reaches, on every path: whole windows
		// left of, right of, above and below the input.
		{n: 1, c: 3, m: 5, group: 1, in: []int{4, 5}, k: []int{3, 3}, strides: []int{1, 1}, dils: []int{1, 1}, pads: []int{3, 5, 4, 4}},
		{n: 2, c: 2, m: 4, group: 2, in: []int{3, 40}, k: []int{3, 3}, strides: []int{1, 1}, dils: []int{1, 1}, pads: []int{3, 5, 2, 6}},
		{n: 1, c: 2, m: 3, group: 1, in: []int{6}, k: []int{2}, strides: []int{2}, dils: []int{1}, pads: []int{5, 7}},
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for ci, tc := range cases {
		nsp := len(tc.in)
		wShape := append([]int64{int64(tc.m), int64(tc.c / tc.group)}, i64s(tc.k)...)
		xShape := append([]int64{int64(tc.n), int64(tc.c)}, i64s(tc.in)...)
		wn, xn := 1, 1
		for _, d := range wShape {
			wn *= int(d)
		}
		for _, d := range xShape {
			xn *= int(d)
		}
		w, x, b := randFloats(rng, wn), randFloats(rng, xn), randFloats(rng, tc.m)
		wantShape, want := naiveConv(tc, x, w, b)
		attrs := []*onnxpb.AttributeProto{intAttr("group", int64(tc.group)), intsAttr("strides", i64s(tc.strides)...),
			intsAttr("dilations", i64s(tc.dils)...), intsAttr("kernel_shape", i64s(tc.k)...)}
		if tc.pads != nil {
			attrs = append(attrs, intsAttr("pads", i64s(tc.pads)...))
		}
		if tc.autoPad != "" {
			attrs = append(attrs, strAttr("auto_pad", tc.autoPad))
		}
		for _, weights := range []string{"constant", "input"} {
			for _, kern := range []string{"native", "portable"} {
				t.Run(fmt.Sprintf("%d/%dd/%s/%s", ci, nsp, weights, kern), func(t *testing.T) {
					if kern == "portable" && !onnxrt.UsePortableKernel(t) {
						t.Skip("no assembly kernel on this CPU")
					}
					ins := []*onnxpb.ValueInfoProto{floatInput("x", xShape...)}
					inits := []*onnxpb.TensorProto{floats("b", []int64{int64(tc.m)}, b...)}
					feed := map[string]*tensor.Tensor{"x": tensor.FromFloat32(x, xShape...)}
					if weights == "constant" {
						inits = append(inits, floats("w", wShape, w...))
					} else {
						ins = append(ins, floatInput("w", wShape...))
						feed["w"] = tensor.FromFloat32(w, wShape...)
					}
					m, err := onnxrt.Load(graph(13, ins, []string{"y"}, inits,
						withAttr(op("Conv", "conv", []string{"x", "w", "b"}, []string{"y"}), attrs...)))
					if err != nil {
						t.Fatal(err)
					}
					out, err := m.Run(feed, nil)
					if err != nil {
						t.Fatal(err)
					}
					checkClose(t, out["y"], wantShape, want)
				})
			}
		}
	}
}

func checkClose(t *testing.T, got *tensor.Tensor, shape []int64, want []float32) {
	t.Helper()
	if fmt.Sprint(got.Shape) != fmt.Sprint(shape) {
		t.Fatalf("shape %v, want %v", got.Shape, shape)
	}
	g := got.Data.([]float32)
	for i, w := range want {
		if d := math.Abs(float64(g[i] - w)); d > 1e-5+1e-4*math.Abs(float64(w)) || g[i] != g[i] {
			t.Fatalf("y[%d] = %v, want %v", i, g[i], w)
		}
	}
}

// A BatchNormalization and a Relu after a Conv with constant weights are
// folded into it; the result must equal the three applied in turn.
func TestConvFusesBatchNormAndRelu(t *testing.T) {
	for _, tc := range []convCase{
		{n: 2, c: 3, m: 5, group: 1, in: []int{6, 7}, k: []int{3, 3}, strides: []int{1, 1}, dils: []int{1, 1}, pads: []int{1, 1, 1, 1}},
		{n: 2, c: 5, m: 5, group: 5, in: []int{6, 7}, k: []int{3, 3}, strides: []int{1, 1}, dils: []int{1, 1}, pads: []int{1, 1, 1, 1}}, // depthwise
	} {
		rng := rand.New(rand.NewPCG(5, 6))
		cg := tc.c / tc.group
		w, x, b := randFloats(rng, tc.m*cg*9), randFloats(rng, 2*tc.c*42), randFloats(rng, tc.m)
		scale, bias, mean := randFloats(rng, tc.m), randFloats(rng, tc.m), randFloats(rng, tc.m)
		v := make([]float32, tc.m)
		for i := range v {
			v[i] = 0.5 + rng.Float32()
		}
		for _, withBias := range []bool{true, false} {
			for _, kern := range []string{"native", "portable"} {
				t.Run(fmt.Sprintf("group %d/conv bias %v/%s", tc.group, withBias, kern), func(t *testing.T) {
					if kern == "portable" && !onnxrt.UsePortableKernel(t) {
						t.Skip("no assembly kernel on this CPU")
					}
					in := []string{"x", "w", "b"}
					cb := b
					if !withBias {
						in, cb = in[:2], nil
					}
					shape, want := naiveConv(tc, x, w, cb)
					for i := range want {
						c := (i / 42) % tc.m
						want[i] = max(float32((float64(want[i])-float64(mean[c]))/math.Sqrt(float64(v[c])+1e-5)*float64(scale[c])+float64(bias[c])), 0)
					}
					m, err := onnxrt.Load(graph(13, []*onnxpb.ValueInfoProto{floatInput("x", 2, int64(tc.c), 6, 7)}, []string{"y"},
						[]*onnxpb.TensorProto{floats("w", []int64{int64(tc.m), int64(cg), 3, 3}, w...), floats("b", []int64{int64(tc.m)}, b...),
							floats("s", []int64{int64(tc.m)}, scale...), floats("bb", []int64{int64(tc.m)}, bias...),
							floats("mu", []int64{int64(tc.m)}, mean...), floats("var", []int64{int64(tc.m)}, v...)},
						withAttr(op("Conv", "conv", in, []string{"h"}), intsAttr("pads", 1, 1, 1, 1), intAttr("group", int64(tc.group))),
						op("BatchNormalization", "bn", []string{"h", "s", "bb", "mu", "var"}, []string{"hb"}),
						op("Relu", "relu", []string{"hb"}, []string{"y"})))
					if err != nil {
						t.Fatal(err)
					}
					out, err := m.Run(map[string]*tensor.Tensor{"x": tensor.FromFloat32(x, 2, int64(tc.c), 6, 7)}, nil)
					if err != nil {
						t.Fatal(err)
					}
					checkClose(t, out["y"], shape, want)
				})
			}
		}
	}
}

func TestConvShapeErrors(t *testing.T) {
	w := floats("w", []int64{4, 2, 3, 3}, make([]float32, 72)...)
	for _, tt := range []struct {
		name  string
		attrs []*onnxpb.AttributeProto
		x     []int64
		want  string // in the Load error if x is nil, else in the Run error
	}{
		{"group does not divide", []*onnxpb.AttributeProto{intAttr("group", 3)}, nil, "not a multiple of group"},
		{"kernel_shape disagrees", []*onnxpb.AttributeProto{intsAttr("kernel_shape", 3, 2)}, nil, "kernel_shape"},
		{"bad auto_pad", []*onnxpb.AttributeProto{strAttr("auto_pad", "SOMETIMES")}, nil, "auto_pad"},
		{"pads of wrong length", []*onnxpb.AttributeProto{intsAttr("pads", 1, 1)}, []int64{1, 2, 5, 5}, "pads"},
		{"channels do not match", nil, []int64{1, 3, 5, 5}, "channels"},
		{"window larger than input", nil, []int64{1, 2, 2, 2}, "smaller than the window"},
		{"rank mismatch", nil, []int64{1, 2, 5}, "ranks differ"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := graph(13, []*onnxpb.ValueInfoProto{floatInput("x", -1, -1, -1, -1)}, []string{"y"}, []*onnxpb.TensorProto{w},
				withAttr(op("Conv", "conv", []string{"x", "w"}, []string{"y"}), tt.attrs...))
			if tt.x == nil {
				_, err := onnxrt.Load(b)
				if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), `"conv"`) {
					t.Fatalf("Load: err = %v, want one naming node \"conv\" and %q", err, tt.want)
				}
				return
			}
			anyRank := &onnxpb.ValueInfoProto{Name: "x", Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
				TensorType: &onnxpb.TypeProto_Tensor{ElemType: int32(onnxpb.TensorProto_FLOAT)}}}}
			b = graph(13, []*onnxpb.ValueInfoProto{anyRank}, []string{"y"}, []*onnxpb.TensorProto{w},
				withAttr(op("Conv", "conv", []string{"x", "w"}, []string{"y"}), tt.attrs...))
			m, err := onnxrt.Load(b)
			if err != nil {
				t.Fatal(err)
			}
			n := int64(1)
			for _, d := range tt.x {
				n *= d
			}
			_, err = m.Run(map[string]*tensor.Tensor{"x": tensor.FromFloat32(make([]float32, n), tt.x...)}, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run: err = %v, want one about %q", err, tt.want)
			}
		})
	}
}

// An activation after a Conv on wide rows (the direct path) is applied
// whether or not the kernel fuses it (ReLU is fused, others run after each
// tile), with and without a bias.
func TestConvDirectActivations(t *testing.T) {
	tc := convCase{n: 2, c: 3, m: 11, group: 1, in: []int{5, 30}, k: []int{3, 3}, strides: []int{1, 1}, dils: []int{1, 1}, pads: []int{1, 1, 1, 1}}
	rng := rand.New(rand.NewPCG(7, 8))
	w, x, b := randFloats(rng, 11*3*9), randFloats(rng, 2*3*5*30), randFloats(rng, 11)
	acts := map[string]func(float64) float64{
		"Relu":      func(v float64) float64 { return max(v, 0) },
		"Sigmoid":   func(v float64) float64 { return 1 / (1 + math.Exp(-v)) },
		"LeakyRelu": func(v float64) float64 { return map[bool]float64{true: v, false: 0.01 * v}[v >= 0] },
	}
	for name, f := range acts {
		for _, withBias := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/bias=%v", name, withBias), func(t *testing.T) {
				in := []string{"x", "w", "b"}
				bb := b
				if !withBias {
					in, bb = in[:2], nil
				}
				shape, want := naiveConv(tc, x, w, bb)
				for i := range want {
					want[i] = float32(f(float64(want[i])))
				}
				m, err := onnxrt.Load(graph(13, []*onnxpb.ValueInfoProto{floatInput("x", 2, 3, 5, 30)}, []string{"y"},
					[]*onnxpb.TensorProto{floats("w", []int64{11, 3, 3, 3}, w...), floats("b", []int64{11}, b...)},
					withAttr(op("Conv", "conv", in, []string{"h"}), intsAttr("pads", 1, 1, 1, 1)),
					op(name, "act", []string{"h"}, []string{"y"})))
				if err != nil {
					t.Fatal(err)
				}
				for _, kern := range []string{"native", "portable"} {
					if kern == "portable" && !onnxrt.UsePortableKernel(t) {
						continue
					}
					out, err := m.Run(map[string]*tensor.Tensor{"x": tensor.FromFloat32(x, 2, 3, 5, 30)}, nil)
					if err != nil {
						t.Fatal(err)
					}
					checkClose(t, out["y"], shape, want)
				}
			})
		}
	}
}
