package onnxrt

import (
	"errors"
	"fmt"
	"math"

	"github.com/infergate/infergate/inference/tensor"
)

type reduceOp uint8

const (
	rSum reduceOp = iota
	rMean
	rMax
	rMin
)

// reduceKernel is ReduceSum/Mean/Max/Min. Axes come from an attribute, or
// from an input in the newer opsets (13 for ReduceSum, 18 for the others).
type reduceKernel struct {
	op         reduceOp
	axes       []int64
	axesInput  bool
	keepDims   bool
	noopIfNone bool // noop_with_empty_axes: no axes means identity, not all
}

func compileReduce(op reduceOp) opCompiler {
	return func(x *nodeCtx) (kernel, []tensor.DType, error) {
		k := &reduceKernel{op: op}
		inputAxesFrom := int64(18)
		if op == rSum {
			inputAxesFrom = 13
		}
		if x.c.opset >= inputAxesFrom {
			if err := x.inputs(1, 2); err != nil {
				return nil, nil, err
			}
			if err := x.types(int64Only, 1); err != nil {
				return nil, nil, err
			}
			k.axesInput = x.has(1)
			noop, err := x.intAttr("noop_with_empty_axes", 0)
			if err != nil {
				return nil, nil, err
			}
			k.noopIfNone = noop != 0
		} else {
			if err := x.inputs(1, 1); err != nil {
				return nil, nil, err
			}
			var err error
			if k.axes, _, err = x.intsAttr("axes"); err != nil {
				return nil, nil, err
			}
		}
		keep, err := x.intAttr("keepdims", 1)
		if err != nil {
			return nil, nil, err
		}
		k.keepDims = keep != 0
		allowed := floatOrInt
		if op == rMean {
			allowed = floatOnly
		}
		if err := x.types(allowed, 0); err != nil {
			return nil, nil, err
		}
		return k, []tensor.DType{x.dtype(0)}, nil
	}
}

func (k *reduceKernel) run(st *state, nd *node) error {
	in := st.in(nd, 0)
	axes := k.axes
	if k.axesInput {
		axes = st.in(nd, 1).i
	}
	out := nd.out[0]
	r := len(in.shape)
	if len(axes) == 0 && k.noopIfNone {
		st.setShape(out, in.shape)
		return st.alias(out, in)
	}
	// Stack arrays for the usual ranks: a call allocates nothing.
	var reducedBuf [8]bool
	var strideBuf, shBuf [8]int
	reduced, stride, sh := reducedBuf[:0], strideBuf[:0], shBuf[:0]
	if r <= len(reducedBuf) {
		reduced, stride = reducedBuf[:r], strideBuf[:r]
	} else {
		reduced, stride = make([]bool, r), make([]int, r)
	}
	for _, ax := range axes {
		a, err := normAxis(ax, r)
		if err != nil {
			return err
		}
		reduced[a] = true
	}
	if len(axes) == 0 {
		for i := range reduced {
			reduced[i] = true
		}
	}
	// Output strides in input index space: 0 along reduced dims.
	acc := 1
	for d := r - 1; d >= 0; d-- {
		if !reduced[d] {
			stride[d] = acc
			acc *= in.shape[d]
		}
	}
	for d := range r {
		switch {
		case !reduced[d]:
			sh = append(sh, in.shape[d])
		case k.keepDims:
			sh = append(sh, 1)
		}
		if reduced[d] && in.shape[d] == 0 && (k.op == rMax || k.op == rMin) {
			return fmt.Errorf("cannot take the %s of an empty axis %d", []string{"", "", "max", "min"}[k.op], d)
		}
	}
	st.setShape(out, sh)
	of, oi, err := st.alloc(out, in.dt)
	if err != nil {
		return err
	}
	if in.dt == tensor.Int64 {
		reduceInto(k.op, oi, in.i, in.shape, stride)
		return nil
	}
	reduceInto(k.op, of, in.f, in.shape, stride)
	if k.op == rMean && len(of) > 0 {
		n := float32(len(in.f) / len(of))
		for i := range of {
			of[i] /= n
		}
	}
	return nil
}

func reduceInto[T number](op reduceOp, out, in []T, shape, stride []int) {
	if outer, red, inner, ok := reducedBlock(shape, stride); ok && len(out) > 0 {
		if inner == 1 {
			// Each output reduces one contiguous block (LayerNorm's
			// ReduceMean over the last axis).
			for o := range out {
				out[o] = reduceBlock(op, in[o*red:(o+1)*red])
			}
			return
		}
		// A middle block (the mean over tokens of [batch, tokens, width]):
		// whole rows of inner values combine at a time. Each output sees
		// the same values in the same order as the odometer below.
		for o := range outer {
			dst := out[o*inner : (o+1)*inner]
			if op == rSum || op == rMean {
				clear(dst)
			}
			for r := range red {
				src := in[(o*red+r)*inner : (o*red+r+1)*inner]
				switch {
				case op == rSum || op == rMean:
					for i, v := range src {
						dst[i] += v
					}
				case r == 0:
					copy(dst, src)
				case op == rMax:
					for i, v := range src {
						dst[i] = max(dst[i], v)
					}
				default:
					for i, v := range src {
						dst[i] = min(dst[i], v)
					}
				}
			}
		}
		return
	}
	seen := make([]bool, len(out))
	if op == rSum || op == rMean {
		clear(out)
	}
	r := len(shape)
	cnt := make([]int, r)
	o := 0
	for _, v := range in {
		switch {
		case op == rSum || op == rMean:
			out[o] += v
		case !seen[o]:
			out[o], seen[o] = v, true
		case op == rMax:
			out[o] = max(out[o], v)
		default:
			out[o] = min(out[o], v)
		}
		for d := r - 1; d >= 0; d-- {
			cnt[d]++
			o += stride[d]
			if cnt[d] < shape[d] {
				break
			}
			o -= stride[d] * shape[d]
			cnt[d] = 0
		}
	}
}

