package onnxrt

import (
	"fmt"

	"github.com/infergate/infergate/inference/tensor"
)

// activation is an element-wise function fused into a dense layer.
type activation struct {
	on          bool
	op          unaryOp
	alpha, beta float32
}

func (a activation) apply(v []float32) {
	if a.on {
		applyUnary(a.op, a.alpha, a.beta, v, v)
	}
}

// narrowN is the output width below which a dense layer computes each output
// as a dot product over a transposed weight row instead of accumulating
// weight rows: with few columns the row-accumulating loop is too short to
// pay for itself.
const narrowN = 8

// denseKernel is Gemm, or MatMul, by a constant weight matrix: the hot path of
// MLP-style models. Weights are laid out at load time for the kernel used.
type denseKernel struct {
	gemm   bool // Gemm: A is 2-D; MatMul: A's leading dims are all rows
	transA bool
	k, n   int
	wKN    []float32 // B as [K,N] with alpha folded in, for n >= narrowN
	wNK    []float32 // B as [N,K] with alpha folded in, for n < narrowN
	bias   []float32 // per-column bias (beta folded in), or nil
	c      *value    // a constant C of any other broadcastable shape, beta folded in
	act    activation
	// transposing A for transA
	scratch int
	// wP is wKN packed for the blocked GEMM, used from denseGemmRows rows
	// on; sPack and sTile are its scratch (A's panels, edge tiles).
	wP           []float32
	sPack, sTile int
}

// denseGemmRows is the row count from which a wide dense layer runs on the
// packed GEMM (AVX2 micro-kernel) rather than mmKN. Measured on the 16→64→64→1
// MLP, one core, interleaved A/B: the GEMM took 1/2 (8 rows) to 1/4 (32 and 256
// rows) of mmKN's time.
const denseGemmRows = 8

// gemmGeneric is Gemm or MatMul whose B is computed at run time.
type gemmGeneric struct {
	gemm           bool
	transA, transB bool
	alpha, beta    float32
	scratchA       int
	scratchC       int
}

func compileGemm(x *nodeCtx) (kernel, []tensor.DType, error) {
	if err := x.inputs(2, 3); err != nil {
		return nil, nil, err
	}
	if err := x.types(floatOnly, 0, 1, 2); err != nil {
		return nil, nil, err
	}
	alpha, err := x.floatAttr("alpha", 1)
	if err != nil {
		return nil, nil, err
	}
	beta, err := x.floatAttr("beta", 1)
	if err != nil {
		return nil, nil, err
	}
	transA, err := x.intAttr("transA", 0)
	if err != nil {
		return nil, nil, err
	}
	transB, err := x.intAttr("transB", 0)
	if err != nil {
		return nil, nil, err
	}
	out := []tensor.DType{tensor.Float}
	b := x.konst(1)
	if b == nil {
		return &gemmGeneric{gemm: true, transA: transA != 0, transB: transB != 0, alpha: alpha, beta: beta,
			scratchA: x.newScratch(), scratchC: x.newScratch()}, out, nil
	}
	if len(b.shape) != 2 {
		return nil, nil, fmt.Errorf("B must be 2-D, has shape %v", b.shape)
	}
	k, n := b.shape[0], b.shape[1]
	if transB != 0 {
		k, n = n, k
	}
	g := &denseKernel{gemm: true, transA: transA != 0, k: k, n: n, scratch: x.newScratch(), sPack: x.newScratch(), sTile: x.newScratch()}
	g.layout(b.f, transB != 0, alpha)
	if x.has(2) {
		c := x.konst(2)
		if c == nil {
			// C computed at run time: rare enough for the generic path.
			return &gemmGeneric{gemm: true, transA: transA != 0, transB: transB != 0, alpha: alpha, beta: beta,
				scratchA: x.newScratch(), scratchC: x.newScratch()}, out, nil
		}
		scaled := make([]float32, len(c.f))
		for i, v := range c.f {
			scaled[i] = beta * v
		}
		if isRowBias(c.shape, n) {
			g.bias = expandBias(scaled, n)
		} else {
			if len(c.shape) > 2 {
				return nil, nil, fmt.Errorf("C has shape %v, which does not broadcast to [M,%d]", c.shape, n)
			}
			g.c = &value{dt: tensor.Float, shape: c.shape, f: scaled}
		}
	}
	return g, out, nil
}

