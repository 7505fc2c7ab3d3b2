package onnxrt

import (
	"fmt"
	"math"

	"github.com/infergate/infergate/inference/tensor"
)

// Integer forms of Pow and Clip: an integer base raised to a floating-point
// exponent (the result has the base's type, truncated as ONNX Runtime does),
// and Clip of integer tensors (integer inputs compute as int64, see
// computeType).

func init() {
	basePow, baseClip := ops["Pow"], ops["Clip"]
	ops["Pow"] = func(x *nodeCtx) (kernel, []tensor.DType, error) {
		if len(x.n.in) == 2 && x.dtype(0) == tensor.Int64 && x.dtype(1) == tensor.Float {
			return &powIntKernel{sa: x.newScratch(), so: x.newScratch()}, []tensor.DType{tensor.Int64}, nil
		}
		return basePow(x)
	}
	ops["Clip"] = func(x *nodeCtx) (kernel, []tensor.DType, error) {
		if x.dtype(0) == tensor.Int64 && x.c.opset >= 11 {
			return compileClipInt(x)
		}
		return baseClip(x)
	}
}

type powIntKernel struct{ sa, so int }

func (k *powIntKernel) run(st *state, nd *node) error {
	a, b := st.in(nd, 0), st.in(nd, 1)
	out := nd.out[0]
	if err := broadcastInto(st, out, a.shape, b.shape); err != nil {
		return err
	}
	os := st.vals[out].shape
	o, err := st.allocI(out)
	if err != nil {
		return err
	}
	af := st.scratchF(k.sa, len(a.i))
	for i, v := range a.i {
		af[i] = float32(v)
	}
	of := st.scratchF(k.so, len(o))
	broadcast(opPow, of, af, b.f, a.shape, b.shape, os)
	for i, v := range of {
		o[i] = int64(v)
	}
	return nil
}

// clipIntKernel is Clip (opset ≥ 11) of an integer tensor.
type clipIntKernel struct{}

func compileClipInt(x *nodeCtx) (kernel, []tensor.DType, error) {
	if err := x.inputs(1, 3); err != nil {
		return nil, nil, err
	}
	if err := x.types(int64Only, 0, 1, 2); err != nil {
		return nil, nil, err
	}
	return clipIntKernel{}, []tensor.DType{tensor.Int64}, nil
}

func (clipIntKernel) run(st *state, nd *node) error {
	in := st.in(nd, 0)
	lo, hi := int64(math.MinInt64), int64(math.MaxInt64)
	for j, dst := range []*int64{&lo, &hi} {
		if v := st.in(nd, j+1); v != nil {
			if len(v.i) != 1 {
				return fmt.Errorf("bound %d has shape %v, want a scalar", j+1, v.shape)
			}
			*dst = v.i[0]
		}
	}
	st.setShape(nd.out[0], in.shape)
	o, err := st.allocI(nd.out[0])
	if err != nil {
		return err
	}
	for i, v := range in.i {
		o[i] = min(max(v, lo), hi)
	}
	return nil
}
