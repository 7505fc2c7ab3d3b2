package onnxrt

import (
	"errors"
	"fmt"
	"math"

	"github.com/infergate/infergate/inference/tensor"
	onnxpb "github.com/infergate/infergate/proto/onnx"
)

// poolKernel is MaxPool or AveragePool over 1 to 3 spatial dimensions.
type poolKernel struct {
	w            windowAttrs
	max          bool
	includePad   bool // AveragePool count_include_pad
	indices      bool // MaxPool's second output is read
	storageOrder int64
}

func compilePool(isMax bool) opCompiler {
	return func(x *nodeCtx) (kernel, []tensor.DType, error) {
		if err := x.inputs(1, 1); err != nil {
			return nil, nil, err
		}
		allowed := floatOnly
		if isMax {
			allowed = floatOrInt
		}
		if err := x.types(allowed, 0); err != nil {
			return nil, nil, err
		}
		w, err := parseWindow(x, true)
		if err != nil {
			return nil, nil, err
		}
		k := &poolKernel{w: w, max: isMax}
		outs := []tensor.DType{x.dtype(0)}
		if isMax {
			if k.storageOrder, err = x.intAttr("storage_order", 0); err != nil {
				return nil, nil, err
			}
			outs = append(outs, tensor.Int64)
			k.indices = len(x.n.out) > 1 && x.n.out[1] >= 0
		} else {
			if w.dilations != nil && x.c.opset < 19 {
				return nil, nil, errors.New("attribute dilations needs opset 19 for AveragePool")
			}
			cip, err := x.intAttr("count_include_pad", 0)
			if err != nil {
				return nil, nil, err
			}
			k.includePad = cip != 0
		}
		return k, outs, nil
	}
}

func (k *poolKernel) run(st *state, nd *node) error {
	x := st.in(nd, 0)
	if len(x.shape) < 3 {
		return fmt.Errorf("input has shape %v; want [N, C, spatial…]", x.shape)
	}
	if len(x.shape)-2 != len(k.w.kernel) {
		return fmt.Errorf("input has shape %v but kernel_shape %v", x.shape, k.w.kernel)
	}
	g, err := k.w.resolve(x.shape[2:], intsOf(k.w.kernel))
	if err != nil {
		return err
	}
	n, c := x.shape[0], x.shape[1]
	out := nd.out[0]
	g.outShape(st, out, n, c)
	of, oi, err := st.alloc(out, x.dt)
	if err != nil {
		return err
	}
	var idx []int64
	if k.indices {
		g.outShape(st, nd.out[1], n, c)
		if idx, err = st.allocI(nd.out[1]); err != nil {
			return err
		}
	}
	if x.dt == tensor.Int64 {
		poolPlanes(k, &g, x.i, oi, idx, n*c, math.MinInt64)
	} else {
		poolPlanes(k, &g, x.f, of, idx, n*c, float32(math.Inf(-1)))
	}
	return nil
}

func poolPlanes[T number](k *poolKernel, g *geom, x, o []T, idx []int64, planes int, lowest T) {
	for plane := range planes {
		xp := x[plane*g.inSize : (plane+1)*g.inSize]
		op := o[plane*g.outSize : (plane+1)*g.outSize]
		var ip []int64
		if idx != nil {
			ip = idx[plane*g.outSize : (plane+1)*g.outSize]
		}
		poolPlane(k, g, xp, op, ip, plane*g.inSize, lowest)
	}
}

// poolPlane pools one [D,H,W] plane. base is the plane's offset in the
// input, for MaxPool's flat indices; lowest is what an empty window's max is.
func poolPlane[T number](k *poolKernel, g *geom, x, o []T, idx []int64, base int, lowest T) {
	if k.max && idx == nil && g.in[0] == 1 && g.k[0] == 1 && g.padB[1] == 0 && g.padB[2] == 0 &&
		g.dil[1] == 1 && g.dil[2] == 1 && (g.out[1]-1)*g.stride[1]+g.k[1] <= g.in[1] &&
		(g.out[2]-1)*g.stride[2]+g.k[2] <= g.in[2] {
		maxPool2DInside(g, x, o)
		return
	}
	i := 0
	for od := range g.out[0] {
		for oh := range g.out[1] {
			for ow := range g.out[2] {
				d0 := od*g.stride[0] - g.padB[0]
				h0 := oh*g.stride[1] - g.padB[1]
				w0 := ow*g.stride[2] - g.padB[2]
				best := lowest
				bestAt := -1
				var sum T
				count, padCount := 0, 0
				for kd := range g.k[0] {
					d := d0 + kd*g.dil[0]
					for kh := range g.k[1] {
						h := h0 + kh*g.dil[1]
						for kw := range g.k[2] {
							w := w0 + kw*g.dil[2]
							if d < 0 || d >= g.in[0] || h < 0 || h >= g.in[1] || w < 0 || w >= g.in[2] {
								// count_include_pad counts the explicit padding,
								// not what ceil_mode hangs past it.
								if d < g.in[0]+g.padE[0] && h < g.in[1]+g.padE[1] && w < g.in[2]+g.padE[2] {
									padCount++
								}
								continue
							}
							at := (d*g.in[1]+h)*g.in[2] + w
							v := x[at]
							if v > best || bestAt < 0 {
								best, bestAt = v, at
							}
							sum += v
							count++
						}
					}
				}
				switch {
				case k.max:
					o[i] = best
					if idx != nil {
						idx[i] = int64(k.flatIndex(g, base, bestAt))
					}
				case k.includePad:
					o[i] = sum / T(count+padCount)
				case count == 0:
					o[i] = 0
				default:
					o[i] = sum / T(count)
				}
				i++
			}
		}
	}
}

