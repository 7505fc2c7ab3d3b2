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
	old, oldIndirect, oldPool, oldRows, oldDW := gemmKernel, gemmIndirect, maxPool2x2, gemmRows, useDepthwise
	gemmKernel, gemmIndirect, maxPool2x2, gemmRows, useDepthwise = kernelGo, indirectGather, maxPool2x2Go, nil, true
	t.Cleanup(func() {
		gemmKernel, gemmIndirect, maxPool2x2, gemmRows, useDepthwise = old, oldIndirect, oldPool, oldRows, oldDW
	})
	return true
}

// NodeOps lists the model's nodes after fusion ("MatMul+Add+Gelu", …), for
// tests that check a fusion happened.
func NodeOps(m *Model) []string {
	var ops []string
	for _, nd := range m.nodes {
		ops = append(ops, nd.op)
	}
	return ops
}
