package onnxrt

import (
	"errors"
	"fmt"
	"math"

	"github.com/infergate/infergate/inference/tensor"
)

var ops = map[string]opCompiler{
	"Abs":                compileUnary(uAbs),
	"Add":                compileBinary(opAdd),
	"AveragePool":        compilePool(false),
	"BatchNormalization": compileBatchNorm,
	"Cast":               compileCast,
	"Ceil":               compileUnary(uCeil),
	"Clip":               compileClip,
	"Concat":             compileConcat,
	"Constant":           compileConstant,
	"Conv":               compileConv,
	"ConvTranspose":      compileConvTranspose,
	"ConstantOfShape":    compileConstantOfShape,
	"Div":                compileBinary(opDiv),
	"Dropout":            compileIdentity,
	"Elu":                compileUnary(uElu),
	"Erf":                compileUnary(uErf),
	"Exp":                compileUnary(uExp),
	"Flatten":            compileFlatten,
	"Floor":              compileUnary(uFloor),
	"Gather":             compileGather,
	"GlobalAveragePool":  compileGlobalPool(false),
	"GlobalMaxPool":      compileGlobalPool(true),
	"Gemm":               compileGemm,
	"HardSigmoid":        compileUnary(uHardSigmoid),
	"Identity":           compileIdentity,
	"LayerNormalization": compileLayerNorm,
	"LeakyRelu":          compileUnary(uLeakyRelu),
	"Log":                compileUnary(uLog),
	"LogSoftmax":         compileSoftmax(true),
	"MatMul":             compileMatMul,
	"MaxPool":            compilePool(true),
	"Mul":                compileBinary(opMul),
	"Neg":                compileUnary(uNeg),
	"PRelu":              compilePRelu,
	"Pad":                compilePad,
	"Pow":                compileBinary(opPow),
	"Reciprocal":         compileUnary(uReciprocal),
	"ReduceMax":          compileReduce(rMax),
	"ReduceMean":         compileReduce(rMean),
	"ReduceMin":          compileReduce(rMin),
	"ReduceSum":          compileReduce(rSum),
	"Relu":               compileUnary(uRelu),
	"Reshape":            compileReshape,
	"Resize":             compileResize(false),
	"Shape":              compileShape,
	"Sigmoid":            compileUnary(uSigmoid),
	"Slice":              compileSlice,
	"Softmax":            compileSoftmax(false),
	"Softplus":           compileUnary(uSoftplus),
	"Sqrt":               compileUnary(uSqrt),
	"Squeeze":            compileSqueeze(false),
	"Sub":                compileBinary(opSub),
	"Tanh":               compileUnary(uTanh),
	"ThresholdedRelu":    compileUnary(uThresholdedRelu),
	"Transpose":          compileTranspose,
	"Unsqueeze":          compileSqueeze(true),
	"Upsample":           compileResize(true),
}

// softmaxKernel is Softmax or LogSoftmax. From opset 13 it normalises along
// one axis (default -1); before, it flattened the input to 2-D at axis
// (default 1) and normalised each row.
type softmaxKernel struct {
	axis      int64
	coerce2D  bool
	logarithm bool
}

func compileSoftmax(logarithm bool) opCompiler {
	return func(x *nodeCtx) (kernel, []tensor.DType, error) {
		if err := x.inputs(1, 1); err != nil {
			return nil, nil, err
		}
		if err := x.types(floatOnly, 0); err != nil {
			return nil, nil, err
		}
		def := int64(-1)
		if x.c.opset < 13 {
			def = 1
		}
		axis, err := x.intAttr("axis", def)
		if err != nil {
			return nil, nil, err
		}
		return &softmaxKernel{axis: axis, coerce2D: x.c.opset < 13, logarithm: logarithm}, []tensor.DType{tensor.Float}, nil
	}
}

func (k *softmaxKernel) run(st *state, nd *node) error {
	in := st.in(nd, 0)
	r := len(in.shape)
	out := nd.out[0]
	st.setShape(out, in.shape)
	o, err := st.allocF(out)
	if err != nil {
		return err
	}
	if r == 0 {
		return errors.New("input is a scalar")
	}
	axis, err := normAxis(k.axis, r)
	if err != nil {
		return err
	}
	outer, n, inner := 1, 1, 1
	for i, d := range in.shape {
		switch {
		case i < axis:
			outer *= d
		case i == axis || k.coerce2D:
			n *= d
		default:
			inner *= d
		}
	}
	if n == 0 {
		return nil
	}
	if inner == 1 && !k.logarithm {
		// The common case (the last axis): contiguous rows, vectorised.
		softmaxRows(o, in.f[:len(o)], n)
		return nil
	}
	for a := range outer {
		for b := range inner {
			base := a*n*inner + b
			mx := float32(math.Inf(-1))
			for j := range n {
				mx = max(mx, in.f[base+j*inner])
			}
			var sum float64
			for j := range n {
				e := math.Exp(float64(in.f[base+j*inner] - mx))
				sum += e
				if !k.logarithm {
					o[base+j*inner] = float32(e)
				}
			}
			if k.logarithm {
				ls := float32(math.Log(sum))
				for j := range n {
					o[base+j*inner] = in.f[base+j*inner] - mx - ls
				}
				continue
			}
			inv := float32(1 / sum)
			for j := range n {
				o[base+j*inner] *= inv
			}
		}
	}
	return nil
}

