//go:build !amd64 || purego

package runtime

func asmKernels() map[string]namedKernel { return nil }