// isRowBias reports whether a C of this shape adds the same row to every
// output row: [], [1], [n], [1,1] or [1,n].
func isRowBias(shape []int, n int) bool {
	switch len(shape) {
	case 0:
		return true
	case 1:
		return shape[0] == 1 || shape[0] == n
	case 2:
		return shape[0] == 1 && (shape[1] == 1 || shape[1] == n)
	}
	return false
}

// isColumnBias reports whether adding a constant of this shape to the layer's
// output adds bias[j] to every element of column j and leaves the output's
// shape as it is, which is what fusing it as a per-column bias computes. The
// element count alone is not enough: [n,1] has n elements too, but broadcasts
// down the rows (and turns a [1,n] output into [n,n]). [n] keeps the shape for
// any rank of A; [1,n] only when the output is known to be 2-D (Gemm).
func isColumnBias(shape []int, n int, gemm bool) bool {
	switch len(shape) {
	case 1:
		return shape[0] == n
	case 2:
		return gemm && shape[0] == 1 && shape[1] == n
	}
	return false
}

func expandBias(c []float32, n int) []float32 {
	if len(c) == n {
		return c
	}
	b := make([]float32, n)
	for i := range b {
		b[i] = c[0]
	}
	return b
}

func compileMatMul(x *nodeCtx) (kernel, []tensor.DType, error) {
	if err := x.inputs(2, 2); err != nil {
		return nil, nil, err
	}
	if err := x.types(floatOnly, 0, 1); err != nil {
		return nil, nil, err
	}
	out := []tensor.DType{tensor.Float}
	b := x.konst(1)
	if b == nil || len(b.shape) != 2 {
		return &matMulGeneric{sPackA: x.newScratch(), sPackB: x.newScratch(), sTile: x.newScratch()}, out, nil
	}
	g := &denseKernel{k: b.shape[0], n: b.shape[1], sPack: x.newScratch(), sTile: x.newScratch()}
	g.layout(b.f, false, 1)
	return g, out, nil
}

// layout stores B (given as [K,N], or [N,K] if transposed) in the layout the
// kernel for this width wants, scaled by alpha.
func (g *denseKernel) layout(b []float32, transposed bool, alpha float32) {
	k, n := g.k, g.n
	w := make([]float32, k*n)
	narrow := n < narrowN
	for i := range k {
		for j := range n {
			var v float32
			if transposed {
				v = b[j*k+i]
			} else {
				v = b[i*n+j]
			}
			if narrow {
				w[j*k+i] = alpha * v
			} else {
				w[i*n+j] = alpha * v
			}
		}
	}
	if narrow {
		g.wNK = w
	} else {
		g.wKN = w
		g.wP = make([]float32, packedBSize(k, n))
		packB(g.wP, w, k, n, n, 1, 1)
	}
}

// absorb fuses the node that consumes this layer's output (value out) if it
// is a constant bias Add or an element-wise activation.
func (g *denseKernel) absorb(next *node, out int, consts []*value) bool {
	switch k := next.k.(type) {
	case *binaryKernel:
		if k.op != opAdd || g.bias != nil || g.c != nil || g.act.on {
			return false
		}
		other := next.in[1]
		if other == out {
			other = next.in[0]
		}
		if other == out || other < 0 {
			return false
		}
		bv := consts[other]
		if bv == nil || bv.dt != tensor.Float || !isColumnBias(bv.shape, g.n, g.gemm) {
			return false
		}
		g.bias = bv.f
		return true
	case *unaryKernel:
		if g.act.on {
			return false
		}
		g.act = activation{on: true, op: k.op, alpha: k.alpha, beta: k.beta}
		return true
	}
	return false
}

