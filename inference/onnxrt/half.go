package onnxrt

import (
	"math"

	"github.com/infergate/infergate/inference/tensor"
	onnxpb "github.com/infergate/infergate/proto/onnx"
)

// float16 and bfloat16 compute as float32, like float64: initializers are
// widened at load (exactly: both are subsets of float32), graph inputs and
// outputs of those types are rounded to the declared type at the boundary,
// and Cast to them rounds. So a model exported in half precision gives what
// its own arithmetic would within half-precision rounding. float16 inputs and
// outputs are tensor.Half in the signature (TF Serving's DT_HALF; a float32
// input is accepted too and rounded); bfloat16 ones are float32.

// halfRounder returns the rounding of values to ONNX type et (FLOAT16,
// BFLOAT16), or nil for any other type.
func halfRounder(et int32) func([]float32) {
	switch onnxpb.TensorProto_DataType(et) {
	case onnxpb.TensorProto_FLOAT16:
		return tensor.RoundHalf
	case onnxpb.TensorProto_BFLOAT16:
		return roundBFloat16
	}
	return nil
}

func roundBFloat16(v []float32) {
	for i, x := range v {
		v[i] = bfloat16ToFloat32(float32ToBFloat16(x))
	}
}

// float32ToBFloat16 keeps the upper 16 bits, rounded to nearest even; NaN
// stays NaN.
func float32ToBFloat16(f float32) uint16 {
	b := math.Float32bits(f)
	if f != f {
		return uint16(b>>16) | 0x40
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

func bfloat16ToFloat32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }
