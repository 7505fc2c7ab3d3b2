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

// A MatMul of two computed tensors reads its operands through the Transposes
// before it and writes its result through the Transpose after it, and takes
// in a scalar Mul/Div that follows, when nothing else reads the values in
// between. Every case here is checked against the graph's definition written
// out in float64 (transpose, numpy matmul with broadcasting and 1-D
// promotion, transpose, scale): odd sizes, broadcast batch dims, 1-D
// operands, single rows, the default (reversed) perm, and the shapes where
// a fusion must not happen (the value read twice, a perm that moves the last
// axis, a rank-1 scale, a scale divided by the product), with the assembly
// and the portable micro-kernel.
func TestMatMulTransposeFusion(t *testing.T) {
	type operand struct {
		shape []int64
		perm  []int64 // nil: no Transpose; {} : Transpose without perm (reversed)
	}
	type tcase struct {
		name    string
		a, b    operand
		outPerm []int64 // nil: no Transpose after
		scale   string  // "", "div", "mul", "mulLeft", "divRank1", "divLeft"
		alsoOut bool    // the transposed A is a graph output too (read twice)
	}
	cases := []tcase{
		{name: "attention scores", a: operand{[]int64{2, 5, 3, 7}, []int64{0, 2, 1, 3}}, b: operand{[]int64{2, 5, 3, 7}, []int64{0, 2, 3, 1}}, scale: "div"},
		{name: "attention scores one row", a: operand{[]int64{1, 1, 3, 7}, []int64{0, 2, 1, 3}}, b: operand{[]int64{1, 1, 3, 7}, []int64{0, 2, 3, 1}}, scale: "div"},
		{name: "attention values", a: operand{[]int64{2, 3, 5, 5}, nil}, b: operand{[]int64{2, 5, 3, 7}, []int64{0, 2, 1, 3}}, outPerm: []int64{0, 2, 1, 3}},
		{name: "attention 32 tokens", a: operand{[]int64{3, 32, 4, 16}, []int64{0, 2, 1, 3}}, b: operand{[]int64{3, 32, 4, 16}, []int64{0, 2, 3, 1}}, scale: "mul"},
		{name: "broadcast batch", a: operand{[]int64{2, 1, 6, 5}, []int64{0, 1, 3, 2}}, b: operand{[]int64{3, 6, 4}, nil}},
		{name: "broadcast batch of B", a: operand{[]int64{4, 9, 5}, nil}, b: operand{[]int64{1, 11, 5}, []int64{0, 2, 1}}, scale: "mulLeft"},
		{name: "1-D B", a: operand{[]int64{3, 4, 5}, []int64{1, 0, 2}}, b: operand{[]int64{5}, nil}},
		{name: "1-D A", a: operand{[]int64{3}, nil}, b: operand{[]int64{2, 5, 3}, []int64{0, 2, 1}}},
		{name: "reversed perm", a: operand{[]int64{7, 9}, []int64{}}, b: operand{[]int64{7, 9}, nil}},
		{name: "one row out transposed", a: operand{[]int64{1, 1, 16}, nil}, b: operand{[]int64{1, 16, 20}, nil}, outPerm: []int64{1, 0, 2}},
		{name: "rows across batch out transposed", a: operand{[]int64{2, 33, 17}, nil}, b: operand{[]int64{17, 40}, nil}, outPerm: []int64{1, 0, 2}, scale: "div"},
		{name: "transposed value read twice", a: operand{[]int64{4, 6}, []int64{1, 0}}, b: operand{[]int64{4, 5}, nil}, alsoOut: true},
		{name: "out perm moves last axis", a: operand{[]int64{2, 6, 5}, nil}, b: operand{[]int64{2, 5, 9}, nil}, outPerm: []int64{0, 2, 1}},
		{name: "rank-1 scale", a: operand{[]int64{6, 5}, nil}, b: operand{[]int64{5, 9}, nil}, scale: "divRank1"},
		{name: "scale over product", a: operand{[]int64{6, 5}, nil}, b: operand{[]int64{5, 9}, nil}, scale: "divLeft"},
		{name: "empty k", a: operand{[]int64{2, 6, 0}, nil}, b: operand{[]int64{2, 0, 9}, nil}, outPerm: []int64{1, 0, 2}},
	}
	rng := rand.New(rand.NewPCG(11, 12))
	for _, portable := range []bool{false, true} {
		for _, tc := range cases {
			t.Run(fmt.Sprintf("%s/portable=%v", tc.name, portable), func(t *testing.T) {
				if portable && !onnxrt.UsePortableKernel(t) {
					t.Skip("the portable kernel is the only one")
				}
				var nodes []*onnxpb.NodeProto
				var inits []*onnxpb.TensorProto
				outs := []string{"y"}
				operandIn := func(name string, o operand) string {
					if o.perm == nil {
						return name
					}
					n := op("Transpose", "t"+name, []string{name}, []string{name + "t"})
					if len(o.perm) > 0 {
						n = withAttr(n, intsAttr("perm", o.perm...))
					}
					nodes = append(nodes, n)
					return name + "t"
				}
				an, bn := operandIn("a", tc.a), operandIn("b", tc.b)
				if tc.alsoOut {
					outs = append(outs, an)
				}
				prod := "y"
				if tc.outPerm != nil || tc.scale != "" {
					prod = "p"
				}
				nodes = append(nodes, op("MatMul", "mm", []string{an, bn}, []string{prod}))
				if tc.outPerm != nil {
					next := "y"
					if tc.scale != "" {
						next = "q"
					}
					nodes = append(nodes, withAttr(op("Transpose", "tout", []string{prod}, []string{next}), intsAttr("perm", tc.outPerm...)))
					prod = next
				}
				const s = 0.37
				switch tc.scale {
				case "div", "mul", "divLeft":
					inits = append(inits, floats("s", nil, s))
				case "mulLeft":
					inits = append(inits, floats("s", nil, s))
				case "divRank1":
					inits = append(inits, floats("s", []int64{1}, s))
				}
				switch tc.scale {
				case "div", "divRank1":
					nodes = append(nodes, op("Div", "sc", []string{prod, "s"}, []string{"y"}))
				case "mul":
					nodes = append(nodes, op("Mul", "sc", []string{prod, "s"}, []string{"y"}))
				case "mulLeft":
					nodes = append(nodes, op("Mul", "sc", []string{"s", prod}, []string{"y"}))
				case "divLeft":
					nodes = append(nodes, op("Div", "sc", []string{"s", prod}, []string{"y"}))
				}
				dyn := func(shape []int64) []int64 { return slices.Repeat([]int64{-1}, len(shape)) }
				model := graph(13, []*onnxpb.ValueInfoProto{floatInput("a", dyn(tc.a.shape)...), floatInput("b", dyn(tc.b.shape)...)},
					outs, inits, nodes...)
				m, err := onnxrt.Load(model)
				if err != nil {
					t.Fatal(err)
				}
				a := randFloats(rng, int(numel(tc.a.shape)))
				b := randFloats(rng, int(numel(tc.b.shape)))
				if tc.scale == "divLeft" { // no product near 0
					for _, v := range [][]float32{a, b} {
						for i := range v {
							v[i] = float32(math.Abs(float64(v[i])))
						}
					}
				}
				got, err := m.Run(map[string]*tensor.Tensor{"a": tensor.FromFloat32(a, tc.a.shape...), "b": tensor.FromFloat32(b, tc.b.shape...)}, nil)
				if err != nil {
					t.Fatal(err)
				}
				// The definition, in float64.
				ra := refTensor{slices.Clone(tc.a.shape), f64s(a)}
				rb := refTensor{slices.Clone(tc.b.shape), f64s(b)}
				if tc.a.perm != nil {
					ra = ra.transpose(tc.a.perm)
				}
				if tc.b.perm != nil {
					rb = rb.transpose(tc.b.perm)
				}
				if tc.alsoOut {
					checkRef(t, got[an], ra)
				}
				want := refMatMul(ra, rb)
				if tc.outPerm != nil {
					want = want.transpose(tc.outPerm)
				}
				for i := range want.data {
					switch tc.scale {
					case "div", "divRank1":
						want.data[i] /= float64(float32(s))
					case "mul", "mulLeft":
						want.data[i] *= float64(float32(s))
					case "divLeft":
						want.data[i] = float64(float32(s)) / want.data[i]
					}
				}
				if tc.scale == "divRank1" && len(want.shape) == 0 {
					want.shape = []int64{1}
				}
				checkRef(t, got["y"], want)
			})
		}
	}
}

