package onnxrt

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkMicroKernel reports the micro-kernels' speed on cache-resident
// panels (k = 288, the third conv layer of the 2-D CNN): the ceiling the
// convolution can reach.
func BenchmarkMicroKernel(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	const k = 288
	for name, kern := range kernels() {
		b.Run(name, func(b *testing.B) {
			forceKernel(b, kern)
			a, bb := randF(rng, k*kern.mr), randF(rng, k*gemmNR)
			c := make([]float32, kern.mr*gemmNR)
			for b.Loop() {
				kern.fn(k, a, bb, c, gemmNR)
			}
			b.ReportMetric(float64(2*k*kern.mr*gemmNR)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
