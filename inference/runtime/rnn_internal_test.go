package runtime

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
