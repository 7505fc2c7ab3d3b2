package onnxrt

import (
	"errors"
	"fmt"
	"slices"

	onnxpb "github.com/infergate/infergate/proto/onnx"

	"github.com/infergate/infergate/inference/tensor"
)

// normAxis turns a possibly negative axis into an index for rank r.
func normAxis(axis int64, r int) (int, error) {
	a := int(axis)
	if a < 0 {
		a += r
	}
	if a < 0 || a >= r {
		return 0, fmt.Errorf("axis %d is out of range for rank %d", axis, r)
	}
	return a, nil
}

// viewKernel gives its output the input's data under another shape, which
// shape sets on the output.
type viewKernel struct {
	shape func(st *state, out int, in *value) error
}

func (k *viewKernel) run(st *state, nd *node) error {
	in := st.in(nd, 0)
	if err := k.shape(st, nd.out[0], in); err != nil {
		return err
	}
	return st.alias(nd.out[0], in)
}

// dropoutKernel is Dropout that passes its input through: in inference mode,
// or in training mode with ratio 0 (then the scale 1/(1-ratio) is 1 and the
// mask keeps everything). Training mode with a nonzero ratio draws a random
// mask, which the runtime does not claim: when training_mode or ratio is fed
// at run time (trainIn, ratioIn ≥ 0), that combination is refused per call.
type dropoutKernel struct {
	trainIn, ratioIn int  // input indices, -1 if constant or absent
	mask             bool // the mask output is wanted
}

func (k dropoutKernel) run(st *state, nd *node) error {
	if k.trainIn >= 0 {
		tm := st.in(nd, k.trainIn).i
		if len(tm) != 1 {
			return fmt.Errorf("training_mode has %d values, want 1", len(tm))
		}
		ratio := float32(0.5)
		if k.ratioIn >= 0 {
			r := st.in(nd, k.ratioIn).f
			if len(r) != 1 {
				return fmt.Errorf("ratio has %d values, want 1", len(r))
			}
			ratio = r[0]
		}
		if tm[0] != 0 && ratio != 0 {
			return fmt.Errorf("training_mode is true with ratio %g: a random dropout mask is not supported (training_mode false, or ratio 0, only)", ratio)
		}
	}
	in := st.in(nd, 0)
	st.setShape(nd.out[0], in.shape)
	if err := st.alias(nd.out[0], in); err != nil {
		return err
	}
	if !k.mask {
		return nil
	}
	st.setShape(nd.out[1], in.shape)
	m, err := st.allocI(nd.out[1])
	if err != nil {
		return err
	}
	for i := range m {
		m[i] = 1
	}
	return nil
}

// compileDropout compiles Dropout as a pass-through (dropoutKernel). Its
// optional mask output is bool, computed as int64.
func compileDropout(x *nodeCtx) (kernel, []tensor.DType, error) {
	if err := x.inputs(1, 3); err != nil {
		return nil, nil, err
	}
	if len(x.n.out) > 2 {
		return nil, nil, fmt.Errorf("has %d outputs, want 1 or 2", len(x.n.out))
	}
	k := dropoutKernel{trainIn: -1, ratioIn: -1, mask: len(x.n.out) == 2 && x.n.out[1] >= 0}
	if x.has(2) {
		if err := x.types(int64Only, 2); err != nil {
			return nil, nil, err
		}
		if x.has(1) {
			if err := x.types(floatOnly, 1); err != nil {
				return nil, nil, err
			}
		}
		train := true // unless a constant says false
		if tm := x.konst(2); tm != nil {
			if len(tm.i) != 1 {
				return nil, nil, fmt.Errorf("training_mode has %d values, want 1", len(tm.i))
			}
			train = tm.i[0] != 0
		}
		if train {
			ratio, ratioKnown := float32(0.5), true
			if x.has(1) {
				r := x.konst(1)
				ratioKnown = r != nil
				if r != nil {
					if len(r.f) != 1 {
						return nil, nil, fmt.Errorf("ratio has %d values, want 1", len(r.f))
					}
					ratio = r.f[0]
				}
			}
			switch {
			case x.konst(2) != nil && ratioKnown && ratio != 0:
				return nil, nil, fmt.Errorf("training_mode true with ratio %g draws a random mask, which is not supported (inference only, or ratio 0)", ratio)
			case x.konst(2) == nil || !ratioKnown:
				k.trainIn = 2
				if x.has(1) {
					k.ratioIn = 1
				}
			}
		}
	}
	if !k.mask && k.trainIn < 0 {
		return &viewKernel{shape: sameShape}, []tensor.DType{x.dtype(0)}, nil
	}
	return k, []tensor.DType{x.dtype(0), tensor.Int64}, nil
}

