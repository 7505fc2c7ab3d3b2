//go:build !purego

package runtime

import "golang.org/x/sys/cpu"

//go:noescape
func kernelAVX2(k int, a, b, c *float32, ldc int)

// kernelAVX2Checked bounds-checks the slices the assembly will read and write.
func kernelAVX2Checked(k int, a, b, c []float32, ldc int) {
	if k == 0 {
		for i := range gemmMR {
			clear(c[i*ldc : i*ldc+gemmNR])
		}
		return
	}
	_ = a[k*gemmMR-1]
	_ = b[k*gemmNR-1]
	_ = c[(gemmMR-1)*ldc+gemmNR-1]
	kernelAVX2(k, &a[0], &b[0], &c[0], ldc)
}

// AVX-512 is not used: on the AMD Zen 4 cores this was tuned on, 512-bit FMAs
// issue as two 256-bit halves, so the peak is the same as AVX2's.
func init() {
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		gemmKernel = kernelAVX2Checked
		kernelName = "avx2+fma"
	}
}
