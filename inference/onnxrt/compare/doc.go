// Package compare holds the benchmark of infergate's ONNX runtime against
// gomlx + onnx-gomlx; see compare_test.go (build tag "compare").
package compare