func sameShape(st *state, out int, in *value) error {
	st.setShape(out, in.shape)
	return nil
}

func compileIdentity(x *nodeCtx) (kernel, []tensor.DType, error) {
	if err := x.inputs(1, -1); err != nil {
		return nil, nil, err
	}
	if x.n.op == "Dropout" {
		return compileDropout(x)
	}
	if len(x.n.in) != 1 {
		return nil, nil, fmt.Errorf("has %d inputs, want 1", len(x.n.in))
	}
	return &viewKernel{shape: sameShape}, []tensor.DType{x.dtype(0)}, nil
}

func compileFlatten(x *nodeCtx) (kernel, []tensor.DType, error) {
	if err := x.inputs(1, 1); err != nil {
		return nil, nil, err
	}
	axis, err := x.intAttr("axis", 1)
	if err != nil {
		return nil, nil, err
	}
	return &viewKernel{shape: func(st *state, out int, in *value) error {
		r := len(in.shape)
		a := int(axis)
		if a < 0 {
			a += r
		}
		if a < 0 || a > r {
			return fmt.Errorf("axis %d is out of range for rank %d", axis, r)
		}
		outer := 1
		for _, d := range in.shape[:a] {
			outer *= d
		}
		inner := 1
		for _, d := range in.shape[a:] {
			inner *= d
		}
		sh := st.outShape(out, 2)
		sh[0], sh[1] = outer, inner
		return nil
	}}, []tensor.DType{x.dtype(0)}, nil
}

func compileReshape(x *nodeCtx) (kernel, []tensor.DType, error) {
	if x.c.opset < 5 {
		return nil, nil, errors.New("Reshape before opset 5 is not supported")
	}
	if err := x.inputs(2, 2); err != nil {
		return nil, nil, err
	}
	if err := x.types(int64Only, 1); err != nil {
		return nil, nil, err
	}
	allowZero, err := x.intAttr("allowzero", 0)
	if err != nil {
		return nil, nil, err
	}
	return &reshapeKernel{allowZero: allowZero != 0}, []tensor.DType{x.dtype(0)}, nil
}

type reshapeKernel struct{ allowZero bool }

func (k *reshapeKernel) run(st *state, nd *node) error {
	in, spec := st.in(nd, 0), st.in(nd, 1)
	if len(spec.shape) != 1 {
		return fmt.Errorf("shape input must be 1-D, has shape %v", spec.shape)
	}
	sh := st.outShape(nd.out[0], len(spec.i))
	infer, known := -1, 1
	for i, d := range spec.i {
		switch {
		case d == 0 && !k.allowZero:
			if i >= len(in.shape) {
				return fmt.Errorf("shape %v copies dimension %d of input shape %v, which has none", spec.i, i, in.shape)
			}
			sh[i] = in.shape[i]
		case d == -1:
			if infer >= 0 {
				return fmt.Errorf("shape %v has more than one -1", spec.i)
			}
			infer = i
			continue
		case d < 0:
			return fmt.Errorf("shape %v has a negative dimension", spec.i)
		default:
			if d > tensor.MaxElements {
				return fmt.Errorf("shape %v is too large", spec.i)
			}
			sh[i] = int(d)
		}
		known *= sh[i]
		if known > tensor.MaxElements {
			return fmt.Errorf("shape %v is too large", spec.i)
		}
	}
	if infer >= 0 {
		if known == 0 || in.numel()%known != 0 {
			return fmt.Errorf("cannot reshape %v into %v", in.shape, spec.i)
		}
		sh[infer] = in.numel() / known
	}
	if err := st.alias(nd.out[0], in); err != nil {
		return fmt.Errorf("cannot reshape %v into %v", in.shape, spec.i)
	}
	return nil
}

