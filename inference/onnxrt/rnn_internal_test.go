package onnxrt

import (
	"math"
	"testing"
)

// TestTanh32Accuracy checks the rational tanh against math.Tanh over the
// range where it is not clamped, and the logistic function built on it.
func TestTanh32Accuracy(t *testing.T) {
	var worstT, worstS float64
	for x := -10.0; x <= 10; x += 1e-4 {
		got := float64(tanh32(float32(x)))
		want := math.Tanh(float64(float32(x)))
		worstT = max(worstT, math.Abs(got-want))
		gs := float64(sigmoid32(float32(x)))
		ws := 1 / (1 + math.Exp(-float64(float32(x))))
		worstS = max(worstS, math.Abs(gs-ws))
	}
	t.Logf("largest error: tanh %.3g, sigmoid %.3g", worstT, worstS)
	if worstT > 1e-6 || worstS > 1e-6 {
		t.Fatalf("tanh32 error %.3g or sigmoid32 error %.3g above 1e-6", worstT, worstS)
	}
}

// TestTanhVec: the vector kernel (where the CPU has one) agrees with tanh32
// to float32 rounding on every length, including tails and NaN.
func TestTanhVec(t *testing.T) {
	for n := range 40 {
		src := make([]float32, n)
		for i := range src {
			src[i] = float32(i-n/2) * 0.37
		}
		if n > 3 {
			src[3] = float32(math.NaN())
		}
		for _, p := range [][3]float32{{1, 1, 0}, {0.5, 0.5, 0.5}} {
			got := make([]float32, n)
			want := make([]float32, n)
			tanhVec(got, src, p[0], p[1], p[2])
			tanhVecGo(want, src, p[0], p[1], p[2])
			for i := range got {
				if math.IsNaN(float64(want[i])) != math.IsNaN(float64(got[i])) ||
					math.Abs(float64(got[i]-want[i])) > 2e-7 {
					t.Fatalf("n=%d %v: [%d] = %g, scalar %g", n, p, i, got[i], want[i])
				}
			}
		}
	}
}
