//go:build !amd64 || purego

package onnxrt

func asmKernels() map[string]namedKernel { return nil }