// axesOf reads Squeeze/Unsqueeze axes: an attribute before opset 13, an
// optional int64 input from 13 on.
func axesOf(x *nodeCtx) (attr []int64, fromInput bool, err error) {
	if x.c.opset >= 13 {
		if err := x.inputs(1, 2); err != nil {
			return nil, false, err
		}
		if err := x.types(int64Only, 1); err != nil {
			return nil, false, err
		}
		return nil, x.has(1), nil
	}
	if err := x.inputs(1, 1); err != nil {
		return nil, false, err
	}
	axes, _, err := x.intsAttr("axes")
	return axes, false, err
}

type squeezeKernel struct {
	unsqueeze bool
	axes      []int64 // from the attribute (opset < 13)
	fromInput bool
}

func compileSqueeze(unsqueeze bool) opCompiler {
	return func(x *nodeCtx) (kernel, []tensor.DType, error) {
		axes, fromInput, err := axesOf(x)
		if err != nil {
			return nil, nil, err
		}
		if unsqueeze && !fromInput && axes == nil {
			return nil, nil, errors.New("axes are required")
		}
		return &squeezeKernel{unsqueeze: unsqueeze, axes: axes, fromInput: fromInput}, []tensor.DType{x.dtype(0)}, nil
	}
}

func (k *squeezeKernel) run(st *state, nd *node) error {
	in := st.in(nd, 0)
	axes := k.axes
	if k.fromInput {
		axes = st.in(nd, 1).i
	}
	r := len(in.shape)
	if k.unsqueeze {
		r += len(axes)
	}
	// marked[i] is set for each listed axis of the (output, for Unsqueeze;
	// input, for Squeeze) shape.
	var small [16]bool
	var marked []bool
	if r <= len(small) {
		marked = small[:r]
	} else {
		marked = make([]bool, r)
	}
	for _, ax := range axes {
		a, err := normAxis(ax, r)
		if err != nil {
			return err
		}
		if marked[a] {
			return fmt.Errorf("axis %d is listed twice", ax)
		}
		marked[a] = true
	}
	out := nd.out[0]
	if k.unsqueeze {
		sh := st.outShape(out, r)
		j := 0
		for i := range sh {
			if marked[i] {
				sh[i] = 1
				continue
			}
			sh[i] = in.shape[j]
			j++
		}
		return st.alias(out, in)
	}
	n := 0
	for i, d := range in.shape {
		if len(axes) == 0 && d == 1 {
			marked[i] = true
		}
		if marked[i] {
			if d != 1 {
				return fmt.Errorf("cannot squeeze axis %d of shape %v: its size is not 1", i, in.shape)
			}
			continue
		}
		n++
	}
	sh := st.outShape(out, n)
	j := 0
	for i, d := range in.shape {
		if !marked[i] {
			sh[j] = d
			j++
		}
	}
	return st.alias(out, in)
}

type concatKernel struct{ axis int64 }

func compileConcat(x *nodeCtx) (kernel, []tensor.DType, error) {
	if err := x.inputs(1, -1); err != nil {
		return nil, nil, err
	}
	for i := range x.n.in {
		if !x.has(i) {
			return nil, nil, fmt.Errorf("input %d is missing", i)
		}
		if x.dtype(i) != x.dtype(0) {
			return nil, nil, fmt.Errorf("inputs have different types %s and %s", x.dtype(0), x.dtype(i))
		}
	}
	if err := x.types(floatOrInt, 0); err != nil {
		return nil, nil, err
	}
	a, err := x.attr("axis", onnxpb.AttributeProto_INT)
	if err != nil {
		return nil, nil, err
	}
	if a == nil {
		return nil, nil, errors.New("attribute axis is required")
	}
	return &concatKernel{axis: a.GetI()}, []tensor.DType{x.dtype(0)}, nil
}

