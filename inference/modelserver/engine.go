package modelserver

// engine.go is the only file that knows how models are executed. Until the
// pure-Go runtime package (inference/runtime) lands, it holds a tiny
// interpreter for dense ONNX chains (Gemm/MatMul/Add/Relu/Sigmoid/Tanh/
// Identity) that is just enough to serve and test the demo model.

import (
	"errors"
	"fmt"
	"math"

	"google.golang.org/protobuf/proto"

	"github.com/infergate/infergate/inference/model"
	"github.com/infergate/infergate/inference/tensor"
	onnxpb "github.com/infergate/infergate/proto/onnx"
)

// engine runs a loaded model; safe for concurrent use.
type engine interface {
	Run(inputs map[string]*tensor.Tensor, outputs []string) (map[string]*tensor.Tensor, error)
}

type loadedModel struct {
	eng             engine
	inputs, outputs []model.TensorSpec
}

// errEngineInput marks errors caused by the caller's tensors.
var errEngineInput = errors.New("invalid input")

func isInvalidInput(err error) bool { return errors.Is(err, errEngineInput) }

func loadONNX(data []byte) (*loadedModel, error) {
	var mp onnxpb.ModelProto
	if err := proto.Unmarshal(data, &mp); err != nil {
		return nil, fmt.Errorf("parse ONNX model: %w", err)
	}
	g := mp.GetGraph()
	if g == nil || len(g.GetNode()) == 0 {
		return nil, errors.New("parse ONNX model: no graph")
	}
	e := &miniEngine{consts: map[string]*tensor.Tensor{}}
	for _, init := range g.GetInitializer() {
		t, err := onnxConst(init)
		if err != nil {
			return nil, fmt.Errorf("initializer %q: %w", init.GetName(), err)
		}
		e.consts[init.GetName()] = t
	}
	lm := &loadedModel{eng: e}
	for _, vi := range g.GetInput() {
		if _, ok := e.consts[vi.GetName()]; ok {
			continue
		}
		ts, err := onnxSpec(vi)
		if err != nil {
			return nil, err
		}
		lm.inputs = append(lm.inputs, ts)
	}
	for _, vi := range g.GetOutput() {
		ts, err := onnxSpec(vi)
		if err != nil {
			return nil, err
		}
		lm.outputs = append(lm.outputs, ts)
	}
	for _, n := range g.GetNode() {
		switch n.GetOpType() {
		case "Gemm", "MatMul", "Add", "Relu", "Sigmoid", "Tanh", "Identity":
		default:
			return nil, fmt.Errorf("unsupported ONNX operator %s", n.GetOpType())
		}
		e.nodes = append(e.nodes, n)
	}
	if len(lm.inputs) == 0 || len(lm.outputs) == 0 {
		return nil, errors.New("model has no inputs or no outputs")
	}
	return lm, nil
}

var onnxToTF = map[int32]tensor.DType{1: tensor.Float, 2: tensor.Uint8, 3: tensor.Int8, 5: tensor.Int16,
	6: tensor.Int32, 7: tensor.Int64, 8: tensor.String, 9: tensor.Bool, 11: tensor.Double}

func onnxSpec(vi *onnxpb.ValueInfoProto) (model.TensorSpec, error) {
	tt := vi.GetType().GetTensorType()
	dt, ok := onnxToTF[tt.GetElemType()]
	if !ok {
		return model.TensorSpec{}, fmt.Errorf("%q: unsupported element type %d", vi.GetName(), tt.GetElemType())
	}
	ts := model.TensorSpec{Name: vi.GetName(), DType: dt}
	if tt.GetShape() != nil {
		ts.Shape = []int64{}
		for _, d := range tt.GetShape().GetDim() {
			if v, ok := d.GetValue().(*onnxpb.TensorShapeProto_Dimension_DimValue); ok && v.DimValue > 0 {
				ts.Shape = append(ts.Shape, v.DimValue)
			} else {
				ts.Shape = append(ts.Shape, -1)
			}
		}
	}
	return ts, nil
}

func onnxConst(t *onnxpb.TensorProto) (*tensor.Tensor, error) {
	if t.GetDataType() != 1 {
		return nil, fmt.Errorf("only float initializers are supported")
	}
	n, err := tensor.NumElements(t.GetDims())
	if err != nil {
		return nil, err
	}
	v := t.GetFloatData()
	if raw := t.GetRawData(); len(raw) > 0 {
		if int64(len(raw)) != 4*n {
			return nil, fmt.Errorf("raw_data has %d bytes, want %d", len(raw), 4*n)
		}
		v = make([]float32, n)
		for i := range v {
			v[i] = math.Float32frombits(uint32(raw[4*i]) | uint32(raw[4*i+1])<<8 | uint32(raw[4*i+2])<<16 | uint32(raw[4*i+3])<<24)
		}
	}
	if int64(len(v)) != n {
		return nil, fmt.Errorf("has %d values, want %d", len(v), n)
	}
	return tensor.FromFloat32(v, t.GetDims()...), nil
}

type miniEngine struct {
	consts map[string]*tensor.Tensor
	nodes  []*onnxpb.NodeProto
}

