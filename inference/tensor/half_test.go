package tensor

import (
	"math"
	"testing"
)

// Every half value widens to its value by the definition and narrows back to
// itself; values between two neighbours round to the nearer (ties to even).
func TestHalfConversions(t *testing.T) {
	for h := range 1 << 16 {
		f := HalfFromBits(uint16(h))
		e, m := (h>>10)&0x1f, float64(h&0x3ff)
		var want float64
		switch e {
		case 0x1f:
			if m != 0 {
				if f == f {
					t.Fatalf("%#04x widens to %v, want NaN", h, f)
				}
				if g := HalfBits(f); g&0x7c00 != 0x7c00 || g&0x3ff == 0 {
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
		if g := HalfBits(f); g != uint16(h) {
			t.Fatalf("%v narrows to %#04x, want %#04x", f, g, h)
		}
		// Just above the midpoint to the next half away from zero rounds
		// there; the midpoint itself rounds to the even one.
		if e < 0x1e || (e == 0x1e && m < 1023) {
			next := float64(HalfFromBits(uint16(h + 1)))
			mid := (float64(f) + next) / 2
			even := uint16(h)
			if h&1 == 1 {
				even = uint16(h + 1)
			}
			if g := HalfBits(float32(mid)); g != even {
				t.Fatalf("midpoint %v of %#04x and %#04x narrows to %#04x, want %#04x", mid, h, h+1, g, even)
			}
			above := math.Nextafter32(float32(mid), float32(math.Copysign(math.Inf(1), next)))
			if g := HalfBits(above); g != uint16(h+1) {
				t.Fatalf("%v (just past the midpoint of %#04x and %#04x) narrows to %#04x", above, h, h+1, g)
			}
		}
	}
	if g := HalfBits(70000); g != 0x7c00 {
		t.Fatalf("70000 narrows to %#04x, want +Inf", g)
	}
	if g := HalfBits(-1e-10); g != 0x8000 {
		t.Fatalf("-1e-10 narrows to %#04x, want -0", g)
	}
}