func (k *concatKernel) run(st *state, nd *node) error {
	first := st.in(nd, 0)
	r := len(first.shape)
	axis, err := normAxis(k.axis, r)
	if err != nil {
		return err
	}
	out := nd.out[0]
	sh := st.outShape(out, r)
	copy(sh, first.shape)
	sh[axis] = 0
	for i := range nd.in {
		v := st.in(nd, i)
		if len(v.shape) != r {
			return fmt.Errorf("inputs have ranks %d and %d", r, len(v.shape))
		}
		for d := range r {
			if d != axis && v.shape[d] != first.shape[d] {
				return fmt.Errorf("input shapes %v and %v differ outside axis %d", first.shape, v.shape, axis)
			}
		}
		sh[axis] += v.shape[axis]
	}
	outer := 1
	for _, d := range sh[:axis] {
		outer *= d
	}
	inner := 1
	for _, d := range sh[axis+1:] {
		inner *= d
	}
	of, oi, err := st.alloc(out, first.dt)
	if err != nil {
		return err
	}
	off := 0
	for o := range outer {
		for i := range nd.in {
			v := st.in(nd, i)
			chunk := v.shape[axis] * inner
			if first.dt == tensor.Int64 {
				copy(oi[off:off+chunk], v.i[o*chunk:(o+1)*chunk])
			} else {
				copy(of[off:off+chunk], v.f[o*chunk:(o+1)*chunk])
			}
			off += chunk
		}
	}
	return nil
}

type shapeKernel struct{ start, end int64 }

func compileShape(x *nodeCtx) (kernel, []tensor.DType, error) {
	if err := x.inputs(1, 1); err != nil {
		return nil, nil, err
	}
	start, err := x.intAttr("start", 0)
	if err != nil {
		return nil, nil, err
	}
	end, err := x.intAttr("end", 1<<62)
	if err != nil {
		return nil, nil, err
	}
	return &shapeKernel{start: start, end: end}, []tensor.DType{tensor.Int64}, nil
}

func (k *shapeKernel) run(st *state, nd *node) error {
	in := st.in(nd, 0)
	r := int64(len(in.shape))
	clamp := func(v int64) int64 {
		if v < 0 {
			v += r
		}
		return min(max(v, 0), r)
	}
	s, e := clamp(k.start), clamp(k.end)
	e = max(e, s)
	out := nd.out[0]
	st.outShape(out, 1)[0] = int(e - s)
	o, err := st.allocI(out)
	if err != nil {
		return err
	}
	for i := range o {
		o[i] = int64(in.shape[int(s)+i])
	}
	return nil
}

type gatherKernel struct{ axis int64 }

func compileGather(x *nodeCtx) (kernel, []tensor.DType, error) {
	if err := x.inputs(2, 2); err != nil {
		return nil, nil, err
	}
	if err := x.types(floatOrInt, 0); err != nil {
		return nil, nil, err
	}
	if err := x.types(int64Only, 1); err != nil {
		return nil, nil, err
	}
	axis, err := x.intAttr("axis", 0)
	if err != nil {
		return nil, nil, err
	}
	return &gatherKernel{axis: axis}, []tensor.DType{x.dtype(0)}, nil
}

func (k *gatherKernel) run(st *state, nd *node) error {
	data, idx := st.in(nd, 0), st.in(nd, 1)
	r := len(data.shape)
	axis, err := normAxis(k.axis, r)
	if err != nil {
		return err
	}
	out := nd.out[0]
	sh := st.outShape(out, r-1+len(idx.shape))
	copy(sh, data.shape[:axis])
	copy(sh[axis:], idx.shape)
	copy(sh[axis+len(idx.shape):], data.shape[axis+1:])
	of, oi, err := st.alloc(out, data.dt)
	if err != nil {
		return err
	}
	outer := 1
	for _, d := range data.shape[:axis] {
		outer *= d
	}
	inner := 1
	for _, d := range data.shape[axis+1:] {
		inner *= d
	}
	n := data.shape[axis]
	off := 0
	for o := range outer {
		for _, j := range idx.i {
			if j < 0 {
				j += int64(n)
			}
			if j < 0 || j >= int64(n) {
				return fmt.Errorf("index %d is out of range for axis %d of shape %v", j, axis, data.shape)
			}
			src := (o*n + int(j)) * inner
			if data.dt == tensor.Int64 {
				copy(oi[off:off+inner], data.i[src:src+inner])
			} else {
				copy(of[off:off+inner], data.f[src:src+inner])
			}
			off += inner
		}
	}
	return nil
}

type transposeKernel struct{ perm []int64 }

