package onnxrt

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/infergate/infergate/inference/tensor"
)

// number is what the broadcasting arithmetic works on.
type number interface{ ~float32 | ~int64 }

type binOp uint8

const (
	opAdd binOp = iota
	opSub
	opMul
	opDiv
	opPow
)

// binaryKernel is Add, Sub, Mul, Div or Pow with numpy broadcasting.
type binaryKernel struct {
	op binOp
	// expF converts Pow's int64 exponent to float32 at run time.
	expF    bool
	scratch int
}

func compileBinary(op binOp) opCompiler {
	return func(x *nodeCtx) (kernel, []tensor.DType, error) {
		if err := x.inputs(2, 2); err != nil {
			return nil, nil, err
		}
		k := &binaryKernel{op: op}
		if op == opPow && !(x.dtype(0) == tensor.Int64 && x.dtype(1) == tensor.Int64) {
			if err := x.types(floatOnly, 0); err != nil {
				return nil, nil, err
			}
			if err := x.types(floatOrInt, 1); err != nil {
				return nil, nil, err
			}
			if x.dtype(1) == tensor.Int64 {
				k.expF = true
				k.scratch = x.newScratch()
			}
			return k, []tensor.DType{tensor.Float}, nil
		}
		if err := x.types(floatOrInt, 0, 1); err != nil {
			return nil, nil, err
		}
		if x.dtype(0) != x.dtype(1) {
			return nil, nil, fmt.Errorf("inputs have different types %s and %s", x.dtype(0), x.dtype(1))
		}
		return k, []tensor.DType{x.dtype(0)}, nil
	}
}

func (k *binaryKernel) run(st *state, nd *node) error {
	a, b := st.in(nd, 0), st.in(nd, 1)
	out := nd.out[0]
	if err := broadcastInto(st, out, a.shape, b.shape); err != nil {
		return err
	}
	os := st.vals[out].shape
	if a.dt == tensor.Int64 {
		o, err := st.allocI(out)
		if err != nil {
			return err
		}
		if k.op == opDiv && slices.Contains(b.i, 0) {
			return errors.New("integer division by zero")
		}
		broadcast(k.op, o, a.i, b.i, a.shape, b.shape, os)
		return nil
	}
	bf := b.f
	if k.expF {
		bf = st.scratchF(k.scratch, len(b.i))
		for i, v := range b.i {
			bf[i] = float32(v)
		}
	}
	o, err := st.allocF(out)
	if err != nil {
		return err
	}
	broadcast(k.op, o, a.f, bf, a.shape, b.shape, os)
	return nil
}

// broadcastInto sets value id's shape to the numpy broadcast of as and bs.
func broadcastInto(st *state, id int, as, bs []int) error {
	r := max(len(as), len(bs))
	sh := st.outShape(id, r)
	for i := range r {
		da, db := 1, 1
		if j := i - (r - len(as)); j >= 0 {
			da = as[j]
		}
		if j := i - (r - len(bs)); j >= 0 {
			db = bs[j]
		}
		switch {
		case da == db, db == 1:
			sh[i] = da
		case da == 1:
			sh[i] = db
		default:
			return fmt.Errorf("shapes %v and %v cannot be broadcast together", as, bs)
		}
	}
	return nil
}

// broadcast computes out = a op b, where out has the broadcast shape os.
// The common cases (same shape, a scalar, a trailing-dims operand such as a
// bias row) are straight loops; the rest walks collapsed dimensions.
func broadcast[T number](op binOp, out, a, b []T, as, bs, os []int) {
	n := len(out)
	switch {
	case n == 0:
	case len(a) == n && len(b) == n:
		vv(op, out, a, b)
	case len(a) == n && len(b) == 1:
		vs(op, out, a, b[0])
	case len(b) == n && len(a) == 1:
		sv(op, out, a[0], b)
	case len(a) == n && isSuffix(bs, os):
		for off := 0; off < n; off += len(b) {
			vv(op, out[off:off+len(b)], a[off:off+len(b)], b)
		}
	case len(b) == n && isSuffix(as, os):
		for off := 0; off < n; off += len(a) {
			vv(op, out[off:off+len(a)], a, b[off:off+len(a)])
		}
	default:
		broadcastGeneral(op, out, a, b, as, bs, os)
	}
}

