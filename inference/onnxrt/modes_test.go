package onnxrt_test

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/infergate/infergate/inference/onnxrt"
	"github.com/infergate/infergate/inference/tensor"
	onnxpb "github.com/infergate/infergate/proto/onnx"
)

func scalarBool(v bool) *tensor.Tensor {
	return &tensor.Tensor{DType: tensor.Bool, Shape: []int64{}, Data: []bool{v}}
}

func int64s(v ...int64) *tensor.Tensor {
	return &tensor.Tensor{DType: tensor.Int64, Shape: []int64{int64(len(v))}, Data: v}
}

func runOne(t *testing.T, model []byte, inputs map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	t.Helper()
	m, err := onnxrt.Load(model)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return m.Run(inputs, nil)
}

func shapeAndData(tt *tensor.Tensor) string {
	return fmt.Sprint(tt.Shape, " ", tt.Data)
}

// BatchNormalization with training_mode 1 normalizes with the batch's own
// statistics and returns the running ones (worked out by hand: channel 0 holds
// 0 and 6, mean 3, variance 9; channel 1 holds 10 and 10, mean 10, variance 0).
func TestBatchNormTrainingMode(t *testing.T) {
	model := graph(15, []*onnxpb.ValueInfoProto{floatInput("x", 2, 2)}, []string{"y", "rm", "rv"},
		[]*onnxpb.TensorProto{
			floats("s", []int64{2}, 5, 4), floats("b", []int64{2}, 0, 1),
			floats("m", []int64{2}, 1, 2), floats("v", []int64{2}, 1, 2),
		},
		withAttr(op("BatchNormalization", "bn", []string{"x", "s", "b", "m", "v"}, []string{"y", "rm", "rv"}),
			intAttr("training_mode", 1), floatAttr("epsilon", 16), floatAttr("momentum", 0.5)))
	got, err := runOne(t, model, map[string]*tensor.Tensor{"x": tensor.FromFloat32([]float32{0, 10, 6, 10}, 2, 2)})
	if err != nil {
		t.Fatal(err)
	}
	// y = (x-mean)/sqrt(var+16)·s + b: channel 0 (x-3)/5·5, channel 1 0/4·4+1.
	for name, want := range map[string]string{"y": "[2 2] [-3 1 3 1]", "rm": "[2] [2 6]", "rv": "[2] [5 1]"} {
		if s := shapeAndData(got[name]); s != want {
			t.Errorf("%s = %s, want %s", name, s, want)
		}
	}

	// Only Y wanted: still the batch statistics.
	model = graph(15, []*onnxpb.ValueInfoProto{floatInput("x", 2, 2)}, []string{"y"},
		[]*onnxpb.TensorProto{
			floats("s", []int64{2}, 5, 4), floats("b", []int64{2}, 0, 1),
			floats("m", []int64{2}, 1, 2), floats("v", []int64{2}, 1, 2),
		},
		withAttr(op("BatchNormalization", "bn", []string{"x", "s", "b", "m", "v"}, []string{"y"}),
			intAttr("training_mode", 1), floatAttr("epsilon", 16)))
	got, err = runOne(t, model, map[string]*tensor.Tensor{"x": tensor.FromFloat32([]float32{0, 10, 6, 10}, 2, 2)})
	if err != nil {
		t.Fatal(err)
	}
	if s := shapeAndData(got["y"]); s != "[2 2] [-3 1 3 1]" {
		t.Errorf("y = %s", s)
	}

	// Running statistics without training_mode stay refused.
	_, err = onnxrt.Load(graph(15, []*onnxpb.ValueInfoProto{floatInput("x", 2, 2)}, []string{"y", "rm"},
		[]*onnxpb.TensorProto{
			floats("s", []int64{2}, 5, 4), floats("b", []int64{2}, 0, 1),
			floats("m", []int64{2}, 1, 2), floats("v", []int64{2}, 1, 2),
		},
		op("BatchNormalization", "bn", []string{"x", "s", "b", "m", "v"}, []string{"y", "rm"})))
	if err == nil || !strings.Contains(err.Error(), "training_mode") {
		t.Errorf("running mean output without training_mode: err = %v", err)
	}
}