func compileTranspose(x *nodeCtx) (kernel, []tensor.DType, error) {
	if err := x.inputs(1, 1); err != nil {
		return nil, nil, err
	}
	if err := x.types(floatOrInt, 0); err != nil {
		return nil, nil, err
	}
	perm, _, err := x.intsAttr("perm")
	if err != nil {
		return nil, nil, err
	}
	return &transposeKernel{perm: perm}, []tensor.DType{x.dtype(0)}, nil
}

func (k *transposeKernel) run(st *state, nd *node) error {
	in := st.in(nd, 0)
	r := len(in.shape)
	perm := make([]int, r)
	if k.perm == nil {
		for i := range perm {
			perm[i] = r - 1 - i
		}
	} else {
		if len(k.perm) != r {
			return fmt.Errorf("perm %v does not fit rank %d", k.perm, r)
		}
		seen := make([]bool, r)
		for i, p := range k.perm {
			if p < 0 || int(p) >= r || seen[p] {
				return fmt.Errorf("perm %v is not a permutation of %d axes", k.perm, r)
			}
			seen[p] = true
			perm[i] = int(p)
		}
	}
	out := nd.out[0]
	sh := st.outShape(out, r)
	for i, p := range perm {
		sh[i] = in.shape[p]
	}
	of, oi, err := st.alloc(out, in.dt)
	if err != nil {
		return err
	}
	if in.numel() == 0 {
		return nil
	}
	// Input strides, permuted: walking the output in order steps the input
	// by stride[perm[d]] along output dim d.
	inStride := make([]int, r)
	s := 1
	for d := r - 1; d >= 0; d-- {
		inStride[d] = s
		s *= in.shape[d]
	}
	step := make([]int, r)
	for i, p := range perm {
		step[i] = inStride[p]
	}
	cnt := make([]int, r)
	src := 0
	for i := range in.numel() {
		if in.dt == tensor.Int64 {
			oi[i] = in.i[src]
		} else {
			of[i] = in.f[src]
		}
		for d := r - 1; d >= 0; d-- {
			cnt[d]++
			src += step[d]
			if cnt[d] < sh[d] {
				break
			}
			src -= step[d] * sh[d]
			cnt[d] = 0
		}
	}
	return nil
}

type castKernel struct {
	to, narrow tensor.DType
	round      func([]float32) // to float16/bfloat16
}

func compileCast(x *nodeCtx) (kernel, []tensor.DType, error) {
	if err := x.inputs(1, 1); err != nil {
		return nil, nil, err
	}
	if err := x.types(floatOrInt, 0); err != nil {
		return nil, nil, err
	}
	to, err := x.intAttr("to", 0)
	if err != nil {
		return nil, nil, err
	}
	target, ok := dtypeOf(int32(to))
	dt, ok2 := computeType(target)
	if !ok || !ok2 {
		return nil, nil, fmt.Errorf("cast to %s is not supported (float32, float64, integers and bool only)", onnxpb.TensorProto_DataType(to))
	}
	// float64 computes as float32; narrower integers and bool compute as
	// int64 holding the value the narrow type would.
	return &castKernel{to: dt, narrow: target, round: halfRounder(int32(to))}, []tensor.DType{dt}, nil
}

// narrowInt converts v to the integer type dt the way a Go (and C) conversion
// does, returned as int64; bool is v != 0.
func narrowInt(dt tensor.DType, v int64) int64 {
	switch dt {
	case tensor.Int32:
		return int64(int32(v))
	case tensor.Int16:
		return int64(int16(v))
	case tensor.Int8:
		return int64(int8(v))
	case tensor.Uint8:
		return int64(uint8(v))
	case tensor.Bool:
		if v != 0 {
			return 1
		}
		return 0
	}
	return v
}

