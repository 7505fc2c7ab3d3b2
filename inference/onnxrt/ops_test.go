package onnxrt_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/infergate/infergate/inference/onnxrt"
	"github.com/infergate/infergate/inference/tensor"
	onnxpb "github.com/infergate/infergate/proto/onnx"
)

func ints(name string, v ...int64) *onnxpb.TensorProto {
	return &onnxpb.TensorProto{Name: name, Dims: []int64{int64(len(v))}, DataType: int32(onnxpb.TensorProto_INT64), Int64Data: v}
}

func floats(name string, dims []int64, v ...float32) *onnxpb.TensorProto {
	return &onnxpb.TensorProto{Name: name, Dims: dims, DataType: int32(onnxpb.TensorProto_FLOAT), FloatData: v}
}

func withAttr(n *onnxpb.NodeProto, attrs ...*onnxpb.AttributeProto) *onnxpb.NodeProto {
	n.Attribute = attrs
	return n
}

func floatAttr(name string, v float32) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_FLOAT, F: v}
}

func intAttr(name string, v int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_INT, I: v}
}

// Small graphs whose results are worked out by hand, for the paths the
// exported reference models do not reach: uneven broadcasting, int64
// arithmetic, non-last softmax axes, negative gather indices, reshape's 0 and
// -1, run-time Clip bounds.
func TestOperatorsByHand(t *testing.T) {
	f := func(shape ...int64) func(...float32) *tensor.Tensor {
		return func(v ...float32) *tensor.Tensor { return tensor.FromFloat32(v, shape...) }
	}
	tests := []struct {
		name   string
		model  []byte
		inputs map[string]*tensor.Tensor
		want   string // fmt of the output y: shape and values
	}{
		{
			"broadcast both ways",
			graph(13, []*onnxpb.ValueInfoProto{floatInput("a", 3, 1), floatInput("b", 1, 2)}, []string{"y"}, nil,
				op("Sub", "s", []string{"a", "b"}, []string{"y"})),
			map[string]*tensor.Tensor{"a": f(3, 1)(10, 20, 30), "b": f(1, 2)(1, 2)},
			"[3 2] [9 8 19 18 29 28]",
		},
		{
			"broadcast middle dim",
			graph(13, []*onnxpb.ValueInfoProto{floatInput("a", 2, 1, 3), floatInput("b", 2, 1)}, []string{"y"}, nil,
				op("Mul", "m", []string{"a", "b"}, []string{"y"})),
			map[string]*tensor.Tensor{"a": f(2, 1, 3)(1, 2, 3, 4, 5, 6), "b": f(2, 1)(10, 100)},
			"[2 2 3] [10 20 30 100 200 300 40 50 60 400 500 600]",
		},
		{
			"int64 arithmetic",
			graph(13, []*onnxpb.ValueInfoProto{typedInput("i", onnxpb.TensorProto_INT64, 3)}, []string{"y"},
				[]*onnxpb.TensorProto{ints("two", 2)},
				op("Mul", "m", []string{"i", "two"}, []string{"p"}), op("Div", "d", []string{"p", "i"}, []string{"q"}),
				op("Neg", "n", []string{"q"}, []string{"y"})),
			map[string]*tensor.Tensor{"i": {DType: tensor.Int64, Shape: []int64{3}, Data: []int64{3, -4, 5}}},
			"[3] [-2 -2 -2]",
		},
		{
			"softmax axis 0",
			graph(13, []*onnxpb.ValueInfoProto{floatInput("a", 2, 2)}, []string{"y"}, nil,
				withAttr(op("Softmax", "s", []string{"a"}, []string{"y"}), intAttr("axis", 0))),
			map[string]*tensor.Tensor{"a": f(2, 2)(0, 5, 0, 5)},
			"[2 2] [0.5 0.5 0.5 0.5]",
		},
		{
			"gather negative index",
			graph(13, []*onnxpb.ValueInfoProto{floatInput("a", 2, 3)}, []string{"y"}, []*onnxpb.TensorProto{ints("idx", -1, 0)},
				withAttr(op("Gather", "g", []string{"a", "idx"}, []string{"y"}), intAttr("axis", 1))),
			map[string]*tensor.Tensor{"a": f(2, 3)(1, 2, 3, 4, 5, 6)},
			"[2 2] [3 1 6 4]",
		},
		{
			"reshape 0 and -1, transpose",
			graph(13, []*onnxpb.ValueInfoProto{floatInput("a", 2, 3, 2)}, []string{"y"}, []*onnxpb.TensorProto{ints("shape", 0, -1)},
				op("Reshape", "r", []string{"a", "shape"}, []string{"r"}), op("Transpose", "t", []string{"r"}, []string{"y"})),
			map[string]*tensor.Tensor{"a": f(2, 3, 2)(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12)},
			"[6 2] [1 7 2 8 3 9 4 10 5 11 6 12]",
		},
		{
			"clip with computed bounds, squeeze all",
			graph(13, []*onnxpb.ValueInfoProto{floatInput("a", 1, 4), floatInput("lo"), floatInput("hi")}, []string{"y"}, nil,
				op("Clip", "c", []string{"a", "lo", "hi"}, []string{"c"}), op("Squeeze", "s", []string{"c"}, []string{"y"})),
			map[string]*tensor.Tensor{"a": f(1, 4)(-5, 0, 5, 10), "lo": f()(-1), "hi": f()(6)},
			"[4] [-1 0 5 6]",
		},
		{
			"matmul batched with broadcast",
			graph(13, []*onnxpb.ValueInfoProto{floatInput("a", 2, 1, 2), floatInput("b", 2, 1)}, []string{"y"}, nil,
				op("MatMul", "mm", []string{"a", "b"}, []string{"y"})),
			map[string]*tensor.Tensor{"a": f(2, 1, 2)(1, 2, 3, 4), "b": f(2, 1)(10, 1)},
			"[2 1 1] [12 34]",
		},
		{
			"gemm with a per-row constant C",
			graph(13, []*onnxpb.ValueInfoProto{floatInput("a", 2, 2)}, []string{"y"},
				[]*onnxpb.TensorProto{floats("w", []int64{2, 2}, 1, 0, 0, 1), floats("c", []int64{2, 1}, 10, 20)},
				withAttr(op("Gemm", "g", []string{"a", "w", "c"}, []string{"g"})), op("Relu", "r", []string{"g"}, []string{"y"})),
			map[string]*tensor.Tensor{"a": f(2, 2)(1, 2, 3, -40)},
			"[2 2] [11 12 23 0]",
		},
		{
			"gemm with computed B and C",
			graph(13, []*onnxpb.ValueInfoProto{floatInput("a", 2, 2), floatInput("b", 2, 2), floatInput("c", 2)}, []string{"y"}, nil,
				withAttr(op("Gemm", "g", []string{"a", "b", "c"}, []string{"y"}), floatAttr("alpha", 0.5), floatAttr("beta", 2))),
			map[string]*tensor.Tensor{"a": f(2, 2)(1, 2, 3, 4), "b": f(2, 2)(1, 1, 1, 1), "c": f(2)(1, 2)},
			"[2 2] [3.5 5.5 5.5 7.5]",
		},
		{
			"thresholdedrelu alpha 2: only values above alpha pass",
			graph(13, []*onnxpb.ValueInfoProto{floatInput("a", 5)}, []string{"y"}, nil,
				withAttr(op("ThresholdedRelu", "t", []string{"a"}, []string{"y"}), floatAttr("alpha", 2))),
			map[string]*tensor.Tensor{"a": f(5)(-3, 1, 2, 2.5, 7)},
			"[5] [0 0 0 2.5 7]",
		},
		{
			"thresholdedrelu absorbed by gemm",
			graph(13, []*onnxpb.ValueInfoProto{floatInput("a", 2, 2)}, []string{"y"},
				[]*onnxpb.TensorProto{floats("w", []int64{2, 2}, 1, 0, 0, 1), floats("c", []int64{2}, 0, 1)},
				op("Gemm", "g", []string{"a", "w", "c"}, []string{"g"}),
				withAttr(op("ThresholdedRelu", "t", []string{"g"}, []string{"y"}), floatAttr("alpha", 2))),
			map[string]*tensor.Tensor{"a": f(2, 2)(1, 2, 3, 4)},
			"[2 2] [0 3 3 5]",
		},
		{
			"thresholdedrelu default alpha 1",
			graph(13, []*onnxpb.ValueInfoProto{floatInput("a", 4)}, []string{"y"}, nil,
				op("ThresholdedRelu", "t", []string{"a"}, []string{"y"})),
			map[string]*tensor.Tensor{"a": f(4)(-1, 0.5, 1, 1.5)},
			"[4] [0 0 0 1.5]",
		},
		{
			"constant folding through shape ops",
			graph(13, []*onnxpb.ValueInfoProto{floatInput("a", -1, 2)}, []string{"y"},
				[]*onnxpb.TensorProto{floats("w", []int64{1, 2}, 3, 4)},
				op("Shape", "sh", []string{"w"}, []string{"s"}), op("Cast", "c", []string{"s"}, []string{"sf"}),
				op("Add", "add", []string{"a", "sf"}, []string{"y"})),
			map[string]*tensor.Tensor{"a": f(1, 2)(0.5, 0.5)},
			"[1 2] [1.5 2.5]",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := onnxrt.Load(withCastTo(tt.model))
			if err != nil {
				t.Fatal(err)
			}
			out, err := m.Run(tt.inputs, nil)
			if err != nil {
				t.Fatal(err)
			}
			y := out["y"]
			if got := fmt.Sprint(y.Shape, y.Data); got != tt.want {
				t.Errorf("y = %s, want %s", got, tt.want)
			}
		})
	}
}