func (g *denseKernel) run(st *state, nd *node) error {
	a := st.in(nd, 0)
	out := nd.out[0]
	af := a.f
	var m int
	if g.gemm {
		if len(a.shape) != 2 {
			return fmt.Errorf("A must be 2-D, has shape %v", a.shape)
		}
		rows, cols := a.shape[0], a.shape[1]
		if g.transA {
			rows, cols = cols, rows
			af = transpose2(st.scratchF(g.scratch, len(af)), af, cols, rows)
		}
		if cols != g.k {
			return fmt.Errorf("A has shape %v, B wants %d columns", a.shape, g.k)
		}
		m = rows
		sh := st.outShape(out, 2)
		sh[0], sh[1] = m, g.n
	} else {
		r := len(a.shape)
		if r == 0 || a.shape[r-1] != g.k {
			return fmt.Errorf("A has shape %v, B wants a last dimension of %d", a.shape, g.k)
		}
		if r == 1 {
			m = 1
			st.outShape(out, 1)[0] = g.n
		} else {
			sh := st.outShape(out, r)
			copy(sh, a.shape[:r-1])
			sh[r-1] = g.n
			m = len(af) / g.k
			if g.k == 0 {
				m = 1
				for _, d := range a.shape[:r-1] {
					m *= d
				}
			}
		}
	}
	o, err := st.allocF(out)
	if err != nil {
		return err
	}
	act := g.act
	if g.c != nil {
		act.on = false
	}
	switch {
	case g.wNK != nil:
		mmNK(o, af, g.wNK, g.bias, m, g.k, g.n, act)
	case m >= denseGemmRows && g.k > 0:
		// A's rows are read in place (packed a panel at a time where the
		// CPU has no kernel for that).
		call := gemmCall{m: m, n: g.n, k: g.k, a: af, lda: g.k, pa: st.scratchF(g.sPack, gemmMR*g.k), pb: g.wP,
			c: o, ldc: g.n, colBias: g.bias, act: act, tile: st.scratchF(g.sTile, gemmTile)}
		call.cols(0, ceilDiv(g.n, gemmNR), 0)
	default:
		mmKN(o, af, g.wKN, g.bias, m, g.k, g.n, act)
	}
	if g.c != nil {
		osh := st.vals[out].shape
		if err := checkUnidirectional(g.c.shape, osh); err != nil {
			return err
		}
		broadcast(opAdd, o, o, g.c.f, osh, g.c.shape, osh)
		g.act.apply(o)
	}
	return nil
}

// checkUnidirectional checks that c broadcasts to exactly shape.
func checkUnidirectional(c, shape []int) error {
	if len(c) > len(shape) {
		return fmt.Errorf("C of shape %v does not broadcast to %v", c, shape)
	}
	for i, d := range c {
		if od := shape[len(shape)-len(c)+i]; d != 1 && d != od {
			return fmt.Errorf("C of shape %v does not broadcast to %v", c, shape)
		}
	}
	return nil
}

func transpose2(dst, src []float32, rows, cols int) []float32 {
	// src is [rows, cols]; dst becomes [cols, rows].
	for r := range rows {
		for c := range cols {
			dst[c*rows+r] = src[r*cols+c]
		}
	}
	return dst
}