func (k *castKernel) run(st *state, nd *node) error {
	in := st.in(nd, 0)
	out := nd.out[0]
	st.setShape(out, in.shape)
	if k.round != nil {
		o, err := st.allocF(out)
		if err != nil {
			return err
		}
		if in.dt == tensor.Int64 {
			for i, v := range in.i {
				o[i] = float32(v)
			}
		} else {
			copy(o, in.f)
		}
		k.round(o)
		return nil
	}
	if in.dt == k.to && (k.to == tensor.Float || k.narrow == tensor.Int64) {
		return st.alias(out, in)
	}
	if k.to == tensor.Int64 {
		o, err := st.allocI(out)
		if err != nil {
			return err
		}
		if in.dt == tensor.Int64 {
			for i, v := range in.i {
				o[i] = narrowInt(k.narrow, v)
			}
			return nil
		}
		for i, v := range in.f {
			if k.narrow == tensor.Bool {
				o[i] = 0
				if v != 0 {
					o[i] = 1
				}
				continue
			}
			o[i] = narrowInt(k.narrow, int64(v))
		}
		return nil
	}
	o, err := st.allocF(out)
	if err != nil {
		return err
	}
	for i, v := range in.i {
		o[i] = float32(v)
	}
	return nil
}

// constKernel produces a value fixed at load time. It only ever runs during
// constant folding, which turns its output into a model constant.
type constKernel struct{ v *value }

func (k *constKernel) run(st *state, nd *node) error {
	out := nd.out[0]
	st.setShape(out, k.v.shape)
	return st.alias(out, k.v)
}

func compileConstant(x *nodeCtx) (kernel, []tensor.DType, error) {
	if err := x.inputs(0, 0); err != nil {
		return nil, nil, err
	}
	if len(x.attrs) != 1 {
		return nil, nil, fmt.Errorf("has %d attributes, want exactly one value", len(x.attrs))
	}
	var v *value
	for name, a := range x.attrs {
		switch name {
		case "value":
			if a.GetT() == nil {
				return nil, nil, errors.New("attribute value holds no tensor")
			}
			var err error
			if v, err = decodeTensor(a.GetT()); err != nil {
				return nil, nil, err
			}
		case "value_float":
			v = &value{dt: tensor.Float, shape: []int{}, f: []float32{a.GetF()}}
		case "value_floats":
			v = &value{dt: tensor.Float, shape: []int{len(a.GetFloats())}, f: slices.Clone(a.GetFloats())}
		case "value_int":
			v = &value{dt: tensor.Int64, shape: []int{}, i: []int64{a.GetI()}}
		case "value_ints":
			v = &value{dt: tensor.Int64, shape: []int{len(a.GetInts())}, i: slices.Clone(a.GetInts())}
		default:
			return nil, nil, fmt.Errorf("attribute %s is not supported", name)
		}
	}
	if v.f == nil && v.dt == tensor.Float {
		v.f = []float32{}
	}
	if v.i == nil && v.dt == tensor.Int64 {
		v.i = []int64{}
	}
	return &constKernel{v: v}, []tensor.DType{v.dt}, nil
}

type constantOfShapeKernel struct{ v *value }

func compileConstantOfShape(x *nodeCtx) (kernel, []tensor.DType, error) {
	if err := x.inputs(1, 1); err != nil {
		return nil, nil, err
	}
	if err := x.types(int64Only, 0); err != nil {
		return nil, nil, err
	}
	v := &value{dt: tensor.Float, shape: []int{1}, f: []float32{0}}
	if a, err := x.attr("value", onnxpb.AttributeProto_TENSOR); err != nil {
		return nil, nil, err
	} else if a != nil {
		if v, err = decodeTensor(a.GetT()); err != nil {
			return nil, nil, err
		}
		if v.numel() != 1 {
			return nil, nil, fmt.Errorf("value must hold one element, has %d", v.numel())
		}
	}
	return &constantOfShapeKernel{v: v}, []tensor.DType{v.dt}, nil
}

func (k *constantOfShapeKernel) run(st *state, nd *node) error {
	spec := st.in(nd, 0)
	out := nd.out[0]
	sh := st.outShape(out, len(spec.i))
	for i, d := range spec.i {
		if d < 0 || d > tensor.MaxElements {
			return fmt.Errorf("shape %v is not valid", spec.i)
		}
		sh[i] = int(d)
	}
	of, oi, err := st.alloc(out, k.v.dt)
	if err != nil {
		return err
	}
	if k.v.dt == tensor.Int64 {
		for i := range oi {
			oi[i] = k.v.i[0]
		}
		return nil
	}
	for i := range of {
		of[i] = k.v.f[0]
	}
	return nil
}