// isSuffix reports whether shape s, leading 1s dropped, is the trailing part
// of os (so the operand repeats whole every len elements).
func isSuffix(s, os []int) bool {
	for len(s) > 0 && s[0] == 1 {
		s = s[1:]
	}
	return len(s) > 0 && len(s) <= len(os) && slices.Equal(s, os[len(os)-len(s):])
}

func broadcastGeneral[T number](op binOp, out, a, b []T, as, bs, os []int) {
	r := len(os)
	// Strides of a and b in out's index space (0 where broadcast), outer to
	// inner, skipping out's size-1 dims and merging dims that are contiguous
	// in both operands.
	// Backing arrays on the stack for the usual ranks: a call allocates
	// nothing.
	var dimsBuf, saBuf, sbBuf, cntBuf [8]int
	dims, sa, sb := dimsBuf[:0], saBuf[:0], sbBuf[:0]
	accA, accB := 1, 1
	for i := r - 1; i >= 0; i-- {
		da, db := 1, 1
		if j := i - (r - len(as)); j >= 0 {
			da = as[j]
		}
		if j := i - (r - len(bs)); j >= 0 {
			db = bs[j]
		}
		if os[i] == 1 {
			continue
		}
		strA, strB := 0, 0
		if da != 1 {
			strA = accA
		}
		if db != 1 {
			strB = accB
		}
		accA *= da
		accB *= db
		if k := len(dims) - 1; k >= 0 && strA == sa[k]*dims[k] && strB == sb[k]*dims[k] {
			dims[k] *= os[i]
			continue
		}
		dims = append(dims, os[i])
		sa = append(sa, strA)
		sb = append(sb, strB)
	}
	slices.Reverse(dims)
	slices.Reverse(sa)
	slices.Reverse(sb)
	last := len(dims) - 1
	inner, ia, ib := dims[last], sa[last], sb[last]
	cnt := cntBuf[:0]
	if last <= len(cntBuf) {
		cnt = cntBuf[:last]
	} else {
		cnt = make([]int, last)
	}
	offA, offB := 0, 0
	for off := 0; off < len(out); off += inner {
		o := out[off : off+inner]
		switch {
		case ia != 0 && ib != 0:
			vv(op, o, a[offA:offA+inner], b[offB:offB+inner])
		case ia == 0:
			sv(op, o, a[offA], b[offB:offB+inner])
		default:
			vs(op, o, a[offA:offA+inner], b[offB])
		}
		for d := last - 1; d >= 0; d-- {
			cnt[d]++
			offA += sa[d]
			offB += sb[d]
			if cnt[d] < dims[d] {
				break
			}
			offA -= sa[d] * dims[d]
			offB -= sb[d] * dims[d]
			cnt[d] = 0
		}
	}
}

func pow[T number](x, y T) T { return T(math.Pow(float64(x), float64(y))) }

func vv[T number](op binOp, out, a, b []T) {
	a, b = a[:len(out)], b[:len(out)]
	switch op {
	case opAdd:
		for i := range out {
			out[i] = a[i] + b[i]
		}
	case opSub:
		for i := range out {
			out[i] = a[i] - b[i]
		}
	case opMul:
		for i := range out {
			out[i] = a[i] * b[i]
		}
	case opDiv:
		for i := range out {
			out[i] = a[i] / b[i]
		}
	case opPow:
		for i := range out {
			out[i] = pow(a[i], b[i])
		}
	}
}

