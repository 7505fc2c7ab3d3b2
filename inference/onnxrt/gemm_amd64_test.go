//go:build !purego

package onnxrt

func asmKernels() map[string]namedKernel {
	ks := map[string]namedKernel{}
	for _, k := range amd64Kernels {
		if k.ok {
			ks[k.name] = namedKernel{k.mr, k.fn, k.indirect, k.rows}
		}
	}
	return ks
}