// flatIndex is MaxPool's Indices value for an element of the plane: the flat
// index into the whole input, row-major, or column-major over the spatial
// dims with storage_order 1 (2-D).
func (k *poolKernel) flatIndex(g *geom, base, at int) int {
	if at < 0 {
		return -1
	}
	if k.storageOrder == 0 || g.nsp != 2 {
		return base + at
	}
	h, w := at/g.in[2], at%g.in[2]
	return base + w*g.in[1] + h
}

// globalPoolKernel is GlobalAveragePool or GlobalMaxPool: one value per
// (image, channel), keeping the spatial dims as 1s.
type globalPoolKernel struct{ max bool }

func compileGlobalPool(isMax bool) opCompiler {
	return func(x *nodeCtx) (kernel, []tensor.DType, error) {
		if err := x.inputs(1, 1); err != nil {
			return nil, nil, err
		}
		if err := x.types(floatOnly, 0); err != nil {
			return nil, nil, err
		}
		return &globalPoolKernel{max: isMax}, []tensor.DType{tensor.Float}, nil
	}
}

func (k *globalPoolKernel) run(st *state, nd *node) error {
	x := st.in(nd, 0)
	if len(x.shape) < 2 {
		return fmt.Errorf("input has shape %v; want [N, C, spatial…]", x.shape)
	}
	out := nd.out[0]
	sh := st.outShape(out, len(x.shape))
	sh[0], sh[1] = x.shape[0], x.shape[1]
	inner := 1
	for i, d := range x.shape[2:] {
		sh[2+i] = 1
		inner *= d
	}
	o, err := st.allocF(out)
	if err != nil {
		return err
	}
	for p := range o {
		v := x.f[p*inner : (p+1)*inner]
		if k.max {
			m := float32(math.Inf(-1))
			for _, f := range v {
				m = max(m, f)
			}
			o[p] = m
			continue
		}
		var s float32
		for _, f := range v {
			s += f
		}
		o[p] = s / float32(inner)
	}
	return nil
}

// preluKernel is PRelu: x where x ≥ 0, slope·x elsewhere, with slope
// broadcast to x's shape (unidirectionally).
type preluKernel struct{ scratch int }

func compilePRelu(x *nodeCtx) (kernel, []tensor.DType, error) {
	if err := x.inputs(2, 2); err != nil {
		return nil, nil, err
	}
	if err := x.types(floatOnly, 0, 1); err != nil {
		return nil, nil, err
	}
	return &preluKernel{scratch: x.newScratch()}, []tensor.DType{tensor.Float}, nil
}

func (k *preluKernel) run(st *state, nd *node) error {
	x, s := st.in(nd, 0), st.in(nd, 1)
	if err := checkUnidirectional(s.shape, x.shape); err != nil {
		return fmt.Errorf("slope: %w", err)
	}
	out := nd.out[0]
	st.setShape(out, x.shape)
	o, err := st.allocF(out)
	if err != nil {
		return err
	}
	if len(s.f) == 1 {
		a := s.f[0]
		for i, v := range x.f {
			if v < 0 {
				v *= a
			}
			o[i] = v
		}
		return nil
	}
	// slope·x, broadcast, then pick per element.
	tmp := st.scratchF(k.scratch, len(x.f))
	broadcast(opMul, tmp, x.f, s.f, x.shape, s.shape, x.shape)
	for i, v := range x.f {
		if v < 0 {
			v = tmp[i]
		}
		o[i] = v
	}
	return nil
}

