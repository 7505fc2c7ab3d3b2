package onnxrt_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/infergate/infergate/inference/onnxrt"
	"github.com/infergate/infergate/inference/tensor"
	onnxpb "github.com/infergate/infergate/proto/onnx"
)

// A dense layer followed by an Add of a constant is fused only when the
// constant is a per-column bias; any other broadcast shape must give numpy's
// answer, shape included. Issue 11: an [n,1] constant (n = the layer's width)
// was fused as if it were [n], so 6 of 9 values were wrong with 3 rows and a
// single row came out as [1,3] instead of [3,3].
func TestDenseFusionRespectsBroadcastShape(t *testing.T) {
	w := floats("w", []int64{2, 3}, 1, 2, 3, 4, 5, 6) // [K=2, N=3]
	wT := floats("w", []int64{3, 2}, 1, 4, 2, 5, 3, 6)
	dense := map[string]func(c *onnxpb.TensorProto) []byte{
		"Gemm": func(c *onnxpb.TensorProto) []byte {
			return graph(13, []*onnxpb.ValueInfoProto{floatInput("a", -1, 2)}, []string{"y"}, []*onnxpb.TensorProto{w, c},
				op("Gemm", "g", []string{"a", "w"}, []string{"h"}), op("Add", "add", []string{"h", "c"}, []string{"y"}))
		},
		"Gemm transB, bias first": func(c *onnxpb.TensorProto) []byte {
			return graph(13, []*onnxpb.ValueInfoProto{floatInput("a", -1, 2)}, []string{"y"}, []*onnxpb.TensorProto{wT, c},
				withAttr(op("Gemm", "g", []string{"a", "w"}, []string{"h"}), intAttr("transB", 1)),
				op("Add", "add", []string{"c", "h"}, []string{"y"}))
		},
		"MatMul+Relu": func(c *onnxpb.TensorProto) []byte {
			return graph(13, []*onnxpb.ValueInfoProto{floatInput("a", -1, 2)}, []string{"y"}, []*onnxpb.TensorProto{w, c},
				op("MatMul", "m", []string{"a", "w"}, []string{"h"}), op("Add", "add", []string{"h", "c"}, []string{"r"}),
				op("Relu", "relu", []string{"r"}, []string{"y"}))
		},
	}
	consts := []*onnxpb.TensorProto{
		floats("c", []int64{3, 1}, 100, 200, 300),
		floats("c", []int64{3}, 100, 200, 300),
		floats("c", []int64{1, 3}, 100, 200, 300),
		floats("c", []int64{1, 1, 3}, 100, 200, 300),
		floats("c", []int64{3, 3}, 100, 200, 300, 400, 500, 600, 700, 800, 900),
		floats("c", []int64{1, 1}, 100),
		floats("c", []int64{1}, 100),
		floats("c", nil, 100),
	}
	inputs := [][]float32{{1, 1, 2, 2, 3, 3}, {1, 1}, {1, 1, 2, 2}}
	for name, build := range dense {
		for _, c := range consts {
			for _, a := range inputs {
				rows := int64(len(a) / 2)
				t.Run(fmt.Sprintf("%s/c%v/rows=%d", name, c.Dims, rows), func(t *testing.T) {
					m, err := onnxrt.Load(build(c))
					if err != nil {
						t.Fatal(err)
					}
					// The same graph computed with the layer and the Add unfused.
					wantShape, want, ok := referenceDenseAdd(a, rows, c)
					out, err := m.Run(map[string]*tensor.Tensor{"a": tensor.FromFloat32(a, rows, 2)}, nil)
					if !ok {
						if !errors.Is(err, onnxrt.ErrInvalidInput) {
							t.Fatalf("[%d,3] + %v: err = %v, want a broadcast error", rows, c.Dims, err)
						}
						return
					}
					if err != nil {
						t.Fatal(err)
					}
					y := out["y"]
					if fmt.Sprint(y.Shape) != fmt.Sprint(wantShape) || fmt.Sprint(y.Data) != fmt.Sprint(want) {
						t.Errorf("y = %v %v, want %v %v", y.Shape, y.Data, wantShape, want)
					}
				})
			}
		}
	}
}

// referenceDenseAdd computes (a·w) + c with numpy broadcasting, written out
// plainly: a is [rows,2], w the fixed [2,3] above; ok is false when c does
// not broadcast with [rows,3]. Relu changes nothing here since every value is positive.
func referenceDenseAdd(a []float32, rows int64, c *onnxpb.TensorProto) ([]int64, []float32, bool) {
	w := [2][3]float32{{1, 2, 3}, {4, 5, 6}}
	h := make([][3]float32, rows)
	for r := range h {
		for j := range 3 {
			h[r][j] = a[2*r]*w[0][j] + a[2*r+1]*w[1][j]
		}
	}
	// Result shape: broadcast of [rows,3] with c's dims.
	hs := []int64{rows, 3}
	cs := c.Dims
	rank := max(len(hs), len(cs))
	shape := make([]int64, rank)
	for i := range rank {
		dh, dc := int64(1), int64(1)
		if j := i - (rank - len(hs)); j >= 0 {
			dh = hs[j]
		}
		if j := i - (rank - len(cs)); j >= 0 {
			dc = cs[j]
		}
		if dh != dc && dh != 1 && dc != 1 {
			return nil, nil, false
		}
		shape[i] = max(dh, dc)
	}
	// The last two dims index h (rows broadcast if 1) and c (each broadcast if 1).
	R, N := shape[rank-2], shape[rank-1]
	var out []float32
	for r := range R {
		for j := range N {
			hv := h[min(r, rows-1)][j]
			var cv float32
			switch len(cs) {
			case 0:
				cv = c.FloatData[0]
			case 1:
				cv = c.FloatData[j%cs[0]]
			default:
				cr, cc := cs[len(cs)-2], cs[len(cs)-1]
				cv = c.FloatData[(r%cr)*cc+j%cc]
			}
			out = append(out, hv+cv)
		}
	}
	return shape, out, true
}