func (g *gemmGeneric) run(st *state, nd *node) error {
	a, b, c := st.in(nd, 0), st.in(nd, 1), st.in(nd, 2)
	if len(a.shape) != 2 || len(b.shape) != 2 {
		return fmt.Errorf("A and B must be 2-D, have shapes %v and %v", a.shape, b.shape)
	}
	m, k := a.shape[0], a.shape[1]
	af := a.f
	if g.transA {
		m, k = k, m
		af = transpose2(st.scratchF(g.scratchA, len(af)), af, k, m)
	}
	kb, n := b.shape[0], b.shape[1]
	if g.transB {
		kb, n = n, kb
	}
	if kb != k {
		return fmt.Errorf("A' is [%d,%d] but B' is [%d,%d]", m, k, kb, n)
	}
	out := nd.out[0]
	sh := st.outShape(out, 2)
	sh[0], sh[1] = m, n
	o, err := st.allocF(out)
	if err != nil {
		return err
	}
	if g.transB {
		mmNK(o, af, b.f, nil, m, k, n, activation{})
	} else {
		mmKN(o, af, b.f, nil, m, k, n, activation{})
	}
	if g.alpha != 1 {
		vs(opMul, o, o, g.alpha)
	}
	if c != nil {
		osh := st.vals[out].shape
		if err := checkUnidirectional(c.shape, osh); err != nil {
			return err
		}
		cf := c.f
		if g.beta != 1 {
			cf = st.scratchF(g.scratchC, len(c.f))
			vs(opMul, cf, c.f, g.beta)
		}
		broadcast(opAdd, o, o, cf, osh, c.shape, osh)
	}
	return nil
}

// mmKN computes out[m×n] = act(a[m×k] · w[k×n] + bias). It works on four rows
// at a time so each weight row is loaded once for four output rows, and skips
// zero inputs (common after ReLU).
func mmKN(out, a, w, bias []float32, m, k, n int, act activation) {
	r := 0
	for ; r+4 <= m; r += 4 {
		o := out[r*n : (r+4)*n]
		o0, o1, o2, o3 := o[:n], o[n:2*n], o[2*n:3*n], o[3*n:4*n]
		if bias != nil {
			copy(o0, bias)
			copy(o1, bias)
			copy(o2, bias)
			copy(o3, bias)
		} else {
			clear(o)
		}
		a0, a1, a2, a3 := a[r*k:(r+1)*k], a[(r+1)*k:(r+2)*k], a[(r+2)*k:(r+3)*k], a[(r+3)*k:(r+4)*k]
		for kk := range k {
			x0, x1, x2, x3 := a0[kk], a1[kk], a2[kk], a3[kk]
			if x0 == 0 && x1 == 0 && x2 == 0 && x3 == 0 {
				continue
			}
			axpy4(o0, o1, o2, o3, w[kk*n:kk*n+n], x0, x1, x2, x3)
		}
		act.apply(o)
	}
	for ; r < m; r++ {
		o := out[r*n : (r+1)*n]
		if bias != nil {
			copy(o, bias)
		} else {
			clear(o)
		}
		ar := a[r*k : (r+1)*k]
		for kk, x := range ar {
			if x == 0 {
				continue
			}
			wr := w[kk*n : kk*n+n]
			o := o[:len(wr)]
			for j, wv := range wr {
				o[j] += x * wv
			}
		}
		act.apply(o)
	}
}

// axpy4 adds x0..x3 times the weight row wr to four output rows. It is a
// function of its own, not inlined, so the loop has registers to itself:
// inlined, the compiler spills the row pointers and reloads them every step.
//
//go:noinline
func axpy4(o0, o1, o2, o3, wr []float32, x0, x1, x2, x3 float32) {
	o0, o1, o2, o3 = o0[:len(wr)], o1[:len(wr)], o2[:len(wr)], o3[:len(wr)]
	for j, wv := range wr {
		o0[j] += x0 * wv
		o1[j] += x1 * wv
		o2[j] += x2 * wv
		o3[j] += x3 * wv
	}
}

// mmNK computes out[m×n] = act(a[m×k] · wᵀ + bias) with w given as [n×k]:
// one dot product per output, for narrow layers.
func mmNK(out, a, w, bias []float32, m, k, n int, act activation) {
	for r := range m {
		ar := a[r*k : (r+1)*k]
		o := out[r*n : (r+1)*n]
		for j := range o {
			s := dot(ar, w[j*k:(j+1)*k])
			if bias != nil {
				s += bias[j]
			}
			o[j] = s
		}
		act.apply(o)
	}
}

func dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}
