package onnxrt

import (
	"fmt"
	"math"
	"strings"

	onnxpb "github.com/infergate/infergate/proto/onnx"

	"github.com/infergate/infergate/inference/tensor"
)

// The recurrent operators RNN, GRU and LSTM (ONNX opsets 7 to 22, layout from
// 14). Per direction, the input projection X·Wᵀ (+ both biases where they can
// be folded) is one matrix product over all time steps; each step then
// multiplies the previous hidden state by Rᵀ for the whole batch and applies
// the gate arithmetic row by row. Weights given as constants are laid out
// once at load; computed ones are laid out per call into scratch. Buffers come
// from the run state, so steady traffic allocates nothing per step or call.

type rnnKind uint8

const (
	kindRNN rnnKind = iota
	kindGRU
	kindLSTM
)

// rnnAct is one of the activation functions the recurrent operators accept.
type rnnAct struct {
	name        string
	alpha, beta float32
}

// rnnActDefaults holds each activation's default alpha and beta and whether
// it consumes them from activation_alpha/activation_beta.
var rnnActDefaults = map[string]struct {
	alpha, beta         float32
	usesAlpha, usesBeta bool
}{
	"relu":            {},
	"tanh":            {},
	"sigmoid":         {},
	"softsign":        {},
	"softplus":        {},
	"affine":          {1, 0, true, true},
	"leakyrelu":       {0.01, 0, true, false},
	"thresholdedrelu": {1, 0, true, false},
	"scaledtanh":      {1, 1, true, true},
	"hardsigmoid":     {0.2, 0.5, true, true},
	"elu":             {1, 0, true, false},
}

func (a rnnAct) apply(v []float32) {
	switch a.name {
	case "sigmoid":
		tanhVec(v, v, 0.5, 0.5, 0.5)
	case "tanh":
		tanhVec(v, v, 1, 1, 0)
	case "relu":
		for i, x := range v {
			v[i] = max(x, 0)
		}
	case "affine":
		for i, x := range v {
			v[i] = a.alpha*x + a.beta
		}
	case "leakyrelu":
		for i, x := range v {
			if x < 0 {
				v[i] = a.alpha * x
			}
		}
	case "thresholdedrelu":
		for i, x := range v {
			if x <= a.alpha {
				v[i] = 0
			}
		}
	case "scaledtanh":
		for i, x := range v {
			v[i] = a.alpha * tanh32(a.beta*x)
		}
	case "hardsigmoid":
		for i, x := range v {
			v[i] = min(max(a.alpha*x+a.beta, 0), 1)
		}
	case "elu":
		for i, x := range v {
			if x < 0 {
				v[i] = a.alpha * float32(math.Expm1(float64(x)))
			}
		}
	case "softsign":
		for i, x := range v {
			v[i] = x / (1 + float32(math.Abs(float64(x))))
		}
	case "softplus":
		applyUnary(uSoftplus, 0, 0, v, v)
	}
}

// tanh32 is tanh in float32 by a rational approximation (odd degree-13
// numerator, even degree-6 denominator) on [-7.9, 7.9], beyond which tanh is
// ±1 in float32. Its error is a few units in the last place
// (TestTanh32Accuracy), at a fraction of math.Tanh's cost.
func tanh32(x float32) float32 {
	const clampAt = 7.90531110763549805
	if x > clampAt {
		return 1
	}
	if x < -clampAt {
		return -1
	}
	if x < 0.0004 && x > -0.0004 {
		return x
	}
	x2 := x * x
	p := float32(-2.76076847742355e-16)
	p = p*x2 + 2.00018790482477e-13
	p = p*x2 - 8.60467152213735e-11
	p = p*x2 + 5.12229709037114e-08
	p = p*x2 + 1.48572235717979e-05
	p = p*x2 + 6.37261928875436e-04
	p = p*x2 + 4.89352455891786e-03
	p *= x
	q := float32(1.19825839466702e-06)
	q = q*x2 + 1.18534705686654e-04
	q = q*x2 + 2.26843463243900e-03
	q = q*x2 + 4.89352518554385e-03
	return p / q
}

