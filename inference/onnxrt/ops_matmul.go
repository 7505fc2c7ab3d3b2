package onnxrt

import (
	"fmt"

	"github.com/infergate/infergate/inference/tensor"
)

// matMulGeneric is numpy-style MatMul of two computed tensors: 1-D operands
// are promoted, leading (batch) dims broadcast. It is attention's q·kᵀ and
// att·v: many small products whose operands torch exports behind Transposes
// (heads split out of the token rows) and whose result goes through another.
// fuseTransposes folds those in at load, so the operands are read, and the
// result written, through permuted strides and the transposed copies are
// never made; a following multiplication or division by a scalar constant
// (the 1/√d scale) is folded in by absorb.
type matMulGeneric struct {
	// permA, permB: the operand is the input of a Transpose by this perm
	// (nil perm with on: reversed axes, the Transpose default).
	permA, permB fusedPerm
	// permOut, if set, stores the result transposed by it; its last axis is
	// the product's last, so rows stay contiguous.
	permOut []int
	// scale: the result is divided (scaleDiv) or multiplied by scale.
	scaled   bool
	scaleDiv bool
	scale    float32
	// scratch: packed A and B, the GEMM's edge tile
	sPackA, sPackB, sTile int
}

type fusedPerm struct {
	on   bool
	perm []int64
}

// matMulMaxDims is the rank up to which the kernel keeps its shapes and
// strides on the stack; higher ranks allocate.
const matMulMaxDims = 8

// view gives shape and element strides of an operand read through p.
func (p fusedPerm) view(shape []int, shBuf, stBuf []int) ([]int, []int, error) {
	r := len(shape)
	sh, str := shBuf[:0], stBuf[:0]
	for range r {
		sh = append(sh, 0)
		str = append(str, 0)
	}
	s := 1
	for d := r - 1; d >= 0; d-- {
		str[d] = s
		s *= shape[d]
	}
	if !p.on {
		copy(sh, shape)
		return sh, str, nil
	}
	if p.perm != nil && len(p.perm) != r {
		return nil, nil, fmt.Errorf("perm %v of the Transpose before it does not fit rank %d", p.perm, r)
	}
	var seenBuf [matMulMaxDims]bool
	seen := seenBuf[:0]
	for range r {
		seen = append(seen, false)
	}
	var physBuf [matMulMaxDims]int
	phys := append(physBuf[:0], str...)
	for i := range r {
		q := r - 1 - i
		if p.perm != nil {
			q = int(p.perm[i])
			if q < 0 || q >= r || seen[q] {
				return nil, nil, fmt.Errorf("perm %v of the Transpose before it is not a permutation of %d axes", p.perm, r)
			}
			seen[q] = true
		}
		sh[i], str[i] = shape[q], phys[q]
	}
	return sh, str, nil
}

