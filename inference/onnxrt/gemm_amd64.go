//go:build !purego

package onnxrt

import (
	"os"
	"strings"

	"golang.org/x/sys/cpu"
)

//go:noescape
func kernelAVX2(k int, a, b, c *float32, ldc int)

//go:noescape
func kernelAVX512(k int, a, b, c *float32, ldc int)

// kernelAVX512Checked bounds-checks the slices the assembly will read and
// write (8 rows).
func kernelAVX512Checked(k int, a, b, c []float32, ldc int) {
	if k == 0 {
		for i := range 8 {
			clear(c[i*ldc : i*ldc+gemmNR])
		}
		return
	}
	_ = a[k*8-1]
	_ = b[k*gemmNR-1]
	_ = c[7*ldc+gemmNR-1]
	kernelAVX512(k, &a[0], &b[0], &c[0], ldc)
}

// kernelAVX2Checked bounds-checks the slices the assembly will read and write.
func kernelAVX2Checked(k int, a, b, c []float32, ldc int) {
	if k == 0 {
		for i := range 6 {
			clear(c[i*ldc : i*ldc+gemmNR])
		}
		return
	}
	_ = a[k*6-1]
	_ = b[k*gemmNR-1]
	_ = c[5*ldc+gemmNR-1]
	kernelAVX2(k, &a[0], &b[0], &c[0], ldc)
}

// amd64Kernels are the assembly kernels, best first, each with its row count.
var amd64Kernels = []struct {
	name string
	mr   int
	ok   bool
	fn   microKernel
}{
	// On AMD Zen 5 (this project's machine) 512-bit FMAs run at full width:
	// twice the peak of AVX2. INFERGATE_GEMM_KERNEL=avx2 or go forces another.
	{"avx512", 8, cpu.X86.HasAVX512F, kernelAVX512Checked},
	{"avx2+fma", 6, cpu.X86.HasAVX2 && cpu.X86.HasFMA, kernelAVX2Checked},
}

func init() {
	want := os.Getenv("INFERGATE_GEMM_KERNEL")
	if want == "go" {
		return
	}
	for _, k := range amd64Kernels {
		if k.ok && (want == "" || strings.HasPrefix(k.name, want)) {
			gemmKernel, gemmMR, kernelName = k.fn, k.mr, k.name
			return
		}
	}
}