// sigmoid32 is the logistic function, 1/(1+e^-x) = (1 + tanh(x/2)) / 2.
func sigmoid32(x float32) float32 { return 0.5 + 0.5*tanh32(0.5*x) }

// tanhTabLen is the number of rows of tanhTab.
const tanhTabLen = 13

// tanhTab holds tanh32's clamp bounds and coefficients, each repeated eight
// times for the vector kernel (tanh_amd64.s).
var tanhTab = func() (t [tanhTabLen][8]float32) {
	for i, c := range [tanhTabLen]float32{7.90531110763549805, -7.90531110763549805,
		-2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11, 5.12229709037114e-08,
		1.48572235717979e-05, 6.37261928875436e-04, 4.89352455891786e-03,
		1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03} {
		for j := range t[i] {
			t[i][j] = c
		}
	}
	return t
}()

// tanhVec writes add + mul·tanh(scale·src[i]) to dst[i] (dst and src may be
// the same slice): tanh with (1, 1, 0), the logistic function with (0.5,
// 0.5, 0.5). A vector kernel replaces it where the CPU has one.
var tanhVec = tanhVecGo

func tanhVecGo(dst, src []float32, scale, mul, add float32) {
	src = src[:len(dst)]
	for i, x := range src {
		dst[i] = add + mul*tanh32(scale*x)
	}
}

// rnnWeights is one direction's parameters, laid out for the kernels.
type rnnWeights struct {
	wP   []float32 // Wᵀ [I, G·H] packed for the GEMM
	rP   []float32 // Rᵀ [H, G·H] packed for the GEMM
	rT   []float32 // [H, G·H]: Rᵀ, only for GRU without linear_before_reset
	bias []float32 // [G·H]: Wb + Rb, except GRU's Rbh under linear_before_reset
	rbh  []float32 // [H]: GRU's Rbh when linear_before_reset
	peep []float32 // [3H]: LSTM peepholes i, o, f; nil if none
}

type rnnKernel struct {
	kind        rnnKind
	gates       int // G: 1, 3 or 4
	hidden      int
	dirs        int
	reverse     bool // the single direction is "reverse"
	layout      int64
	clip        float32 // 0: none
	lbr         bool    // GRU linear_before_reset
	inputForget bool    // LSTM input_forget
	// fast: an LSTM with the default activations, no peepholes, clip or
	// input_forget. Its cell gate's weights and biases are doubled at layout,
	// so one logistic call over all four gates gives tanh(x) = 2σ(2x) − 1 too.
	fast  bool
	acts  [][]rnnAct
	fixed []rnnWeights // per direction when W, R, B, P are constants
	// scratch buffers
	sXP, sHP, sH, sC, sW, sGate, sTile, sPack int
}