func (k *matMulGeneric) run(st *state, nd *node) error {
	a, b := st.in(nd, 0), st.in(nd, 1)
	var asBuf, saBuf, bsBuf, sbBuf [matMulMaxDims]int
	as, sa, err := k.permA.view(a.shape, asBuf[:], saBuf[:])
	if err != nil {
		return err
	}
	bs, sb, err := k.permB.view(b.shape, bsBuf[:], sbBuf[:])
	if err != nil {
		return err
	}
	if len(as) == 0 || len(bs) == 0 {
		return fmt.Errorf("MatMul of a scalar: shapes %s and %s", intsString(as), intsString(bs))
	}
	// A is m×kk with strides rsA, csA; B kk×n with rsB, csB.
	var m, kk, n, rsA, csA, rsB, csB int
	ra, rb := len(as), len(bs)
	if ra == 1 {
		m, kk, csA = 1, as[0], sa[0]
	} else {
		m, kk, rsA, csA = as[ra-2], as[ra-1], sa[ra-2], sa[ra-1]
	}
	kb := bs[0]
	if rb == 1 {
		n, rsB = 1, sb[0]
	} else {
		kb, n, rsB, csB = bs[rb-2], bs[rb-1], sb[rb-2], sb[rb-1]
	}
	if kb != kk {
		return fmt.Errorf("shapes %s and %s cannot be multiplied", intsString(as), intsString(bs))
	}
	aBatch, bBatch := as[:max(ra-2, 0)], bs[:max(rb-2, 0)]
	saB, sbB := sa[:max(ra-2, 0)], sb[:max(rb-2, 0)]

	// The product's shape: broadcast batch dims, then m (unless A was 1-D),
	// then n (unless B was 1-D).
	nbd := max(len(aBatch), len(bBatch))
	var lshBuf [matMulMaxDims]int
	lsh := lshBuf[:0]
	for i := range nbd {
		da, db := 1, 1
		if j := i - (nbd - len(aBatch)); j >= 0 {
			da = aBatch[j]
		}
		if j := i - (nbd - len(bBatch)); j >= 0 {
			db = bBatch[j]
		}
		switch {
		case da == db, db == 1:
			lsh = append(lsh, da)
		case da == 1:
			lsh = append(lsh, db)
		default:
			return fmt.Errorf("shapes %s and %s cannot be multiplied: batch dims do not broadcast", intsString(as), intsString(bs))
		}
	}
	if ra > 1 {
		lsh = append(lsh, m)
	}
	if rb > 1 {
		lsh = append(lsh, n)
	}
	r := len(lsh)
	out := nd.out[0]
	// The result's strides in the logical order (lsh); with permOut the
	// stored value is lsh permuted.
	var scBuf [matMulMaxDims]int
	sc := scBuf[:0]
	for range r {
		sc = append(sc, 0)
	}
	if k.permOut == nil {
		st.setShape(out, lsh)
		s := 1
		for d := r - 1; d >= 0; d-- {
			sc[d] = s
			s *= lsh[d]
		}
	} else {
		if len(k.permOut) != r {
			return fmt.Errorf("perm %v of the Transpose after it does not fit the product's rank %d", k.permOut, r)
		}
		osh := st.outShape(out, r)
		for i, p := range k.permOut {
			osh[i] = lsh[p]
		}
		s := 1
		for d := r - 1; d >= 0; d-- {
			sc[k.permOut[d]] = s
			s *= osh[d]
		}
	}
	o, err := st.allocF(out)
	if err != nil {
		return err
	}
	if len(o) == 0 {
		return nil
	}
	rsC := 0
	if ra > 1 {
		rsC = sc[nbd]
	}
	// Batch strides of each operand over the broadcast batch dims (0 where
	// the operand has no such dim or size 1).
	var bdBuf, bsaBuf, bsbBuf, bscBuf, cntBuf [matMulMaxDims]int
	bdims, bsa, bsb, bsc, cnt := bdBuf[:0], bsaBuf[:0], bsbBuf[:0], bscBuf[:0], cntBuf[:0]
	for i := range nbd {
		x, y := 0, 0
		if j := i - (nbd - len(aBatch)); j >= 0 && aBatch[j] != 1 {
			x = saB[j]
		}
		if j := i - (nbd - len(bBatch)); j >= 0 && bBatch[j] != 1 {
			y = sbB[j]
		}
		bdims, bsa, bsb, bsc, cnt = append(bdims, lsh[i]), append(bsa, x), append(bsb, y), append(bsc, sc[i]), append(cnt, 0)
	}
	nb := 1
	for _, d := range bdims {
		nb *= d
	}
	useGemm := m >= 4 && m*n >= 64 && kk > 0
	var pa, pb, tile []float32
	// A with contiguous rows is read in place.
	aRows := csA == 1
	if useGemm {
		if aRows {
			pa = st.scratchF(k.sPackA, gemmMR*kk)
		} else {
			pa = st.scratchF(k.sPackA, packedASize(m, kk))
		}
		pb = st.scratchF(k.sPackB, packedBSize(kk, n))
		tile = st.scratchF(k.sTile, gemmTile)
	}
	offA, offB, offC := 0, 0, 0
	lastB := -1
	for range nb {
		c := o[offC:]
		if useGemm {
			if offB != lastB {
				packB(pb, b.f[offB:], kk, n, rsB, csB, 1)
				lastB = offB
			}
			call := gemmCall{m: m, n: n, k: kk, pa: pa, pb: pb, c: c, ldc: rsC, tile: tile}
			if aRows {
				call.a, call.lda = a.f[offA:], rsA
			} else {
				packA(pa, a.f[offA:], m, kk, rsA, csA, 1)
			}
			call.cols(0, ceilDiv(n, gemmNR), 0)
		} else {
			matMulSmall(c, a.f[offA:], b.f[offB:], m, kk, n, rsA, csA, rsB, csB, rsC)
		}
		if k.scaled {
			for i := range m {
				row := c[i*rsC : i*rsC+n]
				if k.scaleDiv {
					vs(opDiv, row, row, k.scale)
				} else {
					vs(opMul, row, row, k.scale)
				}
			}
		}
		for d := nbd - 1; d >= 0; d-- {
			cnt[d]++
			offA += bsa[d]
			offB += bsb[d]
			offC += bsc[d]
			if cnt[d] < bdims[d] {
				break
			}
			offA -= bsa[d] * bdims[d]
			offB -= bsb[d] * bdims[d]
			offC -= bsc[d] * bdims[d]
			cnt[d] = 0
		}
	}
	return nil
}

