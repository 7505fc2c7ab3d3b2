//go:build !purego

package onnxrt

import (
	"os"

	"golang.org/x/sys/cpu"
)

// tanhAVX2 writes add + mul·tanh(scale·src[i]) to dst[i] for i < n, n a
// multiple of 8, eight at a time, with tanh32's rational approximation; tab
// is tanhTab.
//
//go:noescape
func tanhAVX2(dst, src *float32, n int, tab *[tanhTabLen][8]float32, scale, mul, add float32)

func tanhVecAVX2(dst, src []float32, scale, mul, add float32) {
	n := len(dst) &^ 7
	if n > 0 {
		_ = src[n-1]
		tanhAVX2(&dst[0], &src[0], n, &tanhTab, scale, mul, add)
	}
	tanhVecGo(dst[n:], src[n:len(dst)], scale, mul, add)
}

func init() {
	// INFERGATE_GEMM_KERNEL=go turns every assembly kernel off, this one too
	// (gemm_amd64.go).
	if os.Getenv("INFERGATE_GEMM_KERNEL") == "go" {
		return
	}
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		tanhVec = tanhVecAVX2
	}
}