func compileRNN(kind rnnKind) opCompiler {
	return func(x *nodeCtx) (kernel, []tensor.DType, error) {
		k := &rnnKernel{kind: kind, gates: [...]int{1, 3, 4}[kind]}
		maxIn, nOut := 6, 2
		if kind == kindLSTM {
			maxIn, nOut = 8, 3
		}
		if err := x.inputs(3, maxIn); err != nil {
			return nil, nil, err
		}
		if len(x.n.out) > nOut {
			return nil, nil, fmt.Errorf("has %d outputs, want at most %d", len(x.n.out), nOut)
		}
		if err := x.types(floatOnly, 0, 1, 2, 3, 5, 6, 7); err != nil {
			return nil, nil, err
		}
		if err := x.types(int64Only, 4); err != nil {
			return nil, nil, err
		}
		hs, err := x.intAttr("hidden_size", 0)
		if err != nil {
			return nil, nil, err
		}
		if hs <= 0 {
			// Optional in the spec, but every exporter writes it; derive from R.
			if r := x.konst(2); r != nil && len(r.shape) == 3 {
				hs = int64(r.shape[2])
			}
		}
		if hs <= 0 || hs > 1<<16 {
			return nil, nil, fmt.Errorf("hidden_size %d is missing or out of range", hs)
		}
		k.hidden = int(hs)
		dir := "forward"
		if a, err := x.attr("direction", onnxpb.AttributeProto_STRING); err != nil {
			return nil, nil, err
		} else if a != nil {
			dir = string(a.GetS())
		}
		switch dir {
		case "forward":
			k.dirs = 1
		case "reverse":
			k.dirs, k.reverse = 1, true
		case "bidirectional":
			k.dirs = 2
		default:
			return nil, nil, fmt.Errorf("direction %q is not forward, reverse or bidirectional", dir)
		}
		if k.layout, err = x.intAttr("layout", 0); err != nil {
			return nil, nil, err
		}
		if k.layout != 0 && k.layout != 1 {
			return nil, nil, fmt.Errorf("layout %d is not 0 or 1", k.layout)
		}
		if k.clip, err = x.floatAttr("clip", 0); err != nil {
			return nil, nil, err
		}
		if k.clip < 0 {
			return nil, nil, fmt.Errorf("clip %g is negative", k.clip)
		}
		if kind == kindGRU {
			lbr, err := x.intAttr("linear_before_reset", 0)
			if err != nil {
				return nil, nil, err
			}
			k.lbr = lbr != 0
		}
		if kind == kindLSTM {
			inf, err := x.intAttr("input_forget", 0)
			if err != nil {
				return nil, nil, err
			}
			k.inputForget = inf != 0
		}
		if err := k.compileActs(x); err != nil {
			return nil, nil, err
		}
		if kind == kindLSTM && !x.has(7) && k.clip == 0 && !k.inputForget {
			k.fast = true
			for _, acts := range k.acts {
				if acts[0].name != "sigmoid" || acts[1].name != "tanh" || acts[2].name != "tanh" {
					k.fast = false
				}
			}
		}
		// Constant parameters: lay them out now.
		if x.konst(1) != nil && x.konst(2) != nil && (!x.has(3) || x.konst(3) != nil) && (!x.has(7) || x.konst(7) != nil) {
			var b, p *value
			if x.has(3) {
				b = x.konst(3)
			}
			if x.has(7) {
				p = x.konst(7)
			}
			w, r := x.konst(1), x.konst(2)
			if len(w.shape) != 3 {
				return nil, nil, fmt.Errorf("W has shape %v, want [num_directions, %d·hidden, input]", w.shape, k.gates)
			}
			k.fixed = make([]rnnWeights, k.dirs)
			if err := k.layoutWeights(k.fixed, w, r, b, p, w.shape[2], func(n int) []float32 { return make([]float32, n) }); err != nil {
				return nil, nil, err
			}
		}
		k.sXP, k.sHP, k.sH, k.sC, k.sW, k.sGate = x.newScratch(), x.newScratch(), x.newScratch(), x.newScratch(), x.newScratch(), x.newScratch()
		k.sTile, k.sPack = x.newScratch(), x.newScratch()
		return k, []tensor.DType{tensor.Float, tensor.Float, tensor.Float}, nil
	}
}

func (k *rnnKernel) compileActs(x *nodeCtx) error {
	per := [...]int{1, 2, 3}[k.kind]
	defaults := [][]string{{"tanh"}, {"sigmoid", "tanh"}, {"sigmoid", "tanh", "tanh"}}[k.kind]
	var names []string
	if a, err := x.attr("activations", onnxpb.AttributeProto_STRINGS); err != nil {
		return err
	} else if a != nil {
		for _, s := range a.GetStrings() {
			names = append(names, strings.ToLower(string(s)))
		}
	}
	switch {
	case len(names) == 0:
		for range k.dirs {
			names = append(names, defaults...)
		}
	case len(names) == per && k.dirs == 2:
		names = append(names, names...)
	case len(names) != per*k.dirs:
		return fmt.Errorf("has %d activations, want %d", len(names), per*k.dirs)
	}
	var alphas, betas []float32
	if a, err := x.attr("activation_alpha", onnxpb.AttributeProto_FLOATS); err != nil {
		return err
	} else if a != nil {
		alphas = a.GetFloats()
	}
	if a, err := x.attr("activation_beta", onnxpb.AttributeProto_FLOATS); err != nil {
		return err
	} else if a != nil {
		betas = a.GetFloats()
	}
	// Alphas and betas are consumed in order by the activations that take them.
	ai, bi := 0, 0
	k.acts = make([][]rnnAct, k.dirs)
	for d := range k.dirs {
		for j := range per {
			name := names[d*per+j]
			def, ok := rnnActDefaults[name]
			if !ok {
				return fmt.Errorf("activation %q is not supported", name)
			}
			act := rnnAct{name: name, alpha: def.alpha, beta: def.beta}
			if def.usesAlpha && ai < len(alphas) {
				act.alpha = alphas[ai]
				ai++
			}
			if def.usesBeta && bi < len(betas) {
				act.beta = betas[bi]
				bi++
			}
			k.acts[d] = append(k.acts[d], act)
		}
	}
	return nil
}