// withCastTo sets to=FLOAT on every Cast node of a serialized model.
func withCastTo(b []byte) []byte {
	var mp onnxpb.ModelProto
	if err := protoUnmarshal(b, &mp); err != nil {
		panic(err)
	}
	for _, n := range mp.GetGraph().GetNode() {
		if n.OpType == "Cast" {
			n.Attribute = append(n.Attribute, intAttr("to", int64(onnxpb.TensorProto_FLOAT)))
		}
	}
	out, err := protoMarshal(&mp)
	if err != nil {
		panic(err)
	}
	return out
}

func TestIntegerDivisionByZero(t *testing.T) {
	b := graph(13, []*onnxpb.ValueInfoProto{typedInput("a", onnxpb.TensorProto_INT64, 2), typedInput("b", onnxpb.TensorProto_INT64, 2)},
		[]string{"y"}, nil, op("Div", "d", []string{"a", "b"}, []string{"y"}))
	m, err := onnxrt.Load(b)
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.Run(map[string]*tensor.Tensor{
		"a": {DType: tensor.Int64, Shape: []int64{2}, Data: []int64{1, 2}},
		"b": {DType: tensor.Int64, Shape: []int64{2}, Data: []int64{1, 0}},
	}, nil)
	if !errors.Is(err, onnxrt.ErrInvalidInput) || !strings.Contains(err.Error(), "division by zero") {
		t.Errorf("err = %v, want ErrInvalidInput for division by zero", err)
	}
}
