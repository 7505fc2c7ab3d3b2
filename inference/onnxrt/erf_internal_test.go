package onnxrt

import (
	"math"
	"testing"
)

// erf32 stays within 1e-6 of math.Erf (a few float32 ulp; measured 4.2e-7) over a fine grid of [-6, 6] and keeps
// the special values.
func TestErf32(t *testing.T) {
	worst := 0.0
	for i := -600000; i <= 600000; i++ {
		x := float32(i) / 100000
		d := math.Abs(float64(erf32(x)) - math.Erf(float64(x)))
		worst = max(worst, d)
		if d > 1e-6 {
			t.Fatalf("erf32(%v) = %v, math.Erf says %v", x, erf32(x), math.Erf(float64(x)))
		}
	}
	t.Logf("largest difference %.3g", worst)
	if erf32(float32(math.Inf(1))) != 1 || erf32(float32(math.Inf(-1))) != -1 || erf32(0) != 0 {
		t.Fatal("wrong at ±Inf or 0")
	}
	if v := erf32(float32(math.NaN())); v == v {
		t.Fatal("NaN does not stay NaN")
	}
}

// The slice form in use (assembly where the CPU has it) agrees with math.Erf
// the same way, on lengths around its 16-value blocks, in place too.
func TestErfSlice(t *testing.T) {
	for _, n := range []int{0, 1, 15, 16, 17, 100003} {
		in := make([]float32, n)
		for i := range in {
			in[i] = float32(i-n/2) * 12 / float32(max(n, 1))
		}
		if n > 3 {
			in[1], in[2], in[3] = float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))
		}
		out := make([]float32, n)
		erfSlice(out, in)
		for i, x := range in {
			want := math.Erf(float64(x))
			if x != x {
				if out[i] == out[i] {
					t.Fatalf("n=%d: erf(NaN) = %v", n, out[i])
				}
				continue
			}
			if d := math.Abs(float64(out[i]) - want); d > 1e-6 {
				t.Fatalf("n=%d: erf(%v) = %v, math.Erf says %v", n, x, out[i], want)
			}
		}
		erfSlice(in, in)
		for i := range in {
			if in[i] != out[i] && out[i] == out[i] {
				t.Fatalf("n=%d: in place gives %v at %d, not %v", n, in[i], i, out[i])
			}
		}
	}
}

// expSoftmax agrees with math.Exp to 1e-6 relative over [-87, 88] (below,
// where float32 goes subnormal, to 1e-38 absolute), on lengths around its
// 16-value blocks, NaN and -Inf included.
func TestExpSoftmax(t *testing.T) {
	for _, n := range []int{0, 1, 15, 16, 17, 200003} {
		in := make([]float32, n)
		for i := range in {
			in[i] = -100 + float32(i)*188/float32(max(n, 1))
		}
		if n > 3 {
			in[1], in[2] = float32(math.NaN()), float32(math.Inf(-1))
		}
		out := make([]float32, n)
		expSoftmax(out, in)
		for i, x := range in {
			want := math.Exp(float64(x))
			got := float64(out[i])
			switch {
			case x != x:
				if got == got {
					t.Fatalf("exp(NaN) = %v", got)
				}
			case x < -87:
				if math.Abs(got-want) > 1e-38 {
					t.Fatalf("exp(%v) = %v, math.Exp says %v", x, got, want)
				}
			case math.Abs(got-want) > 1e-6*want:
				t.Fatalf("exp(%v) = %v, math.Exp says %v", x, got, want)
			}
		}
	}
}

// softmaxRows in use (AVX-512 where the CPU has it) and the portable form
// agree with softmax in float64 on rows of every length around the 16-value
// blocks, several rows at once, in place too; a row with NaN is all NaN, and
// -Inf entries give 0.
func TestSoftmaxRows(t *testing.T) {
	impls := map[string]func(out, in []float32, n int){"in use": softmaxRows, "go": softmaxRowsGo}
	for name, f := range impls {
		for _, n := range []int{1, 2, 15, 16, 17, 31, 32, 33, 48, 64, 100} {
			for _, rows := range []int{1, 3} {
				in := make([]float32, rows*n)
				for i := range in {
					in[i] = float32(math.Sin(float64(i)*1.7)*30 + float64(i%5))
				}
				in[rows*n/2] = float32(math.Inf(-1))
				for _, inPlace := range []bool{false, true} {
					out := make([]float32, len(in))
					src := append([]float32(nil), in...)
					if inPlace {
						out = src
					}
					f(out, src, n)
					for r := range rows {
						row := in[r*n : (r+1)*n]
						mx := math.Inf(-1)
						for _, v := range row {
							mx = math.Max(mx, float64(v))
						}
						var sum float64
						for _, v := range row {
							sum += math.Exp(float64(v) - mx)
						}
						for j, v := range row {
							want := math.Exp(float64(v)-mx) / sum
							got := float64(out[r*n+j])
							if math.Abs(got-want) > 1e-6*want+1e-12 || (n > 1 && math.IsInf(float64(v), -1) && got > 1e-30) {
								t.Fatalf("%s n=%d rows=%d in place %v: [%d][%d] = %v, want %v", name, n, rows, inPlace, r, j, got, want)
							}
						}
					}
				}
				nan := append([]float32(nil), in...)
				nan[n-1] = float32(math.NaN())
				out := make([]float32, len(nan))
				f(out, nan, n)
				for j := range n {
					if v := out[j]; v == v {
						t.Fatalf("%s n=%d: a NaN in the row gives %v at %d, want NaN", name, n, v, j)
					}
				}
			}
		}
	}
}
