package onnxrt

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

type namedKernel struct {
	mr       int
	fn       microKernel
	indirect indirectKernel // nil: indirectGather
	rows     rowsKernel     // nil: A packed a panel at a time
}

// kernels returns the micro-kernels this machine can run, by name, so tests
// check the portable one (at both row counts) as well as the assembly ones.
func kernels() map[string]namedKernel {
	ks := map[string]namedKernel{"go/mr=6": {6, kernelGo, nil, nil}, "go/mr=8": {8, kernelGo, nil, nil}}
	for name, k := range asmKernels() {
		ks[name] = k
	}
	return ks
}

// forceKernel switches the micro-kernel (and its row count) for the rest of
// the test; panels must be packed after the switch.
func forceKernel(t testing.TB, k namedKernel) {
	oldFn, oldMR, oldIndirect, oldRows := gemmKernel, gemmMR, gemmIndirect, gemmRows
	gemmKernel, gemmMR, gemmIndirect, gemmRows = k.fn, k.mr, k.indirect, k.rows
	if gemmIndirect == nil {
		gemmIndirect = indirectGather
	}
	t.Cleanup(func() { gemmKernel, gemmMR, gemmIndirect, gemmRows = oldFn, oldMR, oldIndirect, oldRows })
}

// TestPackedGEMMMatchesNaive checks the blocked GEMM with every
// micro-kernel on edge sizes, with A packed whole (scaled by alpha) and with
// A read in place (rows lda apart, lda > k; the kernel reading rows where
// the CPU has one, else a panel packed at a time), column bias and ReLU.
func TestPackedGEMMMatchesNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for name, k := range kernels() {
		for _, inPlace := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/in_place=%v", name, inPlace), func(t *testing.T) {
				forceKernel(t, k)
				for _, sz := range [][3]int{{1, 1, 1}, {6, 16, 1}, {6, 16, 7}, {7, 17, 3}, {13, 40, 27}, {64, 100, 288}, {5, 3, 0}, {12, 32, 2}, {17, 64, 9}, {8, 16, 1}} {
					m, n, kk := sz[0], sz[1], sz[2]
					lda := kk + 3
					a := randF(rng, m*lda)
					b := randF(rng, kk*n)
					bias := randF(rng, n)
					pb := make([]float32, packedBSize(kk, n))
					packB(pb, b, kk, n, n, 1, 1)
					c := make([]float32, m*n)
					for i := range c {
						c[i] = float32(math.NaN()) // every element must be written
					}
					g := gemmCall{m: m, n: n, k: kk, pb: pb, c: c, ldc: n, colBias: bias,
						act: activation{on: true, op: uRelu}}
					alpha := 0.5
					if inPlace {
						alpha = 1
						g.a, g.lda, g.pa = a, lda, make([]float32, gemmMR*kk)
					} else {
						g.pa = make([]float32, packedASize(m, kk))
						packA(g.pa, a, m, kk, lda, 1, 0.5)
					}
					g.cols(0, ceilDiv(n, gemmNR), 0)
					for i := range m {
						for j := range n {
							var s, sabs float64
							for x := range kk {
								p := alpha * float64(a[i*lda+x]) * float64(b[x*n+j])
								s += p
								sabs += math.Abs(p)
							}
							s = max(s+float64(bias[j]), 0)
							// float32 sums in any order: error grows with Σ|terms|
							if got := c[i*n+j]; math.Abs(float64(got)-s) > 1e-5+1e-5*math.Abs(s)+4e-6*sabs || got != got {
								t.Fatalf("%v: c[%d,%d] = %v, want %v", sz, i, j, got, s)
							}
						}
					}
				}
			})
		}
	}
}

func randF(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

// TestIndirectKernelMatchesNaive checks each kernel's indirect form (the
// direct convolution's) on B rows read through offsets, with and without
// bias and ReLU, against float64 sums.
func TestIndirectKernelMatchesNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for name, k := range kernels() {
		t.Run(name, func(t *testing.T) {
			forceKernel(t, k)
			for _, kk := range []int{1, 2, 3, 27, 144} {
				for _, mode := range []struct{ bias, relu bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
					a := randF(rng, gemmMR*kk)
					offs := make([]int32, kk)
					off := 0
					for i := range offs {
						off += rng.IntN(40)
						offs[i] = int32(off)
					}
					base := rng.IntN(10)
					x := randF(rng, base+off+gemmNR)
					var bias []float32
					if mode.bias {
						bias = randF(rng, gemmMR)
					}
					const ldc = 21
					c := make([]float32, (gemmMR-1)*ldc+gemmNR)
					for i := range c {
						c[i] = float32(math.NaN())
					}
					gemmIndirect(kk, a, x, base, offs, c, ldc, bias, mode.relu, make([]float32, kk*gemmNR))
					for i := range gemmMR {
						for j := range gemmNR {
							var s float64
							for p := range kk {
								s += float64(a[p*gemmMR+i]) * float64(x[base+int(offs[p])+j])
							}
							if bias != nil {
								s += float64(bias[i])
							}
							if mode.relu {
								s = max(s, 0)
							}
							if got := c[i*ldc+j]; math.Abs(float64(got)-s) > 1e-5+1e-5*math.Abs(s) || got != got {
								t.Fatalf("k=%d %+v: c[%d,%d] = %v, want %v", kk, mode, i, j, got, s)
							}
						}
					}
				}
			}
		})
	}
}
