package onnxrt

import (
	"math"
	"testing"
)

// Every half value widens to its value by the definition and narrows back to
// itself; values between two neighbours round to the nearer (ties to even).
func TestFloat16Conversions(t *testing.T) {
	for h := range 1 << 16 {
		f := float16ToFloat32(uint16(h))
		e, m := (h>>10)&0x1f, float64(h&0x3ff)
		var want float64
		switch e {
		case 0x1f:
			if m != 0 {
				if f == f {
					t.Fatalf("%#04x widens to %v, want NaN", h, f)
				}
				if g := float32ToFloat16(f); g&0x7c00 != 0x7c00 || g&0x3ff == 0 {
					t.Fatalf("NaN narrows to %#04x", g)
				}
				continue
			}
			want = math.Inf(1)
		case 0:
			want = math.Ldexp(m/1024, -14)
		default:
			want = math.Ldexp(1+m/1024, e-15)
		}
		if h&0x8000 != 0 {
			want = -want
		}
		if float64(f) != want || math.Signbit(float64(f)) != (h&0x8000 != 0) {
			t.Fatalf("%#04x widens to %v, want %v", h, f, want)
		}
		if g := float32ToFloat16(f); g != uint16(h) {
			t.Fatalf("%v narrows to %#04x, want %#04x", f, g, h)
		}
		// Just above the midpoint to the next half away from zero rounds
		// there; the midpoint itself rounds to the even one.
		if e < 0x1e || (e == 0x1e && m < 1023) {
			next := float64(float16ToFloat32(uint16(h + 1)))
			mid := (float64(f) + next) / 2
			even := uint16(h)
			if h&1 == 1 {
				even = uint16(h + 1)
			}
			if g := float32ToFloat16(float32(mid)); g != even {
				t.Fatalf("midpoint %v of %#04x and %#04x narrows to %#04x, want %#04x", mid, h, h+1, g, even)
			}
			above := math.Nextafter32(float32(mid), float32(math.Copysign(math.Inf(1), next)))
			if g := float32ToFloat16(above); g != uint16(h+1) {
				t.Fatalf("%v (just past the midpoint of %#04x and %#04x) narrows to %#04x", above, h, h+1, g)
			}
		}
	}
	if g := float32ToFloat16(70000); g != 0x7c00 {
		t.Fatalf("70000 narrows to %#04x, want +Inf", g)
	}
	if g := float32ToFloat16(-1e-10); g != 0x8000 {
		t.Fatalf("-1e-10 narrows to %#04x, want -0", g)
	}
}

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