func (e *miniEngine) Run(inputs map[string]*tensor.Tensor, outputs []string) (map[string]*tensor.Tensor, error) {
	vals := make(map[string]*tensor.Tensor, len(e.consts)+len(inputs)+len(e.nodes))
	for k, v := range e.consts {
		vals[k] = v
	}
	for k, v := range inputs {
		vals[k] = v
	}
	get := func(name string) (*tensor.Tensor, error) {
		t, ok := vals[name]
		if !ok {
			return nil, fmt.Errorf("%w: missing tensor %q", errEngineInput, name)
		}
		return t, nil
	}
	for _, n := range e.nodes {
		in := make([]*tensor.Tensor, len(n.GetInput()))
		for i, name := range n.GetInput() {
			t, err := get(name)
			if err != nil {
				return nil, err
			}
			in[i] = t
		}
		var out *tensor.Tensor
		var err error
		switch n.GetOpType() {
		case "Identity":
			out = in[0]
		case "Relu", "Sigmoid", "Tanh":
			out, err = unary(n.GetOpType(), in[0])
		case "Add":
			out, err = addBroadcast(in[0], in[1])
		case "MatMul":
			out, err = gemm(in[0], in[1], nil, 1, 1, false, false)
		case "Gemm":
			var c *tensor.Tensor
			if len(in) > 2 {
				c = in[2]
			}
			alpha, beta, ta, tb := float32(1), float32(1), false, false
			for _, a := range n.GetAttribute() {
				switch a.GetName() {
				case "alpha":
					alpha = a.GetF()
				case "beta":
					beta = a.GetF()
				case "transA":
					ta = a.GetI() != 0
				case "transB":
					tb = a.GetI() != 0
				}
			}
			out, err = gemm(in[0], in[1], c, alpha, beta, ta, tb)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n.GetOpType(), err)
		}
		vals[n.GetOutput()[0]] = out
	}
	res := make(map[string]*tensor.Tensor, len(outputs))
	for _, name := range outputs {
		t, err := get(name)
		if err != nil {
			return nil, err
		}
		res[name] = t
	}
	return res, nil
}

func floats(t *tensor.Tensor) ([]float32, error) {
	v, ok := t.Data.([]float32)
	if !ok {
		return nil, fmt.Errorf("%w: want float32, got %s", errEngineInput, t.DType)
	}
	return v, nil
}

func unary(op string, t *tensor.Tensor) (*tensor.Tensor, error) {
	x, err := floats(t)
	if err != nil {
		return nil, err
	}
	y := make([]float32, len(x))
	for i, v := range x {
		switch op {
		case "Relu":
			y[i] = max(v, 0)
		case "Sigmoid":
			y[i] = float32(1 / (1 + math.Exp(-float64(v))))
		case "Tanh":
			y[i] = float32(math.Tanh(float64(v)))
		}
	}
	return tensor.FromFloat32(y, t.Shape...), nil
}

func addBroadcast(a, b *tensor.Tensor) (*tensor.Tensor, error) {
	x, err := floats(a)
	if err != nil {
		return nil, err
	}
	y, err := floats(b)
	if err != nil {
		return nil, err
	}
	if len(y) == 0 || len(x)%len(y) != 0 {
		return nil, fmt.Errorf("%w: cannot broadcast %s to %s", errEngineInput, tensor.ShapeString(b.Shape), tensor.ShapeString(a.Shape))
	}
	z := make([]float32, len(x))
	for i := range x {
		z[i] = x[i] + y[i%len(y)]
	}
	return tensor.FromFloat32(z, a.Shape...), nil
}

func gemm(a, b, c *tensor.Tensor, alpha, beta float32, ta, tb bool) (*tensor.Tensor, error) {
	x, err := floats(a)
	if err != nil {
		return nil, err
	}
	w, err := floats(b)
	if err != nil {
		return nil, err
	}
	if len(a.Shape) != 2 || len(b.Shape) != 2 {
		return nil, fmt.Errorf("%w: want rank 2, got %s and %s", errEngineInput, tensor.ShapeString(a.Shape), tensor.ShapeString(b.Shape))
	}
	m, k := a.Shape[0], a.Shape[1]
	if ta {
		m, k = k, m
	}
	k2, n := b.Shape[0], b.Shape[1]
	if tb {
		k2, n = n, k2
	}
	if k != k2 {
		return nil, fmt.Errorf("%w: inner dimensions differ: %s x %s", errEngineInput, tensor.ShapeString(a.Shape), tensor.ShapeString(b.Shape))
	}
	at := func(i, j int64) float32 {
		if ta {
			return x[j*m+i]
		}
		return x[i*k+j]
	}
	bt := func(i, j int64) float32 {
		if tb {
			return w[j*k+i]
		}
		return w[i*n+j]
	}
	var bias []float32
	if c != nil {
		if bias, err = floats(c); err != nil {
			return nil, err
		}
	}
	out := make([]float32, m*n)
	for i := range m {
		for j := range n {
			var s float32
			for l := range k {
				s += at(i, l) * bt(l, j)
			}
			s *= alpha
			if len(bias) > 0 {
				s += beta * bias[(i*n+j)%int64(len(bias))]
			}
			out[i*n+j] = s
		}
	}
	return tensor.FromFloat32(out, m, n), nil
}
