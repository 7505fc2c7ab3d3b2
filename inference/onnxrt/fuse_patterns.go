package onnxrt

import (
	"slices"

	"github.com/infergate/infergate/inference/tensor"
)

// Element-wise chains that exporters write out node by node — GELU as
// Div/Erf/Add/Mul/Mul, LayerNorm before opset 17 as ReduceMean/Sub/Pow/
// ReduceMean/Add/Sqrt/Div/Mul/Add — become one kernel each at load, so the
// run makes one pass over the values instead of one per node. A chain is
// taken only when nothing outside it reads its intermediate values and its
// constants are the ones the pattern means; anything else runs as exported.

// graphIndex says who produces and who reads each value of c.nodes.
type graphIndex struct {
	uses      map[int]int
	consumers map[int][]int
	producer  map[int]int
	graphOut  map[int]bool
}

func (c *compiler) index(graphOut map[int]bool) *graphIndex {
	g := &graphIndex{uses: map[int]int{}, consumers: map[int][]int{}, producer: map[int]int{}, graphOut: graphOut}
	for i, n := range c.nodes {
		for _, id := range n.in {
			if id >= 0 {
				g.uses[id]++
				g.consumers[id] = append(g.consumers[id], i)
			}
		}
		for _, id := range n.out {
			if id >= 0 {
				g.producer[id] = i
			}
		}
	}
	return g
}

// only returns the node that is id's single reader, if id is read once and
// is not a graph output.
func (g *graphIndex) only(id int) (int, bool) {
	if id < 0 || g.uses[id] != 1 || g.graphOut[id] {
		return 0, false
	}
	return g.consumers[id][0], true
}

// scalarConst returns the value of id if it is a rank-0 float constant. Only
// rank 0 is taken: a [1] constant can raise the rank of a rank-0 operand,
// which the fused kernel would not.
func scalarConst(consts []*value, id int) (float32, bool) {
	if id < 0 || consts[id] == nil {
		return 0, false
	}
	v := consts[id]
	if len(v.shape) != 0 {
		return 0, false
	}
	switch {
	case v.dt == tensor.Float && len(v.f) == 1:
		return v.f[0], true
	case v.dt == tensor.Int64 && len(v.i) == 1:
		return float32(v.i[0]), true
	}
	return 0, false
}

// binaryWith reports whether node n is the binary op with id as one operand
// (as the first operand if ordered) and returns the other operand.
func binaryWith(n *node, op binOp, id int, ordered bool) (int, bool) {
	k, ok := n.k.(*binaryKernel)
	if !ok || k.op != op || len(n.in) != 2 {
		return 0, false
	}
	switch {
	case n.in[0] == id && n.in[1] != id:
		return n.in[1], true
	case !ordered && n.in[1] == id && n.in[0] != id:
		return n.in[0], true
	}
	return 0, false
}

func (c *compiler) dropNodes(removed []bool) {
	kept := c.nodes[:0]
	for i, n := range c.nodes {
		if !removed[i] {
			kept = append(kept, n)
		}
	}
	c.nodes = kept
}

// fuseGelu replaces h·(erf(h/c)+1)·0.5 — torch's GELU: Div(h, c), Erf,
// Add 1, Mul by h, Mul 0.5, the commutative ops either way round — by one
// Gelu node, an element-wise activation that a dense layer before it then
// absorbs. It computes the same operations in the same order.
func (c *compiler) fuseGelu(graphOut map[int]bool) {
	g := c.index(graphOut)
	removed := make([]bool, len(c.nodes))
	for ie, e := range c.nodes {
		if u, ok := e.k.(*unaryKernel); !ok || u.op != uErf || removed[ie] {
			continue
		}
		id, ok := g.producer[e.in[0]]
		if !ok || removed[id] {
			continue
		}
		div := c.nodes[id]
		if j, ok := g.only(div.out[0]); !ok || j != ie {
			continue
		}
		h := div.in[0]
		cid, ok := binaryWith(div, opDiv, h, true)
		if !ok {
			continue
		}
		divisor, ok := scalarConst(c.consts, cid)
		if !ok {
			continue
		}
		ia, ok := g.only(e.out[0])
		if !ok {
			continue
		}
		one, ok := binaryWith(c.nodes[ia], opAdd, e.out[0], false)
		if v, isC := scalarConst(c.consts, one); !ok || !isC || v != 1 {
			continue
		}
		im, ok := g.only(c.nodes[ia].out[0])
		if !ok {
			continue
		}
		other, ok := binaryWith(c.nodes[im], opMul, c.nodes[ia].out[0], false)
		if !ok || other != h {
			continue
		}
		ih, ok := g.only(c.nodes[im].out[0])
		if !ok {
			continue
		}
		half, ok := binaryWith(c.nodes[ih], opMul, c.nodes[im].out[0], false)
		if v, isC := scalarConst(c.consts, half); !ok || !isC || v != 0.5 {
			continue
		}
		last := c.nodes[ih]
		last.k = &unaryKernel{op: uGelu, alpha: divisor}
		last.in = []int{h}
		last.op = "Gelu"
		for _, j := range []int{id, ie, ia, im} {
			removed[j] = true
		}
	}
	c.dropNodes(removed)
}