// reduceBlock reduces one contiguous block; an empty one is 0 (max and min
// of an empty axis are refused before).
func reduceBlock[T number](op reduceOp, b []T) T {
	if len(b) == 0 {
		return 0
	}
	acc := b[0]
	switch op {
	case rSum, rMean:
		acc = 0
		for _, v := range b {
			acc += v
		}
	case rMax:
		for _, v := range b[1:] {
			acc = max(acc, v)
		}
	default:
		for _, v := range b[1:] {
			acc = min(acc, v)
		}
	}
	return acc
}

// reducedBlock views the input as [outer, red, inner] when the reduced
// dimensions (output stride 0) are contiguous, ignoring dimensions of size
// 1: outer and inner are the kept dimensions before and after them.
func reducedBlock(shape, stride []int) (outer, red, inner int, ok bool) {
	outer, red, inner = 1, 1, 1
	seen, done := false, false // a reduced dimension seen; a kept one after it
	for d, n := range shape {
		if n == 1 {
			continue
		}
		switch {
		case stride[d] == 0 && done:
			return 0, 0, 0, false
		case stride[d] == 0:
			seen = true
			red *= n
		case seen:
			done = true
			inner *= n
		default:
			outer *= n
		}
	}
	return outer, red, inner, true
}

// sliceKernel is Slice: starts/ends/axes/steps as inputs (opset 10+) or
// attributes (before).
type sliceKernel struct {
	starts, ends, axes []int64 // attributes, before opset 10
	fromInputs         bool
}

func compileSlice(x *nodeCtx) (kernel, []tensor.DType, error) {
	k := &sliceKernel{}
	if x.c.opset >= 10 {
		if err := x.inputs(3, 5); err != nil {
			return nil, nil, err
		}
		if err := x.types(int64Only, 1, 2, 3, 4); err != nil {
			return nil, nil, err
		}
		k.fromInputs = true
	} else {
		if err := x.inputs(1, 1); err != nil {
			return nil, nil, err
		}
		var err error
		if k.starts, _, err = x.intsAttr("starts"); err != nil {
			return nil, nil, err
		}
		if k.ends, _, err = x.intsAttr("ends"); err != nil {
			return nil, nil, err
		}
		if k.axes, _, err = x.intsAttr("axes"); err != nil {
			return nil, nil, err
		}
	}
	if err := x.types(floatOrInt, 0); err != nil {
		return nil, nil, err
	}
	return k, []tensor.DType{x.dtype(0)}, nil
}

func (k *sliceKernel) run(st *state, nd *node) error {
	in := st.in(nd, 0)
	starts, ends, axes := k.starts, k.ends, k.axes
	var steps []int64
	if k.fromInputs {
		starts, ends = st.in(nd, 1).i, st.in(nd, 2).i
		if v := st.in(nd, 3); v != nil {
			axes = v.i
		}
		if v := st.in(nd, 4); v != nil {
			steps = v.i
		}
	}
	if len(starts) != len(ends) || (axes != nil && len(axes) != len(starts)) || (steps != nil && len(steps) != len(starts)) {
		return errors.New("starts, ends, axes and steps have different lengths")
	}
	r := len(in.shape)
	first := make([]int, r)
	step := make([]int, r)
	out := nd.out[0]
	sh := st.outShape(out, r)
	copy(sh, in.shape)
	for d := range step {
		step[d] = 1
	}
	done := make([]bool, r)
	for i := range starts {
		ax := int64(i)
		if axes != nil {
			ax = axes[i]
		}
		a, err := normAxis(ax, r)
		if err != nil {
			return err
		}
		if done[a] {
			return fmt.Errorf("axis %d is sliced twice", ax)
		}
		done[a] = true
		s := int64(1)
		if steps != nil {
			s = steps[i]
		}
		if s == 0 {
			return errors.New("step 0")
		}
		dim := int64(in.shape[a])
		b, e := starts[i], ends[i]
		if b < 0 {
			b += dim
		}
		if e < 0 {
			e += dim
		}
		var n int64
		if s > 0 {
			b, e = min(max(b, 0), dim), min(max(e, 0), dim)
			n = (e - b + s - 1) / s
		} else {
			b, e = min(max(b, 0), dim-1), min(max(e, -1), dim-1)
			n = (b - e - s - 1) / -s
		}
		n = max(n, 0)
		first[a], step[a], sh[a] = int(b), int(s), int(n)
	}
	of, oi, err := st.alloc(out, in.dt)
	if err != nil {
		return err
	}
	total := len(of) + len(oi)
	if total == 0 {
		return nil
	}
	inStride := make([]int, r)
	acc := 1
	for d := r - 1; d >= 0; d-- {
		inStride[d] = acc
		acc *= in.shape[d]
	}
	src := 0
	for d := range r {
		src += first[d] * inStride[d]
	}
	cnt := make([]int, r)
	for i := range total {
		if in.dt == tensor.Int64 {
			oi[i] = in.i[src]
		} else {
			of[i] = in.f[src]
		}
		for d := r - 1; d >= 0; d-- {
			cnt[d]++
			src += step[d] * inStride[d]
			if cnt[d] < sh[d] {
				break
			}
			src -= step[d] * inStride[d] * sh[d]
			cnt[d] = 0
		}
	}
	return nil
}