func vs[T number](op binOp, out, a []T, y T) {
	a = a[:len(out)]
	switch op {
	case opAdd:
		for i := range out {
			out[i] = a[i] + y
		}
	case opSub:
		for i := range out {
			out[i] = a[i] - y
		}
	case opMul:
		for i := range out {
			out[i] = a[i] * y
		}
	case opDiv:
		for i := range out {
			out[i] = a[i] / y
		}
	case opPow:
		switch y {
		case 1:
			copy(out, a)
		case 2:
			for i := range out {
				out[i] = a[i] * a[i]
			}
		case 3:
			for i := range out {
				out[i] = a[i] * a[i] * a[i]
			}
		default:
			for i := range out {
				out[i] = pow(a[i], y)
			}
		}
	}
}

func sv[T number](op binOp, out []T, x T, b []T) {
	b = b[:len(out)]
	switch op {
	case opAdd:
		for i := range out {
			out[i] = x + b[i]
		}
	case opSub:
		for i := range out {
			out[i] = x - b[i]
		}
	case opMul:
		for i := range out {
			out[i] = x * b[i]
		}
	case opDiv:
		for i := range out {
			out[i] = x / b[i]
		}
	case opPow:
		for i := range out {
			out[i] = pow(x, b[i])
		}
	}
}

type unaryOp uint8

const (
	uRelu unaryOp = iota
	uLeakyRelu
	uSigmoid
	uHardSigmoid
	uTanh
	uExp
	uLog
	uSqrt
	uNeg
	uAbs
	uErf
	uReciprocal
	uSoftplus
	uElu
	uFloor
	uCeil
	// uThresholdedRelu is x where x > alpha, else 0 (ONNX ThresholdedRelu).
	uThresholdedRelu
	// uGelu is torch's exported GELU, x·(erf(x/alpha)+1)·0.5 (fuseGelu).
	uGelu
)

// unaryKernel applies an element-wise function.
type unaryKernel struct {
	op          unaryOp
	alpha, beta float32
}

func compileUnary(op unaryOp) opCompiler {
	return func(x *nodeCtx) (kernel, []tensor.DType, error) {
		if err := x.inputs(1, 1); err != nil {
			return nil, nil, err
		}
		allowed := floatOnly
		if op == uNeg || op == uAbs {
			allowed = floatOrInt
		}
		if err := x.types(allowed, 0); err != nil {
			return nil, nil, err
		}
		k := &unaryKernel{op: op}
		var err error
		switch op {
		case uLeakyRelu:
			k.alpha, err = x.floatAttr("alpha", 0.01)
		case uElu, uThresholdedRelu:
			k.alpha, err = x.floatAttr("alpha", 1)
		case uHardSigmoid:
			if k.alpha, err = x.floatAttr("alpha", 0.2); err == nil {
				k.beta, err = x.floatAttr("beta", 0.5)
			}
		}
		if err != nil {
			return nil, nil, err
		}
		return k, []tensor.DType{x.dtype(0)}, nil
	}
}

func (k *unaryKernel) run(st *state, nd *node) error {
	in := st.in(nd, 0)
	out := nd.out[0]
	st.setShape(out, in.shape)
	if in.dt == tensor.Int64 {
		o, err := st.allocI(out)
		if err != nil {
			return err
		}
		for i, v := range in.i {
			if k.op == uNeg || v < 0 {
				v = -v
			}
			o[i] = v
		}
		return nil
	}
	o, err := st.allocF(out)
	if err != nil {
		return err
	}
	applyUnary(k.op, k.alpha, k.beta, o, in.f)
	return nil
}

func sigmoid(v float32) float32 {
	// Split by sign so exp never overflows.
	if v >= 0 {
		return float32(1 / (1 + math.Exp(-float64(v))))
	}
	e := math.Exp(float64(v))
	return float32(e / (1 + e))
}