// clipKernel bounds values to [lo, hi]: attributes before opset 11, optional
// scalar inputs from 11 on.
type clipKernel struct {
	lo, hi     float32
	loIn, hiIn int // input index of a computed bound, or -1
}

func compileClip(x *nodeCtx) (kernel, []tensor.DType, error) {
	k := &clipKernel{lo: float32(math.Inf(-1)), hi: float32(math.Inf(1)), loIn: -1, hiIn: -1}
	if x.c.opset < 11 {
		if err := x.inputs(1, 1); err != nil {
			return nil, nil, err
		}
		var err error
		if k.lo, err = x.floatAttr("min", k.lo); err != nil {
			return nil, nil, err
		}
		if k.hi, err = x.floatAttr("max", k.hi); err != nil {
			return nil, nil, err
		}
	} else {
		if err := x.inputs(1, 3); err != nil {
			return nil, nil, err
		}
		for i, dst := range []*float32{&k.lo, &k.hi} {
			if !x.has(i + 1) {
				continue
			}
			if c := x.konst(i + 1); c != nil {
				if c.dt != tensor.Float || len(c.f) != 1 {
					return nil, nil, fmt.Errorf("bound %d must be a float32 scalar", i+1)
				}
				*dst = c.f[0]
			} else if i == 0 {
				k.loIn = 1
			} else {
				k.hiIn = 2
			}
		}
	}
	if err := x.types(floatOnly, 0, 1, 2); err != nil {
		return nil, nil, err
	}
	return k, []tensor.DType{tensor.Float}, nil
}

func (k *clipKernel) run(st *state, nd *node) error {
	in := st.in(nd, 0)
	lo, hi := k.lo, k.hi
	if k.loIn >= 0 {
		v := st.in(nd, k.loIn)
		if len(v.f) != 1 {
			return fmt.Errorf("min has shape %v, want a scalar", v.shape)
		}
		lo = v.f[0]
	}
	if k.hiIn >= 0 {
		v := st.in(nd, k.hiIn)
		if len(v.f) != 1 {
			return fmt.Errorf("max has shape %v, want a scalar", v.shape)
		}
		hi = v.f[0]
	}
	out := nd.out[0]
	st.setShape(out, in.shape)
	o, err := st.allocF(out)
	if err != nil {
		return err
	}
	for i, v := range in.f {
		o[i] = min(max(v, lo), hi)
	}
	return nil
}

// batchNormKernel is inference-mode BatchNormalization with constant
// statistics, precomputed as y = x·scale[c] + shift[c] over channel dim 1.
type batchNormKernel struct{ scale, shift []float32 }

func compileBatchNorm(x *nodeCtx) (kernel, []tensor.DType, error) {
	if err := x.inputs(5, 5); err != nil {
		return nil, nil, err
	}
	if err := x.types(floatOnly, 0, 1, 2, 3, 4); err != nil {
		return nil, nil, err
	}
	tm, err := x.intAttr("training_mode", 0)
	if err != nil {
		return nil, nil, err
	}
	eps, err := x.floatAttr("epsilon", 1e-5)
	if err != nil {
		return nil, nil, err
	}
	if tm != 0 {
		if x.c.opset < 14 {
			return nil, nil, errors.New("training_mode before opset 14 is not supported")
		}
		if len(x.n.out) > 3 {
			return nil, nil, fmt.Errorf("has %d outputs, want 1 to 3", len(x.n.out))
		}
		momentum, err := x.floatAttr("momentum", 0.9)
		if err != nil {
			return nil, nil, err
		}
		return &batchNormTraining{eps: eps, momentum: momentum, scratch: x.newScratch()},
			[]tensor.DType{tensor.Float, tensor.Float, tensor.Float}, nil
	}
	if len(x.n.out) > 1 {
		for _, id := range x.n.out[1:] {
			if id >= 0 {
				// Before opset 14 these outputs meant training; since, they
				// exist only with training_mode 1.
				return nil, nil, errors.New("training outputs (running mean/var) without training_mode 1 are not supported")
			}
		}
	}
	for i := 1; i <= 4; i++ {
		if x.konst(i) == nil {
			// Statistics fed or computed at run time.
			return &batchNormDynamic{eps: eps, scratch: x.newScratch()}, []tensor.DType{tensor.Float}, nil
		}
	}
	var p [4][]float32
	for i := range p {
		c := x.konst(i + 1)
		p[i] = c.f
		if len(p[i]) != len(p[0]) {
			return nil, nil, fmt.Errorf("parameters have different lengths %d and %d", len(p[0]), len(p[i]))
		}
	}
	k := &batchNormKernel{scale: make([]float32, len(p[0])), shift: make([]float32, len(p[0]))}
	for c := range p[0] {
		s := float64(p[0][c]) / math.Sqrt(float64(p[3][c])+float64(eps))
		k.scale[c] = float32(s)
		k.shift[c] = float32(float64(p[1][c]) - float64(p[2][c])*s)
	}
	return k, []tensor.DType{tensor.Float}, nil
}

