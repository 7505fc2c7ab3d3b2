package onnxrt

import "testing"

// UsePortableKernel makes the GEMM use the portable Go micro-kernel for the
// rest of the test, so the exported-model tests cover it as well as the
// assembly one. It returns false when the portable kernel is already the
// one in use (no assembly for this CPU).
func UsePortableKernel(t testing.TB) bool {
	if kernelName == "go" {
		return false
	}
	old, oldIndirect := gemmKernel, gemmIndirect
	gemmKernel, gemmIndirect = kernelGo, indirectGather
	t.Cleanup(func() { gemmKernel, gemmIndirect = old, oldIndirect })
	return true
}