// matMulSmall is C = A·B for products too small for the packed GEMM (a
// vector times a matrix), all operands strided; C's columns are contiguous.
func matMulSmall(c, a, b []float32, m, kk, n, rsA, csA, rsB, csB, rsC int) {
	for i := range m {
		row := c[i*rsC : i*rsC+n]
		clear(row)
		for p := range kk {
			x := a[i*rsA+p*csA]
			bp := b[p*rsB:]
			if csB == 1 {
				bp = bp[:n]
				for j, y := range bp {
					row[j] += x * y
				}
				continue
			}
			for j := range row {
				row[j] += x * bp[j*csB]
			}
		}
	}
}

// absorb folds a following multiplication or division of the product by a
// scalar constant (attention's 1/√d) into the product. Only a rank-0
// constant is taken: one of rank ≥ 1 may change the result's rank.
func (k *matMulGeneric) absorb(next *node, out int, consts []*value) bool {
	bk, ok := next.k.(*binaryKernel)
	if !ok || k.scaled || (bk.op != opMul && bk.op != opDiv) {
		return false
	}
	other := next.in[1]
	if other == out {
		if bk.op == opDiv {
			return false // c / product
		}
		other = next.in[0]
	}
	if other == out || other < 0 {
		return false
	}
	c := consts[other]
	if c == nil || c.dt != tensor.Float || len(c.shape) != 0 || len(c.f) != 1 {
		return false
	}
	k.scaled, k.scaleDiv, k.scale = true, bk.op == opDiv, c.f[0]
	return true
}

// fuseTransposes folds Transposes into the MatMuls of computed tensors next
// to them when nothing else reads the transposed value: a Transpose feeding
// operand A or B (any perm), and one the product feeds whose perm keeps the
// last axis last (so the product's rows stay contiguous in the stored
// result).
func (c *compiler) fuseTransposes(graphOut map[int]bool) {
	uses := make(map[int]int)
	producer := make(map[int]int)
	consumer := make(map[int]int)
	for i, n := range c.nodes {
		for _, id := range n.in {
			if id >= 0 {
				uses[id]++
				consumer[id] = i
			}
		}
		for _, id := range n.out {
			if id >= 0 {
				producer[id] = i
			}
		}
	}
	removed := make([]bool, len(c.nodes))
	single := func(id int) bool { return id >= 0 && uses[id] == 1 && !graphOut[id] }
	for _, n := range c.nodes {
		mm, ok := n.k.(*matMulGeneric)
		if !ok {
			continue
		}
		for i, fp := range []*fusedPerm{&mm.permA, &mm.permB} {
			id := n.in[i]
			if !single(id) {
				continue
			}
			j, ok := producer[id]
			if !ok || removed[j] {
				continue
			}
			t, ok := c.nodes[j].k.(*transposeKernel)
			if !ok || c.nodes[j].in[0] < 0 {
				continue
			}
			*fp = fusedPerm{on: true, perm: t.perm}
			n.in[i] = c.nodes[j].in[0]
			n.op = "Transpose+" + n.op
			removed[j] = true
		}
		id := n.out[0]
		if !single(id) {
			continue
		}
		j := consumer[id]
		t, ok := c.nodes[j].k.(*transposeKernel)
		if !ok || len(t.perm) < 2 || t.perm[len(t.perm)-1] != int64(len(t.perm)-1) || !validPerm(t.perm) {
			continue
		}
		mm.permOut = make([]int, len(t.perm))
		for i, p := range t.perm {
			mm.permOut[i] = int(p)
		}
		n.op += "+Transpose"
		n.out = c.nodes[j].out
		removed[j] = true
	}
	kept := c.nodes[:0]
	for i, n := range c.nodes {
		if !removed[i] {
			kept = append(kept, n)
		}
	}
	c.nodes = kept
}

func validPerm(perm []int64) bool {
	seen := make([]bool, len(perm))
	for _, p := range perm {
		if p < 0 || int(p) >= len(perm) || seen[p] {
			return false
		}
		seen[p] = true
	}
	return true
}
