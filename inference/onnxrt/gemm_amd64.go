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

//go:noescape
func expAVX512(x, y *float32, n int)

// expAsm computes whole blocks of 16 in assembly and the rest in Go.
func expAsm(out, in []float32) {
	in = in[:len(out)]
	blocks := len(out) / 16
	if blocks > 0 {
		expAVX512(&in[0], &out[0], blocks)
	}
	expGo(out[blocks*16:], in[blocks*16:])
}

//go:noescape
func softmaxAVX512(x, y *float32, rows, n int)

// softmaxRowsAsm is softmaxRowsGo in AVX-512.
func softmaxRowsAsm(out, in []float32, n int) {
	if n == 0 || len(out) == 0 {
		return
	}
	rows := len(out) / n
	_ = in[rows*n-1]
	_ = out[rows*n-1]
	softmaxAVX512(&in[0], &out[0], rows, n)
}

//go:noescape
func erfAVX512(x, y *float32, n int)

// erfAsm computes whole blocks of 16 in assembly and the rest in Go.
func erfAsm(out, in []float32) {
	in = in[:len(out)]
	blocks := len(out) / 16
	if blocks > 0 {
		erfAVX512(&in[0], &out[0], blocks)
	}
	erfGo(out[blocks*16:], in[blocks*16:])
}

// useErfAsm: erfBlock runs erfAsm.
var useErfAsm bool

// erfBlock is erfSlice called directly rather than through the variable,
// so a caller's stack buffer does not escape to the heap.
func erfBlock(out, in []float32) {
	if useErfAsm {
		erfAsm(out, in)
		return
	}
	erfGo(out, in)
}

//go:noescape
func maxPool2x2AVX512(r0, r1, o *float32, n int)

// maxPool2x2Asm pools whole blocks of 16 outputs in assembly and the rest
// in Go.
func maxPool2x2Asm(r0, r1, o []float32) {
	blocks := len(o) / 16
	if blocks > 0 {
		_ = r0[blocks*32-1]
		_ = r1[blocks*32-1]
		maxPool2x2AVX512(&r0[0], &r1[0], &o[0], blocks)
	}
	maxPool2x2Go(r0[blocks*32:], r1[blocks*32:], o[blocks*16:])
}

//go:noescape
func kernelIndirectAVX512(k int, a, x *float32, offs *int32, c *float32, ldc int, bias *float32, relu int)

// indirectAVX512Checked bounds-checks what kernelIndirectAVX512 reads and
// writes; offs must be ascending (its last entry the largest), as the
// direct convolution builds it.
func indirectAVX512Checked(k int, a, x []float32, base int, offs []int32, c []float32, ldc int, bias []float32, relu bool, panel []float32) {
	if k == 0 {
		indirectGather(k, a, x, base, offs, c, ldc, bias, relu, panel)
		return
	}
	_ = a[k*8-1]
	_ = x[base+int(offs[k-1])+gemmNR-1]
	_ = x[base+int(offs[0])]
	_ = c[7*ldc+gemmNR-1]
	var bp *float32
	if bias != nil {
		_ = bias[7]
		bp = &bias[0]
	}
	r := 0
	if relu {
		r = 1
	}
	kernelIndirectAVX512(k, &a[0], &x[base], &offs[0], &c[0], ldc, bp, r)
}

//go:noescape
func kernelRowsAVX512(k int, a *float32, lda int, b, c *float32, ldc int, bias *float32)

// kernelRowsAVX512Checked bounds-checks what kernelRowsAVX512 reads and writes.
func kernelRowsAVX512Checked(k int, a []float32, lda int, b, c []float32, ldc int, bias []float32) {
	if k == 0 {
		for i := range 8 {
			row := c[i*ldc : i*ldc+gemmNR]
			if bias != nil {
				copy(row, bias[:gemmNR])
			} else {
				clear(row)
			}
		}
		return
	}
	_ = a[7*lda+k-1]
	_ = b[k*gemmNR-1]
	_ = c[7*ldc+gemmNR-1]
	var bp *float32
	if bias != nil {
		_ = bias[gemmNR-1]
		bp = &bias[0]
	}
	kernelRowsAVX512(k, &a[0], lda, &b[0], &c[0], ldc, bp)
}

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
	name     string
	mr       int
	ok       bool
	fn       microKernel
	indirect indirectKernel // nil: gather B and run fn
	rows     rowsKernel     // nil: pack A and run fn
}{
	// On AMD Zen 5 (this project's machine) 512-bit FMAs run at full width:
	// twice the peak of AVX2. INFERGATE_GEMM_KERNEL=avx2 or go forces another.
	{"avx512", 8, cpu.X86.HasAVX512F, kernelAVX512Checked, indirectAVX512Checked, kernelRowsAVX512Checked},
	{"avx2+fma", 6, cpu.X86.HasAVX2 && cpu.X86.HasFMA, kernelAVX2Checked, nil, nil},
}

func init() {
	want := os.Getenv("INFERGATE_GEMM_KERNEL")
	if want == "go" {
		return
	}
	if cpu.X86.HasAVX512F {
		maxPool2x2, erfSlice, expSoftmax, softmaxRows = maxPool2x2Asm, erfAsm, expAsm, softmaxRowsAsm
		useErfAsm = true
	}
	for _, k := range amd64Kernels {
		if k.ok && (want == "" || strings.HasPrefix(k.name, want)) {
			gemmKernel, gemmMR, kernelName = k.fn, k.mr, k.name
			useDepthwise = false // conv_depthwise.go
			if k.indirect != nil {
				gemmIndirect = k.indirect
			}
			gemmRows = k.rows
			return
		}
	}
}