// layoutWeights fills ws (one per direction) from W [D, G·H, I], R [D, G·H, H],
// B [D, 2·G·H] and P [D, 3H] (b and p may be nil), taking memory from get.
func (k *rnnKernel) layoutWeights(ws []rnnWeights, w, r, b, p *value, in int, get func(int) []float32) error {
	H, G, D := k.hidden, k.gates, k.dirs
	GH := G * H
	if !shapeIs(w.shape, D, GH, in) {
		return fmt.Errorf("W has shape %v, want [%d %d %d]", w.shape, D, GH, in)
	}
	if !shapeIs(r.shape, D, GH, H) {
		return fmt.Errorf("R has shape %v, want [%d %d %d]", r.shape, D, GH, H)
	}
	if b != nil && !shapeIs(b.shape, D, 2*GH) {
		return fmt.Errorf("B has shape %v, want [%d %d]", b.shape, D, 2*GH)
	}
	if p != nil && !shapeIs(p.shape, D, 3*H) {
		return fmt.Errorf("P has shape %v, want [%d %d]", p.shape, D, 3*H)
	}
	for d := range D {
		wt := &ws[d]
		wt.wP = get(packedBSize(in, GH))
		packB(wt.wP, w.f[d*GH*in:(d+1)*GH*in], in, GH, 1, in, 1)
		wt.rP = get(packedBSize(H, GH))
		packB(wt.rP, r.f[d*GH*H:(d+1)*GH*H], H, GH, 1, H, 1)
		if k.fast {
			scalePackedCols(wt.wP, in, GH, 3*H, 4*H, 2)
			scalePackedCols(wt.rP, H, GH, 3*H, 4*H, 2)
		}
		wt.rT = nil
		if k.kind == kindGRU && !k.lbr {
			wt.rT = transposeInto(get(H*GH), r.f[d*GH*H:(d+1)*GH*H], GH, H)
		}
		wt.bias = get(GH)
		clear(wt.bias)
		wt.rbh, wt.peep = nil, nil
		if b != nil {
			wb, rb := b.f[d*2*GH:d*2*GH+GH], b.f[d*2*GH+GH:(d+1)*2*GH]
			for j := range GH {
				wt.bias[j] = wb[j] + rb[j]
			}
			if k.kind == kindGRU && k.lbr {
				// h gate: Rbh is added to R·h before the reset gate scales it.
				wt.rbh = get(H)
				copy(wt.rbh, rb[2*H:3*H])
				for j := 2 * H; j < 3*H; j++ {
					wt.bias[j] = wb[j]
				}
			}
		}
		if k.fast {
			for j := 3 * H; j < 4*H; j++ {
				wt.bias[j] *= 2
			}
		}
		if k.kind == kindGRU && k.lbr && wt.rbh == nil {
			wt.rbh = get(H)
			clear(wt.rbh)
		}
		if p != nil {
			wt.peep = p.f[d*3*H : (d+1)*3*H]
		}
	}
	return nil
}

// scalePackedCols multiplies columns [c0, c1) of a k×n matrix packed by
// packB by f.
func scalePackedCols(p []float32, k, n, c0, c1 int, f float32) {
	for q := 0; q*gemmNR < n; q++ {
		panel := p[q*gemmNR*k : (q+1)*gemmNR*k]
		for kk := range k {
			for jj := range gemmNR {
				if col := q*gemmNR + jj; col >= c0 && col < c1 {
					panel[kk*gemmNR+jj] *= f
				}
			}
		}
	}
}

