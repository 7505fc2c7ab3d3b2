// Package testmodels builds small ONNX models with the demo model's
// signature (input "input" float32 [-1, 16], output "output" float32
// [-1, 1]) whose answers a test can predict exactly, so two versions can be
// made to differ on a known share of inputs.
package testmodels

import (
	"encoding/binary"
	"math"

	"google.golang.org/protobuf/proto"

	onnxpb "github.com/infergate/infergate/proto/onnx"
)

const onnxFloat = 1

// Feature returns a model whose output is feature f of the input
// (y = x[:, f]); with relu, max(x[:, f], 0). The two differ exactly on the
// inputs whose feature f is negative.
func Feature(f int, relu bool) []byte {
	raw := make([]byte, 16*4)
	binary.LittleEndian.PutUint32(raw[4*f:], math.Float32bits(1))
	w := &onnxpb.TensorProto{Name: "w", Dims: []int64{16, 1}, DataType: onnxFloat, RawData: raw}
	nodes := []*onnxpb.NodeProto{{OpType: "MatMul", Input: []string{"input", "w"}, Output: []string{"y"}}}
	last := "y"
	if relu {
		nodes = append(nodes, &onnxpb.NodeProto{OpType: "Relu", Input: []string{"y"}, Output: []string{"r"}})
		last = "r"
	}
	nodes = append(nodes, &onnxpb.NodeProto{OpType: "Identity", Input: []string{last}, Output: []string{"output"}})
	g := &onnxpb.GraphProto{Name: "feature", Node: nodes, Initializer: []*onnxpb.TensorProto{w},
		Input:  []*onnxpb.ValueInfoProto{valueInfo("input", 16)},
		Output: []*onnxpb.ValueInfoProto{valueInfo("output", 1)}}
	m := &onnxpb.ModelProto{IrVersion: 7, OpsetImport: []*onnxpb.OperatorSetIdProto{{Version: 13}}, Graph: g, ProducerName: "testmodels"}
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

func valueInfo(name string, width int64) *onnxpb.ValueInfoProto {
	shape := &onnxpb.TensorShapeProto{Dim: []*onnxpb.TensorShapeProto_Dimension{
		{Value: &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: "batch"}},
		{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: width}},
	}}
	return &onnxpb.ValueInfoProto{Name: name, Type: &onnxpb.TypeProto{
		Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{ElemType: onnxFloat, Shape: shape}}}}
}