// padKernel is Pad: constant, reflect, edge or wrap, pads as an attribute
// (before opset 11) or an input, negative pads cropping, optional axes
// (opset 18).
type padKernel struct {
	mode  string
	pads  []int64 // attribute form
	value float32 // attribute form
}

func compilePad(x *nodeCtx) (kernel, []tensor.DType, error) {
	k := &padKernel{mode: "constant"}
	if a, err := x.attr("mode", onnxpb.AttributeProto_STRING); err != nil {
		return nil, nil, err
	} else if a != nil {
		k.mode = string(a.GetS())
	}
	switch k.mode {
	case "constant", "reflect", "edge":
	case "wrap":
		if x.c.opset < 19 {
			return nil, nil, errors.New("mode wrap needs opset 19")
		}
	default:
		return nil, nil, fmt.Errorf("attribute mode is %q, want constant, reflect, edge or wrap", k.mode)
	}
	if x.c.opset < 11 {
		if err := x.inputs(1, 1); err != nil {
			return nil, nil, err
		}
		var ok bool
		var err error
		if k.pads, ok, err = x.intsAttr("pads"); err != nil {
			return nil, nil, err
		} else if !ok {
			return nil, nil, errors.New("attribute pads is required")
		}
		if k.value, err = x.floatAttr("value", 0); err != nil {
			return nil, nil, err
		}
	} else {
		if err := x.inputs(2, 4); err != nil {
			return nil, nil, err
		}
		if err := x.types(int64Only, 1, 3); err != nil {
			return nil, nil, err
		}
	}
	if err := x.types(floatOrInt, 0); err != nil {
		return nil, nil, err
	}
	if x.c.opset >= 11 && x.has(2) && x.dtype(2) != x.dtype(0) {
		return nil, nil, fmt.Errorf("constant_value has type %s, the input %s", x.dtype(2), x.dtype(0))
	}
	return k, []tensor.DType{x.dtype(0)}, nil
}

func (k *padKernel) run(st *state, nd *node) error {
	x := st.in(nd, 0)
	r := len(x.shape)
	pads, value, ivalue := k.pads, k.value, int64(k.value)
	if pads == nil {
		pads = st.in(nd, 1).i
		if v := st.in(nd, 2); v != nil {
			if v.numel() != 1 {
				return fmt.Errorf("constant_value has shape %v, want a scalar", v.shape)
			}
			if v.dt == tensor.Int64 {
				ivalue = v.i[0]
			} else {
				value = v.f[0]
			}
		}
		if ax := st.in(nd, 3); ax != nil {
			if len(pads) != 2*len(ax.i) {
				return fmt.Errorf("pads has %d values for %d axes", len(pads), len(ax.i))
			}
			full := make([]int64, 2*r)
			for i, a := range ax.i {
				d, err := normAxis(a, r)
				if err != nil {
					return err
				}
				full[d], full[r+d] = pads[i], pads[len(ax.i)+i]
			}
			pads = full
		}
	}
	if len(pads) != 2*r {
		return fmt.Errorf("pads has %d values for an input of rank %d", len(pads), r)
	}
	out := nd.out[0]
	sh := st.outShape(out, r)
	for d := range r {
		sh[d] = x.shape[d] + int(pads[d]) + int(pads[r+d])
		if sh[d] < 0 {
			return fmt.Errorf("pads %v crop more than dimension %d of %v", pads, d, x.shape)
		}
		if k.mode != "constant" && x.shape[d] == 0 && sh[d] > 0 {
			return fmt.Errorf("mode %s cannot pad an empty dimension %d of %v", k.mode, d, x.shape)
		}
	}
	of, oi, err := st.alloc(out, x.dt)
	if err != nil {
		return err
	}
	if x.dt == tensor.Int64 {
		padCopy(k.mode, oi, x.i, x.shape, sh, pads, ivalue)
	} else {
		padCopy(k.mode, of, x.f, x.shape, sh, pads, value)
	}
	return nil
}