func shapeIs(s []int, want ...int) bool {
	if len(s) != len(want) {
		return false
	}
	for i := range s {
		if s[i] != want[i] {
			return false
		}
	}
	return true
}

// transposeInto writes the rows×cols matrix src transposed into dst.
func transposeInto(dst, src []float32, rows, cols int) []float32 {
	for i := range rows {
		for j := range cols {
			dst[j*rows+i] = src[i*cols+j]
		}
	}
	return dst
}

func (k *rnnKernel) run(st *state, nd *node) error {
	X := st.in(nd, 0)
	if len(X.shape) != 3 {
		return fmt.Errorf("X has shape %v, want rank 3", X.shape)
	}
	T, B, I := X.shape[0], X.shape[1], X.shape[2]
	if k.layout == 1 {
		T, B = B, T
	}
	H, G, D := k.hidden, k.gates, k.dirs
	GH := G * H
	ws := k.fixed
	if ws == nil {
		ws = make([]rnnWeights, D) // computed weights: laid out per call
		var b, p *value
		if v := st.in(nd, 3); v != nil {
			b = v
		}
		if v := st.in(nd, 7); v != nil && k.kind == kindLSTM {
			p = v
		}
		w, r := st.in(nd, 1), st.in(nd, 2)
		if len(w.shape) != 3 {
			return fmt.Errorf("W has shape %v, want rank 3", w.shape)
		}
		need := D * (packedBSize(I, GH) + packedBSize(H, GH) + H*GH + GH + H)
		buf := st.scratchF(k.sW, need)
		if err := k.layoutWeights(ws, w, r, b, p, I, func(n int) []float32 {
			s := buf[:n:n]
			buf = buf[n:]
			return s
		}); err != nil {
			return err
		}
	} else if len(ws[0].wP) != packedBSize(I, GH) {
		return fmt.Errorf("X has %d features, which do not fit the weights", I)
	}

	// sequence_lens, initial_h, initial_c.
	var seqLens []int64
	if v := st.in(nd, 4); v != nil {
		if !shapeIs(v.shape, B) {
			return fmt.Errorf("sequence_lens has shape %v, want [%d]", v.shape, B)
		}
		for _, l := range v.i {
			if l < 0 || l > int64(T) {
				return fmt.Errorf("sequence length %d is outside [0, %d]", l, T)
			}
		}
		seqLens = v.i
	}
	stateShape := [3]int{D, B, H}
	if k.layout == 1 {
		stateShape = [3]int{B, D, H}
	}
	var init [2]*value
	for j, idx := range []int{5, 6} {
		if idx == 6 && k.kind != kindLSTM {
			break
		}
		if v := st.in(nd, idx); v != nil {
			if !shapeIs(v.shape, stateShape[:]...) {
				return fmt.Errorf("initial state %d has shape %v, want %v", idx, v.shape, stateShape)
			}
			init[j] = v
		}
	}

	// Outputs.
	var Y, Yh, Yc []float32
	var err error
	if len(nd.out) > 0 && nd.out[0] >= 0 {
		sh := st.outShape(nd.out[0], 4)
		sh[0], sh[1], sh[2], sh[3] = T, D, B, H
		if k.layout == 1 {
			sh[0], sh[1], sh[2] = B, T, D
		}
		if Y, err = st.allocF(nd.out[0]); err != nil {
			return err
		}
		if seqLens != nil {
			clear(Y) // steps past a sequence's length stay zero
		}
	}
	if len(nd.out) > 1 && nd.out[1] >= 0 {
		copy(st.outShape(nd.out[1], 3), stateShape[:])
		if Yh, err = st.allocF(nd.out[1]); err != nil {
			return err
		}
	}
	if len(nd.out) > 2 && nd.out[2] >= 0 {
		copy(st.outShape(nd.out[2], 3), stateShape[:])
		if Yc, err = st.allocF(nd.out[2]); err != nil {
			return err
		}
	}
	if T*B*GH > st.limit || B*GH > st.limit {
		return fmt.Errorf("X of shape %v needs more than %d elements of workspace", X.shape, st.limit)
	}

	xp := st.scratchF(k.sXP, T*B*GH)
	hp := st.scratchF(k.sHP, B*GH)
	h := st.scratchF(k.sH, B*H)
	c := st.scratchF(k.sC, B*H)
	gate := st.scratchF(k.sGate, 2*H)
	tile := st.scratchF(k.sTile, gemmTile)
	pa := st.scratchF(k.sPack, max(packedASize(T*B, I), packedASize(B, H)))
	for d := range D {
		wt := &ws[d]
		// Input projection for every step: rows in X's own order.
		packA(pa, X.f, T*B, I, I, 1, 1)
		xcall := gemmCall{m: T * B, n: GH, k: I, pa: pa, pb: wt.wP, c: xp, ldc: GH, colBias: wt.bias, tile: tile}
		xcall.cols(0, ceilDiv(GH, gemmNR), 0)
		hcall := gemmCall{m: B, n: GH, k: H, pa: pa, pb: wt.rP, c: hp, ldc: GH, tile: tile}
		// Initial state.
		for b := range B {
			for j, dst := range [][]float32{h, c} {
				row := dst[b*H : (b+1)*H]
				if init[j] == nil {
					clear(row)
					continue
				}
				copy(row, init[j].f[k.stateOff(d, b, B)*H:][:H])
			}
		}
		reverse := k.reverse || d == 1
		for s := range T {
			// hp = h·Rᵀ for the whole batch (rows past their length are
			// computed and ignored).
			packA(pa, h, B, H, H, 1, 1)
			hcall.cols(0, ceilDiv(GH, gemmNR), 0)
			for b := range B {
				L := T
				if seqLens != nil {
					L = int(seqLens[b])
				}
				if s >= L {
					continue
				}
				t := s
				if reverse {
					t = L - 1 - s
				}
				xrow := t*B + b
				if k.layout == 1 {
					xrow = b*T + t
				}
				g := xp[xrow*GH : (xrow+1)*GH]
				hr := hp[b*GH : (b+1)*GH]
				hb := h[b*H : (b+1)*H]
				switch k.kind {
				case kindRNN:
					k.stepRNN(d, g, hr, hb)
				case kindGRU:
					k.stepGRU(d, wt, g, hr, hb, gate)
				case kindLSTM:
					if k.fast {
						k.stepLSTMFast(g, hr, hb, c[b*H:(b+1)*H])
					} else {
						k.stepLSTM(d, wt, g, hr, hb, c[b*H:(b+1)*H])
					}
				}
				if Y != nil {
					off := ((t*D+d)*B + b) * H
					if k.layout == 1 {
						off = ((b*T+t)*D + d) * H
					}
					copy(Y[off:off+H], hb)
				}
			}
		}
		for b := range B {
			off := k.stateOff(d, b, B) * H
			if Yh != nil {
				copy(Yh[off:off+H], h[b*H:(b+1)*H])
			}
			if Yc != nil {
				copy(Yc[off:off+H], c[b*H:(b+1)*H])
			}
		}
	}
	return nil
}