// applyUnary writes f(in) to out; out may be in.
func applyUnary(op unaryOp, alpha, beta float32, out, in []float32) {
	in = in[:len(out)]
	switch op {
	case uRelu:
		for i, v := range in {
			out[i] = max(v, 0)
		}
	case uLeakyRelu:
		for i, v := range in {
			if v < 0 {
				v *= alpha
			}
			out[i] = v
		}
	case uSigmoid:
		for i, v := range in {
			out[i] = sigmoid(v)
		}
	case uHardSigmoid:
		for i, v := range in {
			out[i] = min(max(alpha*v+beta, 0), 1)
		}
	case uTanh:
		for i, v := range in {
			out[i] = float32(math.Tanh(float64(v)))
		}
	case uExp:
		for i, v := range in {
			out[i] = float32(math.Exp(float64(v)))
		}
	case uLog:
		for i, v := range in {
			out[i] = float32(math.Log(float64(v)))
		}
	case uSqrt:
		for i, v := range in {
			out[i] = float32(math.Sqrt(float64(v)))
		}
	case uNeg:
		for i, v := range in {
			out[i] = -v
		}
	case uAbs:
		for i, v := range in {
			out[i] = float32(math.Abs(float64(v)))
		}
	case uErf:
		erfSlice(out, in)
	case uReciprocal:
		for i, v := range in {
			out[i] = 1 / v
		}
	case uSoftplus:
		for i, v := range in {
			if v > 20 { // exp would dominate: log(1+e^v) == v in float32
				out[i] = v
				continue
			}
			out[i] = float32(math.Log1p(math.Exp(float64(v))))
		}
	case uElu:
		for i, v := range in {
			if v < 0 {
				v = alpha * float32(math.Expm1(float64(v)))
			}
			out[i] = v
		}
	case uFloor:
		for i, v := range in {
			out[i] = float32(math.Floor(float64(v)))
		}
	case uCeil:
		for i, v := range in {
			out[i] = float32(math.Ceil(float64(v)))
		}
	case uThresholdedRelu:
		for i, v := range in {
			if v <= alpha {
				v = 0
			}
			out[i] = v
		}
	case uGelu:
		gelu(out, in, alpha)
	}
}

// gelu sets out[i] = (x·(erf(x/div)+1))·0.5, x = in[i], the operations and
// their order of the exported graph (Div, Erf, Add, Mul, Mul), a block at a
// time so the erf runs vectorised.
func gelu(out, in []float32, div float32) {
	var t [256]float32
	for len(in) > 0 {
		n := min(len(in), len(t))
		blk, o := in[:n], out[:n]
		for i, x := range blk {
			t[i] = x / div
		}
		erfBlock(t[:n], t[:n])
		for i, x := range blk {
			a := t[i] + 1
			m := x * a
			o[i] = m * 0.5
		}
		in, out = in[n:], out[n:]
	}
}

// erfSlice sets out[i] = erf32(in[i]) (in and out may be the same): in
// AVX-512 where the CPU has it (gemm_amd64.go).
var erfSlice = erfGo

func erfGo(out, in []float32) {
	in = in[:len(out)]
	for i, v := range in {
		out[i] = erf32(v)
	}
}

// erf32 is erf in float32 arithmetic: a rational approximation (odd degree
// 13 over even degree 8, the coefficients of Eigen's and TensorFlow's float
// erf) on x clamped to [-4, 4], where erf is ±1 in float32. It is ~8× faster
// than math.Erf in float64 (GELU's Erf was 40% of a transformer layer) and
// within 4.2e-7 of it (TestErf32: a few float32 ulp). NaN stays NaN.
func erf32(a float32) float32 {
	x := min(max(a, -4), 4)
	x2 := x * x
	p := x2*-2.72614225801306e-10 + 2.77068142495902e-08
	p = x2*p + -2.10102402082508e-06
	p = x2*p + -5.69250639462346e-05
	p = x2*p + -7.34990630326855e-04
	p = x2*p + -2.95459980854025e-03
	p = x2*p + -1.60960333262415e-02
	p *= x
	q := x2*-1.45660718464996e-05 + -2.13374055278905e-04
	q = x2*q + -1.68282697438203e-03
	q = x2*q + -7.37332916720468e-03
	q = x2*q + -1.42647390514189e-02
	// The quotient can pass ±1 by an ulp near the clamp; erf cannot.
	return min(max(p/q, -1), 1)
}
