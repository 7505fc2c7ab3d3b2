package onnxrt

import (
	"math"

	onnxpb "github.com/infergate/infergate/proto/onnx"
)

// float16 and bfloat16 compute as float32, like float64: initializers are
// widened at load (exactly: both are subsets of float32), graph inputs and
// outputs of those types are float32 in the signature and rounded to the
// declared type at the boundary, and Cast to them rounds. So a model
// exported in half precision gives what its own arithmetic would within
// half-precision rounding, and clients send and receive float32.

// halfRounder returns the rounding of values to ONNX type et (FLOAT16,
// BFLOAT16), or nil for any other type.
func halfRounder(et int32) func([]float32) {
	switch onnxpb.TensorProto_DataType(et) {
	case onnxpb.TensorProto_FLOAT16:
		return roundFloat16
	case onnxpb.TensorProto_BFLOAT16:
		return roundBFloat16
	}
	return nil
}

func roundFloat16(v []float32) {
	for i, x := range v {
		v[i] = float16ToFloat32(float32ToFloat16(x))
	}
}

func roundBFloat16(v []float32) {
	for i, x := range v {
		v[i] = bfloat16ToFloat32(float32ToBFloat16(x))
	}
}

// float32ToFloat16 rounds to the nearest IEEE half (ties to even), with
// overflow to infinity, subnormals, and NaN kept NaN.
func float32ToFloat16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xff
	man := b & 0x7fffff
	switch {
	case exp == 0xff:
		if man != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	case exp > 127+15:
		return sign | 0x7c00
	case exp >= 127-14:
		// Normal half: 10 mantissa bits, round the 13 dropped ones.
		h := uint32(exp-127+15)<<10 | man>>13
		rest := man & 0x1fff
		if rest > 0x1000 || (rest == 0x1000 && h&1 == 1) {
			h++ // may carry into the exponent, up to infinity: correct
		}
		return sign | uint16(h)
	case exp >= 127-25:
		// Subnormal half: the value is m·2^-24 with m < 1024.
		m := man | 0x800000
		shift := uint(126 - exp) // bits dropped from the 24-bit significand
		h := m >> shift
		rest := m & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rest > half || (rest == half && h&1 == 1) {
			h++
		}
		return sign | uint16(h)
	}
	return sign
}

func float16ToFloat32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := int(h>>10) & 0x1f
	man := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f:
		return math.Float32frombits(sign | 0x7f800000 | man<<13)
	case exp == 0:
		f := float32(man) / (1 << 24)
		if sign != 0 {
			f = -f
		}
		return f
	}
	return math.Float32frombits(sign | uint32(exp-15+127)<<23 | man<<13)
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