// stateOff is the row of direction d, batch b in an initial or final state.
func (k *rnnKernel) stateOff(d, b, B int) int {
	if k.layout == 1 {
		return b*k.dirs + d
	}
	return d*B + b
}

func (k *rnnKernel) clipped(v float32) float32 {
	if k.clip > 0 {
		return min(max(v, -k.clip), k.clip)
	}
	return v
}

// stepRNN: h = f(x·Wᵀ + h·Rᵀ + Wb + Rb). g is overwritten.
func (k *rnnKernel) stepRNN(d int, g, hr, h []float32) {
	H := k.hidden
	g, hr = g[:H], hr[:H]
	for j := range H {
		h[j] = k.clipped(g[j] + hr[j])
	}
	k.acts[d][0].apply(h[:H])
}

// stepGRU: gates z, r, h in that order in g and hr. gate holds 2H floats.
func (k *rnnKernel) stepGRU(d int, wt *rnnWeights, g, hr, h, gate []float32) {
	H := k.hidden
	f, act := k.acts[d][0], k.acts[d][1]
	z, r := gate[:H], gate[H:2*H]
	for j := range H {
		z[j] = k.clipped(g[j] + hr[j])
		r[j] = k.clipped(g[H+j] + hr[H+j])
	}
	f.apply(gate[:2*H]) // z and r
	hh := g[2*H : 3*H]  // reuse the input projection row for the candidate
	if k.lbr {
		rb := wt.rbh[:H]
		for j := range H {
			hh[j] = k.clipped(hh[j] + r[j]*(hr[2*H+j]+rb[j]))
		}
	} else {
		// (r ⊙ h)·Rhᵀ: a product of its own, since r scales h before R.
		rT := wt.rT
		GH := 3 * H
		for j := range H {
			hh[j] = k.clipped(hh[j] + rhDot(r, h, rT, GH, 2*H+j))
		}
	}
	act.apply(hh)
	for j := range H {
		h[j] = (1-z[j])*hh[j] + z[j]*h[j]
	}
}

