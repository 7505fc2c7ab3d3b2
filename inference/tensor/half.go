package tensor

import "math"

// DT_HALF values are IEEE 754 binary16. Go has no such type, so a Half
// tensor holds them as []float32 (every half is exactly a float32): code that
// reads float32 data — JSON encoders, batching, comparisons — handles both
// types without a case of its own. The 16-bit patterns appear only on the
// wire: in half_val (one per int32, zero-extended, as TensorFlow's
// tensor_util writes them) and as 2-byte little-endian tensor_content.

// HalfBits rounds f to the nearest half (ties to even) and returns its bit
// pattern. Values beyond the largest half (65504, plus half an ulp) become
// infinity, values below the smallest subnormal's half become zero, and NaN
// stays NaN (quiet, sign kept).
func HalfBits(f float32) uint16 {
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

// HalfFromBits returns the half with bit pattern h as a float32 (exactly).
func HalfFromBits(h uint16) float32 {
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

// RoundHalf rounds every value of v to the nearest half, in place.
func RoundHalf(v []float32) {
	for i, x := range v {
		v[i] = HalfFromBits(HalfBits(x))
	}
}
