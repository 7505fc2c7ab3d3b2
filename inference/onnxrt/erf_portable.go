//go:build !amd64 || purego

package onnxrt

// erfBlock is erfSlice called directly (see gemm_amd64.go).
func erfBlock(out, in []float32) { erfGo(out, in) }
