package onnxrt

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestReduceIntoMatchesDefinition checks reduceInto's block paths (trailing
// and middle reduced dimensions) and its general path against the
// definition on random shapes and axes — dims of 0 and 1 included, NaN and
// -0 among the values — bit for bit: each output must combine the same
// values in the same order.
func TestReduceIntoMatchesDefinition(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 5))
	specials := []float32{float32(math.NaN()), float32(math.Copysign(0, -1)), 0, float32(math.Inf(1))}
	for it := range 3000 {
		rank := 1 + rng.IntN(4)
		shape := make([]int, rank)
		n := 1
		for d := range shape {
			shape[d] = []int{0, 1, 1, 2, 3, 5}[rng.IntN(6)]
			if it%7 != 0 && shape[d] == 0 {
				shape[d] = 4
			}
			n *= shape[d]
		}
		reduced := make([]bool, rank)
		for d := range reduced {
			reduced[d] = rng.IntN(2) == 0
		}
		stride := make([]int, rank)
		outN := 1
		for d := rank - 1; d >= 0; d-- {
			if !reduced[d] {
				stride[d] = outN
				outN *= shape[d]
			}
		}
		in := make([]float32, n)
		for i := range in {
			in[i] = float32(rng.IntN(17) - 8)
			if rng.IntN(10) == 0 {
				in[i] = specials[rng.IntN(len(specials))]
			}
		}
		for _, op := range []reduceOp{rSum, rMean, rMax, rMin} {
			emptyAxis := false
			for d := range shape {
				emptyAxis = emptyAxis || (reduced[d] && shape[d] == 0)
			}
			if emptyAxis && (op == rMax || op == rMin) {
				continue // refused by the kernel before reduceInto
			}
			got := make([]float32, outN)
			for i := range got {
				got[i] = 42 // stale values from a pooled buffer
			}
			reduceInto(op, got, in, shape, stride)
			want := reduceByDefinition(op, in, shape, stride, outN)
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) && !(got[i] != got[i] && want[i] != want[i]) {
					t.Fatalf("op %d shape %v reduced %v: output %d = %v, want %v", op, shape, reduced, i, got[i], want[i])
				}
			}
		}
	}
}

// reduceByDefinition walks the input in row-major order and combines each
// value into its output: the first value of an output starts it (0 first
// for sums).
func reduceByDefinition(op reduceOp, in []float32, shape, stride []int, outN int) []float32 {
	out := make([]float32, outN)
	started := make([]bool, outN)
	idx := make([]int, len(shape))
	for _, v := range in {
		o := 0
		for d, i := range idx {
			o += i * stride[d]
		}
		switch {
		case op == rSum || op == rMean:
			out[o] += v
		case !started[o]:
			out[o] = v
		case op == rMax:
			out[o] = max(out[o], v)
		default:
			out[o] = min(out[o], v)
		}
		started[o] = true
		for d := len(shape) - 1; d >= 0; d-- {
			idx[d]++
			if idx[d] < shape[d] {
				break
			}
			idx[d] = 0
		}
	}
	return out
}