// layerNormKernel is LayerNormalization (opset 17): each row over the dims
// from axis on is normalised, then scaled and shifted.
type layerNormKernel struct {
	axis    int64
	eps     float32
	scaleIn int
	biasIn  int
}

func compileLayerNorm(x *nodeCtx) (kernel, []tensor.DType, error) {
	if err := x.inputs(2, 3); err != nil {
		return nil, nil, err
	}
	if err := x.types(floatOnly, 0, 1, 2); err != nil {
		return nil, nil, err
	}
	if len(x.n.out) > 3 {
		return nil, nil, fmt.Errorf("has %d outputs, want 1 to 3", len(x.n.out))
	}
	axis, err := x.intAttr("axis", -1)
	if err != nil {
		return nil, nil, err
	}
	eps, err := x.floatAttr("epsilon", 1e-5)
	if err != nil {
		return nil, nil, err
	}
	k := &layerNormKernel{axis: axis, eps: eps, scaleIn: 1, biasIn: -1}
	if x.has(2) {
		k.biasIn = 2
	}
	return k, []tensor.DType{tensor.Float, tensor.Float, tensor.Float}, nil
}

func (k *layerNormKernel) run(st *state, nd *node) error {
	in := st.in(nd, 0)
	var scale, bias []float32
	if k.scaleIn >= 0 {
		scale = st.in(nd, k.scaleIn).f
	}
	if k.biasIn >= 0 {
		bias = st.in(nd, k.biasIn).f
	}
	axis, err := normAxis(k.axis, len(in.shape))
	if err != nil {
		return err
	}
	n := 1
	for _, d := range in.shape[axis:] {
		n *= d
	}
	if (scale != nil && len(scale) != n && len(scale) != 1) || (bias != nil && len(bias) != n && len(bias) != 1) {
		return fmt.Errorf("scale/bias of %d and %d elements do not fit rows of %d", len(scale), len(bias), n)
	}
	out := nd.out[0]
	st.setShape(out, in.shape)
	o, err := st.allocF(out)
	if err != nil {
		return err
	}
	// The optional outputs Mean and InvStdDev have the input's shape with the
	// normalised dims set to 1.
	var stats [2][]float32
	for i := range stats {
		if i+1 >= len(nd.out) || nd.out[i+1] < 0 {
			continue
		}
		sh := st.outShape(nd.out[i+1], len(in.shape))
		for d := range sh {
			sh[d] = 1
			if d < axis {
				sh[d] = in.shape[d]
			}
		}
		if stats[i], err = st.allocF(nd.out[i+1]); err != nil {
			return err
		}
	}
	if n == 0 {
		for _, s := range stats {
			for j := range s {
				s[j] = float32(math.NaN()) // the mean of nothing
			}
		}
		return nil
	}
	// Scale and bias as full rows (a single value repeated), so the loop
	// below has no per-element choice.
	full := func(v []float32, def float32, buf []float32) []float32 {
		if len(v) == n {
			return v
		}
		if v != nil {
			def = v[0]
		}
		for j := range buf {
			buf[j] = def
		}
		return buf
	}
	var sb, bb []float32
	if len(scale) != n || len(bias) != n {
		sb, bb = make([]float32, n), make([]float32, n)
	}
	scale, bias = full(scale, 1, sb), full(bias, 0, bb)
	for off := 0; off < len(o); off += n {
		row := in.f[off : off+n]
		var mean, sq float64
		for _, v := range row {
			mean += float64(v)
		}
		mean /= float64(n)
		for _, v := range row {
			d := float64(v) - mean
			sq += d * d
		}
		inv := 1 / math.Sqrt(sq/float64(n)+float64(k.eps))
		if stats[0] != nil {
			stats[0][off/n] = float32(mean)
		}
		if stats[1] != nil {
			stats[1][off/n] = float32(inv)
		}
		orow := o[off : off+n]
		scale, bias := scale[:n], bias[:n]
		for j, v := range row {
			orow[j] = float32((float64(v)-mean)*inv)*scale[j] + bias[j]
		}
	}
	return nil
}