// rhDot is Σ_i r[i]·h[i]·Rᵀ[i, col].
func rhDot(r, h, rT []float32, stride, col int) float32 {
	var s float32
	for i := range r {
		s += r[i] * h[i] * rT[i*stride+col]
	}
	return s
}

// stepLSTMFast is stepLSTM for k.fast: one logistic call over the four gates
// (the cell gate's input doubled at layout, so 2σ − 1 is its tanh), one tanh.
func (k *rnnKernel) stepLSTMFast(g, hr, h, c []float32) {
	H := k.hidden
	g, hr = g[:4*H], hr[:4*H]
	for j := range g {
		g[j] += hr[j]
	}
	tanhVec(g, g, 0.5, 0.5, 0.5)
	gi, gog, gf, gc := g[:H], g[H:2*H], g[2*H:3*H], g[3*H:4*H]
	c, h = c[:H], h[:H]
	for j := range c {
		c[j] = gf[j]*c[j] + gi[j]*(2*gc[j]-1)
	}
	tanhVec(h, c, 1, 1, 0)
	for j := range h {
		h[j] *= gog[j]
	}
}

// stepLSTM: gates i, o, f, c in that order in g and hr.
func (k *rnnKernel) stepLSTM(d int, wt *rnnWeights, g, hr, h, c []float32) {
	H := k.hidden
	f, gAct, hAct := k.acts[d][0], k.acts[d][1], k.acts[d][2]
	gi, gog, gf, gc := g[:H], g[H:2*H], g[2*H:3*H], g[3*H:4*H]
	hi, ho, hf, hc := hr[:H], hr[H:2*H], hr[2*H:3*H], hr[3*H:4*H]
	var pi, po, pf []float32
	if wt.peep != nil {
		pi, po, pf = wt.peep[:H], wt.peep[H:2*H], wt.peep[2*H:3*H]
	}
	c = c[:H]
	for j := range H {
		vi := gi[j] + hi[j]
		vf := gf[j] + hf[j]
		if pi != nil {
			vi += pi[j] * c[j]
			vf += pf[j] * c[j]
		}
		gi[j] = k.clipped(vi)
		gf[j] = k.clipped(vf)
		gc[j] = k.clipped(gc[j] + hc[j])
	}
	f.apply(gi)
	if k.inputForget {
		for j := range H {
			gf[j] = 1 - gi[j]
		}
	} else {
		f.apply(gf)
	}
	gAct.apply(gc)
	for j := range H {
		c[j] = gf[j]*c[j] + gi[j]*gc[j]
	}
	for j := range H {
		vo := gog[j] + ho[j]
		if po != nil {
			vo += po[j] * c[j]
		}
		gog[j] = k.clipped(vo)
	}
	f.apply(gog)
	copy(h[:H], c)
	hAct.apply(h[:H])
	for j := range H {
		h[j] *= gog[j]
	}
}

func init() {
	ops["RNN"] = compileRNN(kindRNN)
	ops["GRU"] = compileRNN(kindGRU)
	ops["LSTM"] = compileRNN(kindLSTM)
}