// Dropout with training_mode fed at run time passes its input through when
// that is exact (training_mode false, or ratio 0), and refuses a random mask
// per call, naming the node.
func TestDropoutTrainingModeInput(t *testing.T) {
	model := graph(13, []*onnxpb.ValueInfoProto{
		floatInput("x", 2), floatInput("r"), typedInput("t", onnxpb.TensorProto_BOOL),
	}, []string{"y", "z"}, nil, op("Dropout", "drop", []string{"x", "r", "t"}, []string{"y", "z"}))
	m, err := onnxrt.Load(model)
	if err != nil {
		t.Fatal(err)
	}
	x := tensor.FromFloat32([]float32{1, 2}, 2)
	for _, c := range []struct {
		train bool
		ratio float32
		ok    bool
	}{{false, 0.5, true}, {true, 0, true}, {false, 0, true}, {true, 0.5, false}, {true, 0.75, false}} {
		got, err := m.Run(map[string]*tensor.Tensor{
			"x": x, "r": tensor.FromFloat32([]float32{c.ratio}), "t": scalarBool(c.train),
		}, nil)
		if !c.ok {
			if !errors.Is(err, onnxrt.ErrInvalidInput) || !strings.Contains(err.Error(), `"drop"`) ||
				!strings.Contains(err.Error(), "random dropout mask is not supported") {
				t.Errorf("training %v ratio %v: err = %v, want a refusal naming the node", c.train, c.ratio, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("training %v ratio %v: %v", c.train, c.ratio, err)
			continue
		}
		if s := shapeAndData(got["y"]); s != "[2] [1 2]" {
			t.Errorf("training %v ratio %v: y = %s", c.train, c.ratio, s)
		}
		if s := shapeAndData(got["z"]); s != "[2] [1 1]" {
			t.Errorf("training %v ratio %v: mask = %s", c.train, c.ratio, s)
		}
	}

	// Default ratio 0.5 with training_mode fed true: refused at run time.
	model = graph(13, []*onnxpb.ValueInfoProto{floatInput("x", 2), typedInput("t", onnxpb.TensorProto_BOOL)},
		[]string{"y"}, nil, op("Dropout", "drop", []string{"x", "", "t"}, []string{"y"}))
	if _, err := runOne(t, model, map[string]*tensor.Tensor{"x": x, "t": scalarBool(true)}); !errors.Is(err, onnxrt.ErrInvalidInput) {
		t.Errorf("default ratio, training: err = %v", err)
	}

	// Constant training_mode true: ratio 0 is exact, a nonzero ratio is
	// refused at load.
	tTrue := &onnxpb.TensorProto{Name: "t", DataType: int32(onnxpb.TensorProto_BOOL), Int32Data: []int32{1}}
	model = graph(13, []*onnxpb.ValueInfoProto{floatInput("x", 2)}, []string{"y"},
		[]*onnxpb.TensorProto{floats("r", nil, 0), tTrue}, op("Dropout", "drop", []string{"x", "r", "t"}, []string{"y"}))
	if got, err := runOne(t, model, map[string]*tensor.Tensor{"x": x}); err != nil || shapeAndData(got["y"]) != "[2] [1 2]" {
		t.Errorf("constant training, ratio 0: %v %v", got, err)
	}
	_, err = onnxrt.Load(graph(13, []*onnxpb.ValueInfoProto{floatInput("x", 2)}, []string{"y"},
		[]*onnxpb.TensorProto{floats("r", nil, 0.3), tTrue}, op("Dropout", "drop", []string{"x", "r", "t"}, []string{"y"})))
	if err == nil || !strings.Contains(err.Error(), "random mask") {
		t.Errorf("constant training, ratio 0.3: err = %v", err)
	}
}

// Resize with tf_crop_and_resize samples the roi box and gives
// extrapolation_value outside the input (worked out by hand: along the last
// axis of length 4, roi 0.5..1.5 and 3 outputs sample 1.5, 3 and 4.5).
func TestResizeTFCropAndResize(t *testing.T) {
	for _, c := range []struct {
		mode string
		roi  []float32
		want string
	}{
		{"linear", []float32{0, 0.5, 1, 1.5}, "[1 3] [15 30 -1]"},
		{"nearest", []float32{0, 0.5, 1, 1.5}, "[1 3] [10 30 -1]"},
		// 0.75, 1.875 and 3.
		{"linear", []float32{0, 0.25, 1, 1}, "[1 3] [7.5 18.75 30]"},
		// A length-1 axis samples its only row whatever the roi (the spec's
		// 0.5·(start+end)·(1−1) = 0).
		{"linear", []float32{2, 0.25, 3, 1}, "[1 3] [7.5 18.75 30]"},
	} {
		model := graph(13, []*onnxpb.ValueInfoProto{floatInput("x", 1, 4)}, []string{"y"},
			[]*onnxpb.TensorProto{floats("roi", []int64{4}, c.roi...), ints("sizes", 1, 3)},
			withAttr(op("Resize", "rs", []string{"x", "roi", "", "sizes"}, []string{"y"}),
				strAttr("mode", c.mode), strAttr("coordinate_transformation_mode", "tf_crop_and_resize"),
				floatAttr("extrapolation_value", -1)))
		got, err := runOne(t, model, map[string]*tensor.Tensor{"x": tensor.FromFloat32([]float32{0, 10, 20, 30}, 1, 4)})
		if err != nil {
			t.Errorf("%s %v: %v", c.mode, c.roi, err)
			continue
		}
		if s := shapeAndData(got["y"]); s != c.want {
			t.Errorf("%s %v: y = %s, want %s", c.mode, c.roi, s, c.want)
		}
	}

	// Out of range along the first axis (length 2, sampled at
	// 0.5·(2+3)·1 = 2.5): every element extrapolated.
	model2 := graph(13, []*onnxpb.ValueInfoProto{floatInput("x", 2, 4)}, []string{"y"},
		[]*onnxpb.TensorProto{floats("roi", []int64{4}, 2, 0, 3, 1), ints("sizes", 1, 3)},
		withAttr(op("Resize", "rs", []string{"x", "roi", "", "sizes"}, []string{"y"}),
			strAttr("mode", "linear"), strAttr("coordinate_transformation_mode", "tf_crop_and_resize"),
			floatAttr("extrapolation_value", -1)))
	got, err := runOne(t, model2, map[string]*tensor.Tensor{"x": tensor.FromFloat32([]float32{0, 10, 20, 30, 0, 10, 20, 30}, 2, 4)})
	if err != nil || shapeAndData(got["y"]) != "[1 3] [-1 -1 -1]" {
		t.Errorf("out of range along axis 0: %v %v", got, err)
	}

	// A roi of the wrong length is an input error; no roi at all a load error.
	model := graph(13, []*onnxpb.ValueInfoProto{floatInput("x", 1, 4), floatInput("roi", -1)}, []string{"y"},
		[]*onnxpb.TensorProto{ints("sizes", 1, 3)},
		withAttr(op("Resize", "rs", []string{"x", "roi", "", "sizes"}, []string{"y"}),
			strAttr("coordinate_transformation_mode", "tf_crop_and_resize")))
	_, err = runOne(t, model, map[string]*tensor.Tensor{
		"x": tensor.FromFloat32([]float32{0, 10, 20, 30}, 1, 4), "roi": tensor.FromFloat32([]float32{0, 1}, 2)})
	if !errors.Is(err, onnxrt.ErrInvalidInput) || !strings.Contains(err.Error(), "roi has 2 values") {
		t.Errorf("short roi: err = %v", err)
	}
	_, err = onnxrt.Load(graph(13, []*onnxpb.ValueInfoProto{floatInput("x", 1, 4)}, []string{"y"},
		[]*onnxpb.TensorProto{ints("sizes", 1, 3)},
		withAttr(op("Resize", "rs", []string{"x", "", "", "sizes"}, []string{"y"}),
			strAttr("coordinate_transformation_mode", "tf_crop_and_resize"))))
	if err == nil || !strings.Contains(err.Error(), "roi") {
		t.Errorf("no roi: err = %v", err)
	}
}

// Graph inputs declared UINT32/UINT64 are int64 in the signature, checked
// for range, and read only where unsigned wrap-around cannot matter.
func TestUnsignedInputs(t *testing.T) {
	for _, c := range []struct {
		et  onnxpb.TensorProto_DataType
		bad []int64
	}{
		{onnxpb.TensorProto_UINT32, []int64{-1, math.MaxUint32 + 1}},
		{onnxpb.TensorProto_UINT64, []int64{-1, math.MinInt64}},
	} {
		m, err := onnxrt.Load(graph(15, []*onnxpb.ValueInfoProto{floatInput("x", 3), typedInput("y", c.et, 3)},
			[]string{"z"}, nil, op("Pow", "p", []string{"x", "y"}, []string{"z"})))
		if err != nil {
			t.Fatalf("%s: %v", c.et, err)
		}
		if dt := m.Inputs()[1].DType; dt != tensor.Int64 {
			t.Errorf("%s input is %s in the signature, want DT_INT64", c.et, dt)
		}
		x := tensor.FromFloat32([]float32{1, 2, 3}, 3)
		got, err := m.Run(map[string]*tensor.Tensor{"x": x, "y": int64s(4, 5, 6)}, nil)
		if err != nil {
			t.Fatalf("%s: %v", c.et, err)
		}
		if s := shapeAndData(got["z"]); s != "[3] [1 32 729]" {
			t.Errorf("%s: z = %s", c.et, s)
		}
		for _, v := range c.bad {
			_, err := m.Run(map[string]*tensor.Tensor{"x": x, "y": int64s(1, v, 2)}, nil)
			if !errors.Is(err, onnxrt.ErrInvalidInput) || !strings.Contains(err.Error(), "out of range for the model's "+c.et.String()) {
				t.Errorf("%s fed %d: err = %v", c.et, v, err)
			}
		}
	}

	// Other consumers would compute in int64 where ONNX wraps around.
	_, err := onnxrt.Load(graph(15, []*onnxpb.ValueInfoProto{typedInput("a", onnxpb.TensorProto_UINT32, 3), typedInput("b", onnxpb.TensorProto_UINT32, 3)},
		[]string{"c"}, nil, op("Sub", "s", []string{"a", "b"}, []string{"c"})))
	if err == nil || !strings.Contains(err.Error(), "UINT32") {
		t.Errorf("Sub of UINT32 inputs: err = %v", err)
	}
	// And an output declared unsigned is refused.
	g := graph(15, []*onnxpb.ValueInfoProto{typedInput("a", onnxpb.TensorProto_UINT32, 3)}, nil, nil,
		op("Cast", "c", []string{"a"}, []string{"b"}))
	var mp onnxpb.ModelProto
	if err := protoUnmarshal(g, &mp); err != nil {
		t.Fatal(err)
	}
	mp.Graph.Node[0].Attribute = []*onnxpb.AttributeProto{intAttr("to", int64(onnxpb.TensorProto_UINT32))}
	out := typedInput("b", onnxpb.TensorProto_UINT32, 3)
	mp.Graph.Output = []*onnxpb.ValueInfoProto{out}
	b, err := protoMarshal(&mp)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := onnxrt.Load(b); err == nil {
		t.Error("a UINT32 output loads")
	}
}