// layerNormChain is LayerNorm as opset 13 exports it — mean over the last
// axis, the centred values, the mean of their squares, plus ε, square root,
// divide, then optionally × scale and + bias ([D] constants) — run as
// LayerNormalization. When the shapes are not the ones that makes equal
// (the last axis does not match the scale or bias, a scalar input), the
// chain's own nodes run instead, so the result is always the chain's.
type layerNormChain struct {
	ln   layerNormKernel
	orig []*node
}

func (k *layerNormChain) run(st *state, nd *node) error {
	x := st.in(nd, 0)
	r := len(x.shape)
	fits := r > 0
	for _, i := range []int{k.ln.scaleIn, k.ln.biasIn} {
		if fits && i >= 0 && len(st.in(nd, i).f) != x.shape[r-1] {
			fits = false
		}
	}
	if fits {
		return k.ln.run(st, nd)
	}
	for _, n := range k.orig {
		if err := n.k.run(st, n); err != nil {
			return err
		}
	}
	return nil
}

// lastAxisMean reports whether node n is ReduceMean over the last axis only,
// keeping dims.
func lastAxisMean(n *node, consts []*value) bool {
	k, ok := n.k.(*reduceKernel)
	if !ok || k.op != rMean || !k.keepDims {
		return false
	}
	axes := k.axes
	if k.axesInput {
		if len(n.in) < 2 || n.in[1] < 0 || consts[n.in[1]] == nil {
			return false
		}
		axes = consts[n.in[1]].i
	}
	return slices.Equal(axes, []int64{-1})
}

// fuseLayerNorm finds the opset-13 LayerNorm chain and runs it as one
// layerNormChain node.
func (c *compiler) fuseLayerNorm(graphOut map[int]bool) {
	g := c.index(graphOut)
	removed := make([]bool, len(c.nodes))
	vec := func(id int) bool {
		v := c.consts[id]
		return id >= 0 && v != nil && v.dt == tensor.Float && len(v.shape) == 1
	}
	for i0, mean := range c.nodes {
		if removed[i0] || !lastAxisMean(mean, c.consts) {
			continue
		}
		x := mean.in[0]
		isub, ok := g.only(mean.out[0])
		if !ok {
			continue
		}
		sub := c.nodes[isub]
		if k, ok := sub.k.(*binaryKernel); !ok || k.op != opSub || sub.in[0] != x || sub.in[1] != mean.out[0] {
			continue
		}
		d := sub.out[0]
		if g.uses[d] != 2 || g.graphOut[d] {
			continue
		}
		var ipow, idiv = -1, -1
		for _, j := range g.consumers[d] {
			switch k, _ := c.nodes[j].k.(*binaryKernel); {
			case k != nil && k.op == opPow && c.nodes[j].in[0] == d:
				ipow = j
			case k != nil && k.op == opDiv && c.nodes[j].in[0] == d:
				idiv = j
			}
		}
		if ipow < 0 || idiv < 0 {
			continue
		}
		if v, ok := scalarConst(c.consts, c.nodes[ipow].in[1]); !ok || v != 2 {
			continue
		}
		imean2, ok := g.only(c.nodes[ipow].out[0])
		if !ok || !lastAxisMean(c.nodes[imean2], c.consts) || c.nodes[imean2].in[0] != c.nodes[ipow].out[0] {
			continue
		}
		iadd, ok := g.only(c.nodes[imean2].out[0])
		if !ok {
			continue
		}
		epsID, ok := binaryWith(c.nodes[iadd], opAdd, c.nodes[imean2].out[0], false)
		if !ok {
			continue
		}
		eps, ok := scalarConst(c.consts, epsID)
		if !ok {
			continue
		}
		isqrt, ok := g.only(c.nodes[iadd].out[0])
		if !ok {
			continue
		}
		if u, ok := c.nodes[isqrt].k.(*unaryKernel); !ok || u.op != uSqrt {
			continue
		}
		if j, ok := g.only(c.nodes[isqrt].out[0]); !ok || j != idiv || c.nodes[idiv].in[1] != c.nodes[isqrt].out[0] {
			continue
		}
		chain := []int{i0, isub, ipow, imean2, iadd, isqrt, idiv}
		last := idiv
		scale, bias := -1, -1
		if j, ok := g.only(c.nodes[last].out[0]); ok {
			if s, ok := binaryWith(c.nodes[j], opMul, c.nodes[last].out[0], false); ok && vec(s) {
				scale, last = s, j
				chain = append(chain, j)
				if j, ok := g.only(c.nodes[last].out[0]); ok {
					if b, ok := binaryWith(c.nodes[j], opAdd, c.nodes[last].out[0], false); ok && vec(b) {
						bias, last = b, j
						chain = append(chain, j)
					}
				}
			}
		}
		slices.Sort(chain)
		orig := make([]*node, len(chain))
		for i, j := range chain {
			orig[i] = c.nodes[j]
		}
		fused := &node{
			name: c.nodes[last].name,
			op:   "LayerNorm(" + mean.name + "…)",
			in:   []int{x, scale, bias},
			out:  c.nodes[last].out,
			k:    &layerNormChain{ln: layerNormKernel{axis: -1, eps: eps, scaleIn: 1, biasIn: 2}, orig: orig},
		}
		if scale < 0 {
			fused.k.(*layerNormChain).ln.scaleIn = -1
		}
		if bias < 0 {
			fused.k.(*layerNormChain).ln.biasIn = -1
		}
		for _, j := range chain {
			removed[j] = true
		}
		removed[last] = false
		c.nodes[last] = fused
	}
	c.dropNodes(removed)
}