// batchNormTraining is BatchNormalization with training_mode 1 (opset 14+):
// Y is normalized with the batch's own per-channel mean and (population)
// variance, and the optional outputs are the running statistics
// input·momentum + batch·(1−momentum). Deterministic: no randomness involved.
type batchNormTraining struct {
	eps, momentum float32
	scratch       int
}

func (k *batchNormTraining) run(st *state, nd *node) error {
	x, p, err := batchNormInputs(st, nd)
	if err != nil {
		return err
	}
	ch := x.shape[1]
	inner := 1
	for _, d := range x.shape[2:] {
		inner *= d
	}
	count := x.shape[0] * inner
	if count == 0 {
		return fmt.Errorf("input of shape %v has no values per channel to take statistics of", x.shape)
	}
	var running [2][]float32 // the optional running mean and variance outputs
	for j := range running {
		if j+1 >= len(nd.out) || nd.out[j+1] < 0 {
			continue
		}
		st.setShape(nd.out[j+1], []int{ch})
		o, err := st.allocF(nd.out[j+1])
		if err != nil {
			return err
		}
		running[j] = o
	}
	buf := st.scratchF(k.scratch, 2*ch)
	bn := batchNormKernel{scale: buf[:ch], shift: buf[ch:]}
	m := float64(k.momentum)
	for c := range ch {
		// Two passes in float64: the mean, then the squared deviations.
		var sum float64
		for n := range x.shape[0] {
			for _, v := range x.f[(n*ch+c)*inner:][:inner] {
				sum += float64(v)
			}
		}
		mean := sum / float64(count)
		var ss float64
		for n := range x.shape[0] {
			for _, v := range x.f[(n*ch+c)*inner:][:inner] {
				d := float64(v) - mean
				ss += d * d
			}
		}
		variance := ss / float64(count)
		s := float64(p[0][c]) / math.Sqrt(variance+float64(k.eps))
		bn.scale[c] = float32(s)
		bn.shift[c] = float32(float64(p[1][c]) - mean*s)
		if running[0] != nil {
			running[0][c] = float32(float64(p[2][c])*m + mean*(1-m))
		}
		if running[1] != nil {
			running[1][c] = float32(float64(p[3][c])*m + variance*(1-m))
		}
	}
	return bn.run(st, nd)
}

func (k *batchNormKernel) run(st *state, nd *node) error {
	in := st.in(nd, 0)
	if len(in.shape) < 2 || in.shape[1] != len(k.scale) {
		return fmt.Errorf("input shape %v does not have %d channels in dimension 1", in.shape, len(k.scale))
	}
	out := nd.out[0]
	st.setShape(out, in.shape)
	o, err := st.allocF(out)
	if err != nil {
		return err
	}
	inner := 1
	for _, d := range in.shape[2:] {
		inner *= d
	}
	ch := len(k.scale)
	if inner == 0 {
		return nil
	}
	for i := 0; i < len(o); i += inner {
		c := (i / inner) % ch
		s, b := k.scale[c], k.shift[c]
		for j := i; j < i+inner; j++ {
			o[j] = in.f[j]*s + b
		}
	}
	return nil
}

// softmaxRows computes softmax over each contiguous row of n values of in
// (a whole number of rows; out may be in): in AVX-512 where the CPU has it
// (gemm_amd64.go).
var softmaxRows = softmaxRowsGo

func softmaxRowsGo(out, in []float32, n int) {
	for a := 0; a+n <= len(out); a += n {
		row, orow := in[a:a+n], out[a:a+n]
		mx := float32(math.Inf(-1))
		for _, v := range row {
			mx = max(mx, v)
		}
		for j, v := range row {
			orow[j] = v - mx
		}
		expSoftmax(orow, orow)
		var sum float64
		for _, e := range orow {
			sum += float64(e)
		}
		inv := float32(1 / sum)
		for j := range orow {
			orow[j] *= inv
		}
	}
}

// expSoftmax sets out[i] = exp(in[i]) for in[i] ≤ 88 (in and out may be the
// same): in AVX-512 where the CPU has it (gemm_amd64.go), within a few
// float32 ulp of math.Exp.
var expSoftmax = expGo

func expGo(out, in []float32) {
	in = in[:len(out)]
	for i, v := range in {
		out[i] = float32(math.Exp(float64(v)))
	}
}