// padCopy fills o (shape sh) from x (shape xs) padded by pads.
func padCopy[T number](mode string, o, x []T, xs, sh []int, pads []int64, value T) {
	r := len(xs)
	if len(o) == 0 {
		return
	}
	// Walk the output; map each index back to the input per dimension.
	var idxA, strideA [8]int
	var idx, strides []int
	if r <= len(idxA) {
		idx, strides = idxA[:r], strideA[:r]
	} else {
		idx, strides = make([]int, r), make([]int, r)
	}
	s := 1
	for d := r - 1; d >= 0; d-- {
		strides[d] = s
		s *= xs[d]
	}
	for i := range o {
		at, inside := 0, true
		for d := range r {
			v := idx[d] - int(pads[d])
			n := xs[d]
			if v < 0 || v >= n {
				switch mode {
				case "constant":
					inside = false
				case "edge":
					v = min(max(v, 0), n-1)
				case "wrap":
					v = ((v % n) + n) % n
				case "reflect":
					if n == 1 {
						v = 0
						break
					}
					period := 2 * (n - 1)
					v = ((v % period) + period) % period
					if v >= n {
						v = period - v
					}
				}
			}
			at += v * strides[d]
		}
		if inside {
			o[i] = x[at]
		} else {
			o[i] = value
		}
		for d := r - 1; d >= 0; d-- {
			idx[d]++
			if idx[d] < sh[d] {
				break
			}
			idx[d] = 0
		}
	}
}

// batchNormDynamic is inference-mode BatchNormalization whose scale, bias,
// mean or variance is not a constant: the per-channel affine form is worked
// out on every call.
type batchNormDynamic struct {
	eps     float32
	scratch int
}

// batchNormInputs returns BatchNormalization's input X, checked to be
// [N, C, …], and its scale, bias, mean and variance, checked to hold C values.
func batchNormInputs(st *state, nd *node) (*value, [4][]float32, error) {
	var p [4][]float32
	x := st.in(nd, 0)
	if len(x.shape) < 2 {
		return nil, p, fmt.Errorf("input has shape %v; want [N, C, …]", x.shape)
	}
	ch := x.shape[1]
	for i := range p {
		v := st.in(nd, i+1)
		if len(v.shape) != 1 || len(v.f) != ch {
			return nil, p, fmt.Errorf("input %d has shape %v for %d channels", i+1, v.shape, ch)
		}
		p[i] = v.f
	}
	return x, p, nil
}

func (k *batchNormDynamic) run(st *state, nd *node) error {
	x, p, err := batchNormInputs(st, nd)
	if err != nil {
		return err
	}
	ch := x.shape[1]
	buf := st.scratchF(k.scratch, 2*ch)
	bn := batchNormKernel{scale: buf[:ch], shift: buf[ch:]}
	for c := range ch {
		s := float64(p[0][c]) / math.Sqrt(float64(p[3][c])+float64(k.eps))
		bn.scale[c] = float32(s)
		bn.shift[c] = float32(float64(p[1][c]) - float64(p[2][c])*s)
	}
	return bn.run(st, nd)
}

// maxPool2DInside is MaxPool over a 2-D plane whose windows all lie inside
// the input (no padding, no dilation): the common case in CNNs, without the
// bounds checks of the general loop.
func maxPool2DInside[T number](g *geom, x, o []T) {
	inW, kh, kw := g.in[2], g.k[1], g.k[2]
	sh, sw := g.stride[1], g.stride[2]
	for oh := range g.out[1] {
		orow := o[oh*g.out[2] : (oh+1)*g.out[2]]
		if kh == 2 && kw == 2 && sw == 2 {
			r0 := x[oh*sh*inW:][:2*len(orow)]
			r1 := x[(oh*sh+1)*inW:][:2*len(orow)]
			if f, ok := any(orow).([]float32); ok {
				maxPool2x2(any(r0).([]float32), any(r1).([]float32), f)
				continue
			}
			for ow := range orow {
				// The builtin max is branch-free; comparisons on data
				// mispredict.
				p0, p1 := (*[2]T)(r0[2*ow:]), (*[2]T)(r1[2*ow:])
				orow[ow] = max(max(p0[0], p0[1]), max(p1[0], p1[1]))
			}
			continue
		}
		for ow := range orow {
			w0 := ow * sw
			best := x[oh*sh*inW+w0]
			for dh := range kh {
				r := x[(oh*sh+dh)*inW+w0:][:kw]
				for _, v := range r {
					best = max(best, v)
				}
			}
			orow[ow] = best
		}
	}
}

// maxPool2x2 is 2×2 max pooling with stride 2 of rows r0 and r1 (2·len(o)
// values each) into o: assembly where the CPU has it (gemm_amd64.go).
var maxPool2x2 = maxPool2x2Go

func maxPool2x2Go(r0, r1, o []float32) {
	r0, r1 = r0[:2*len(o)], r1[:2*len(o)]
	for i := range o {
		// The builtin max is branch-free; comparisons on data mispredict.
		p0, p1 := (*[2]float32)(r0[2*i:]), (*[2]float32)(r1[2*i:])
		o[i] = max(max(p0[0], p0[1]), max(p1[0], p1[1]))
	}
}
