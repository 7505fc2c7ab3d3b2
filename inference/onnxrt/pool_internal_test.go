package onnxrt

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestMaxPool2x2 checks the 2×2/stride-2 row pooling in use (assembly where
// the CPU has it) against the definition, NaN and infinities included, on
// lengths around the 16-output blocks.
func TestMaxPool2x2(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	nan := float32(math.NaN())
	inf := float32(math.Inf(1))
	for _, n := range []int{0, 1, 15, 16, 17, 32, 33, 50} {
		r0, r1 := randF(rng, 2*n), randF(rng, 2*n)
		for i := 0; i < 2*n; i += 7 {
			switch i % 4 {
			case 0:
				r0[i] = nan
			case 1:
				r1[i] = nan
			case 2:
				r0[i] = -inf
			case 3:
				r1[i] = inf
			}
		}
		o := make([]float32, n)
		maxPool2x2(r0, r1, o)
		for i := range o {
			want := float32(math.Inf(-1))
			isNaN := false
			for _, v := range []float32{r0[2*i], r0[2*i+1], r1[2*i], r1[2*i+1]} {
				if v != v {
					isNaN = true
				}
				want = max(want, v)
			}
			if isNaN != (o[i] != o[i]) || (!isNaN && o[i] != want) {
				t.Fatalf("n=%d: o[%d] = %v, want %v (inputs %v %v %v %v)", n, i, o[i], want, r0[2*i], r0[2*i+1], r1[2*i], r1[2*i+1])
			}
		}
	}
}