type refTensor struct {
	shape []int64
	data  []float64
}

func numel(shape []int64) int64 {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	return n
}

func f64s(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

func strides(shape []int64) []int64 {
	s := make([]int64, len(shape))
	acc := int64(1)
	for d := len(shape) - 1; d >= 0; d-- {
		s[d] = acc
		acc *= shape[d]
	}
	return s
}

// unravel turns a flat index into a multi-index of shape.
func unravel(i int64, shape []int64) []int64 {
	idx := make([]int64, len(shape))
	for d := len(shape) - 1; d >= 0; d-- {
		idx[d] = i % shape[d]
		i /= shape[d]
	}
	return idx
}

// transpose as the ONNX spec says; an empty perm reverses the axes.
func (r refTensor) transpose(perm []int64) refTensor {
	if len(perm) == 0 {
		for d := len(r.shape) - 1; d >= 0; d-- {
			perm = append(perm, int64(d))
		}
	}
	shape := make([]int64, len(perm))
	for i, p := range perm {
		shape[i] = r.shape[p]
	}
	in := strides(r.shape)
	out := refTensor{shape, make([]float64, len(r.data))}
	for i := range out.data {
		idx := unravel(int64(i), shape)
		src := int64(0)
		for d, p := range perm {
			src += idx[d] * in[p]
		}
		out.data[i] = r.data[src]
	}
	return out
}

// refMatMul is numpy's matmul: 1-D operands promoted (and the added dim
// removed from the result), batch dims broadcast.
func refMatMul(a, b refTensor) refTensor {
	as, bs := slices.Clone(a.shape), slices.Clone(b.shape)
	if len(as) == 1 {
		as = []int64{1, as[0]}
	}
	if len(bs) == 1 {
		bs = []int64{bs[0], 1}
	}
	m, k, n := as[len(as)-2], as[len(as)-1], bs[len(bs)-1]
	ab, bb := as[:len(as)-2], bs[:len(bs)-2]
	r := max(len(ab), len(bb))
	batch := make([]int64, r)
	for i := range r {
		da, db := int64(1), int64(1)
		if j := i - (r - len(ab)); j >= 0 {
			da = ab[j]
		}
		if j := i - (r - len(bb)); j >= 0 {
			db = bb[j]
		}
		batch[i] = max(da, db)
	}
	nb := numel(batch)
	out := make([]float64, nb*m*n)
	for bi := range nb {
		idx := unravel(bi, batch)
		pick := func(ob []int64) int64 { // flat batch index of an operand
			off := int64(0)
			for j, d := range ob {
				off = off*d + idx[j+r-len(ob)]%d
			}
			return off
		}
		pa, pb := pick(ab)*m*k, pick(bb)*k*n
		for i := range m {
			for j := range n {
				var s float64
				for p := range k {
					s += a.data[pa+i*k+p] * b.data[pb+p*n+j]
				}
				out[bi*m*n+i*n+j] = s
			}
		}
	}
	shape := slices.Clone(batch)
	if len(a.shape) > 1 {
		shape = append(shape, m)
	}
	if len(b.shape) > 1 {
		shape = append(shape, n)
	}
	return refTensor{shape, out}
}

func checkRef(t *testing.T, got *tensor.Tensor, want refTensor) {
	t.Helper()
	if got == nil || !slices.Equal(got.Shape, want.shape) {
		t.Fatalf("got %v, want shape %v", got, want.shape)
	}
	g := got.Float32s()
	for i, w := range want.data {
		if d := math.Abs(float64(g[i]) - w); !(d <= 1e-5+1e-4*math.Abs(w)) {
			t.Fatalf("[%d] (index %v) = %v, want %v", i, unravel(int64(i), want.shape), g[i], w)
		}
	}
}
