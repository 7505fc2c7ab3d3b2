package onnxrt

import (
	"math"
	"testing"
)

func TestBFloat16Conversions(t *testing.T) {
	for _, c := range []struct {
		in   float32
		want uint16
	}{{1, 0x3f80}, {-2, 0xc000}, {1.00390625, 0x3f80}, {1.01171875, 0x3f82}, {1.0078125, 0x3f81},
		{float32(math.Inf(-1)), 0xff80}, {3.4028235e38, 0x7f80}} {
		if g := float32ToBFloat16(c.in); g != c.want {
			t.Fatalf("%v narrows to %#04x, want %#04x", c.in, g, c.want)
		}
	}
	if f := bfloat16ToFloat32(float32ToBFloat16(float32(math.NaN()))); f == f {
		t.Fatal("NaN does not stay NaN")
	}
}
