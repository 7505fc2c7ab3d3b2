package onnxrt

import (
	"slices"
	"strings"
	"testing"
)

// TestTransformerFusions checks that the exported encoder layer runs fused —
// the Transposes around q·kᵀ and att·v folded into the products and the 1/√d
// scale into q·kᵀ, GELU's chain into the first feed-forward layer, opset 13's
// LayerNorm chains into one kernel each — so the speed docs/runtime.md
// reports is the fused path's (TestMatMulTransposeFusion,
// TestGeluChainFusion and TestLayerNormChainFusion check the numbers).
func TestTransformerFusions(t *testing.T) {
	for _, file := range []string{"testdata/transformer_opset13.onnx", "testdata/transformer_opset17.onnx"} {
		m, err := LoadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var ops []string
		for _, nd := range m.nodes {
			ops = append(ops, nd.op)
		}
		for _, want := range []string{"Transpose+Transpose+MatMul+Div", "Transpose+MatMul+Transpose", "MatMul+Add+Gelu"} {
			if !slices.Contains(ops, want) {
				t.Errorf("%s: no %s node; nodes: %v", file, want, ops)
			}
		}
		lns := 0
		for _, op := range ops {
			if strings.HasPrefix(op, "LayerNorm") {
				lns++
			}
		}
		if lns != 2 {
			t.Errorf("%s: %d LayerNorm nodes, want 2: %v", file, lns, ops)
		}
		if slices.Contains(ops, "Transpose") {
			t.Errorf("%s: a Transpose is left: %v", file, ops)
		}
	}
}
