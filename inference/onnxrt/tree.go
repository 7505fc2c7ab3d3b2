package onnxrt

import (
	"errors"
	"fmt"
	"math"

	"github.com/infergate/infergate/inference/tensor"
)

// treeEnsemble is a forest flattened into arrays: every split node of every
// tree in one slice (children by index), every leaf's (target, weight) pairs
// in another. The ONNX tree operators and the XGBoost loader all build one.
type treeEnsemble struct {
	nodes      []treeNode
	roots      []int32   // per tree: a node index, or ^leaf for a one-leaf tree
	leafOff    []int32   // leaf l's pairs are [leafOff[l], leafOff[l+1])
	leafTarget []int32   // target (or class) index of each pair
	leafWeight []float32 // weight of each pair
	sets       [][]float32
	nFeatures  int
	nTargets   int
	agg, post  uint8
	base       []float32 // added per target after aggregation; nil for none
}

type treeNode struct {
	split    float32
	feature  int32
	next     [2]int32 // [false, true]: a node index, or ^leaf
	mode     uint8
	missTrue bool // a NaN feature takes the true branch
	set      int32
}

// Split modes, numbered as TreeEnsemble (ai.onnx.ml 5) numbers them.
const (
	modeLEQ uint8 = iota
	modeLT
	modeGTE
	modeGT
	modeEQ
	modeNEQ
	modeMember
)

// Aggregate functions.
const (
	aggSum uint8 = iota
	aggAverage
	aggMin
	aggMax
)

// maxTreeItems bounds the nodes and leaves of one ensemble, so a hostile
// model cannot make Load allocate without bound.
const maxTreeItems = 1 << 24

// predict writes the aggregated, base-shifted (not post-transformed) scores
// for one row x into out (nTargets long).
func (e *treeEnsemble) predict(x, out []float32) {
	switch e.agg {
	case aggMin:
		for i := range out {
			out[i] = float32(math.Inf(1))
		}
	case aggMax:
		for i := range out {
			out[i] = float32(math.Inf(-1))
		}
	default:
		clear(out)
	}
	nodes := e.nodes
	for _, r := range e.roots {
		i := r
		for i >= 0 {
			n := &nodes[i]
			v := x[n.feature]
			var t bool
			switch n.mode {
			case modeLEQ:
				t = v <= n.split
			case modeLT:
				t = v < n.split
			case modeGTE:
				t = v >= n.split
			case modeGT:
				t = v > n.split
			case modeEQ:
				t = v == n.split
			case modeNEQ:
				t = v != n.split
			case modeMember:
				for _, m := range e.sets[n.set] {
					if v == m {
						t = true
						break
					}
				}
			}
			if n.missTrue && v != v {
				t = true
			}
			if t {
				i = n.next[1]
			} else {
				i = n.next[0]
			}
		}
		l := ^i
		for j := e.leafOff[l]; j < e.leafOff[l+1]; j++ {
			tg, w := e.leafTarget[j], e.leafWeight[j]
			switch e.agg {
			case aggMin:
				out[tg] = min(out[tg], w)
			case aggMax:
				out[tg] = max(out[tg], w)
			default:
				out[tg] += w
			}
		}
	}
	switch e.agg {
	case aggAverage:
		if len(e.roots) > 0 {
			inv := 1 / float32(len(e.roots))
			for i := range out {
				out[i] *= inv
			}
		}
	case aggMin, aggMax:
		for i, v := range out {
			if math.IsInf(float64(v), 0) {
				out[i] = 0 // no tree scored this target
			}
		}
	}
	if len(e.base) == len(out) {
		for i, b := range e.base {
			out[i] += b
		}
	}
}

// setTargets fixes the number of targets (or classes) and checks every leaf
// and base value against it.
func (e *treeEnsemble) setTargets(n int) error {
	for _, t := range e.leafTarget {
		if t < 0 || int(t) >= n {
			return fmt.Errorf("a leaf adds to target %d, the model has %d", t, n)
		}
	}
	if e.base != nil && len(e.base) != n {
		return fmt.Errorf("%d base values for %d targets", len(e.base), n)
	}
	e.nTargets = n
	return nil
}

// check verifies that the children form trees: every index in range, and no
// node reachable twice (so evaluation always ends), and sets nFeatures.
func (e *treeEnsemble) check() error {
	if len(e.nodes) > maxTreeItems || len(e.leafOff) > maxTreeItems {
		return errors.New("the ensemble has too many nodes")
	}
	seen := make([]bool, len(e.nodes))
	nLeaves := int32(len(e.leafOff) - 1)
	var stack []int32
	for _, r := range e.roots {
		stack = append(stack[:0], r)
		for len(stack) > 0 {
			i := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			if i < 0 {
				if ^i >= nLeaves {
					return fmt.Errorf("a branch points to leaf %d of %d", ^i, nLeaves)
				}
				continue
			}
			if int(i) >= len(e.nodes) {
				return fmt.Errorf("a branch points to node %d of %d", i, len(e.nodes))
			}
			if seen[i] {
				return fmt.Errorf("node %d is reached twice: the trees have a cycle or share nodes", i)
			}
			seen[i] = true
			n := &e.nodes[i]
			if n.feature < 0 || n.feature >= 1<<24 {
				return fmt.Errorf("node %d splits on feature %d", i, n.feature)
			}
			e.nFeatures = max(e.nFeatures, int(n.feature)+1)
			if n.mode > modeMember || (n.mode == modeMember && (n.set < 0 || int(n.set) >= len(e.sets))) {
				return fmt.Errorf("node %d has an unknown split mode", i)
			}
			stack = append(stack, n.next[0], n.next[1])
		}
	}
	return nil
}

// legacyTreeSpec is the attributes of TreeEnsembleRegressor/Classifier.
type legacyTreeSpec struct {
	treeIDs, nodeIDs, featureIDs, trueIDs, falseIDs, missingTrue []int64
	modes                                                        []string
	values                                                       []float32
	leafTree, leafNode, leafTarget                               []int64
	leafWeight, base                                             []float32
	agg, post                                                    uint8
}

func (s *legacyTreeSpec) build() (*treeEnsemble, error) {
	n := len(s.nodeIDs)
	if n == 0 {
		return nil, errors.New("has no tree nodes")
	}
	if n > maxTreeItems {
		return nil, errors.New("has too many tree nodes")
	}
	for name, l := range map[string]int{"nodes_treeids": len(s.treeIDs), "nodes_featureids": len(s.featureIDs),
		"nodes_truenodeids": len(s.trueIDs), "nodes_falsenodeids": len(s.falseIDs), "nodes_modes": len(s.modes),
		"nodes_values": len(s.values)} {
		if l != n {
			return nil, fmt.Errorf("%s has %d entries, nodes_nodeids %d", name, l, n)
		}
	}
	if len(s.missingTrue) != 0 && len(s.missingTrue) != n {
		return nil, fmt.Errorf("nodes_missing_value_tracks_true has %d entries for %d nodes", len(s.missingTrue), n)
	}
	m := len(s.leafWeight)
	if len(s.leafTree) != m || len(s.leafNode) != m || len(s.leafTarget) != m {
		return nil, fmt.Errorf("leaf attributes have different lengths (%d trees, %d nodes, %d ids, %d weights)",
			len(s.leafTree), len(s.leafNode), len(s.leafTarget), m)
	}
	type key struct{ tree, node int64 }
	e := &treeEnsemble{agg: s.agg, post: s.post, base: s.base}
	idx := make(map[key]int32, n) // a node index, or ^leaf
	nLeaves := int32(0)
	var treeOrder []int64
	treeSeen := map[int64]bool{}
	for i := range n {
		k := key{s.treeIDs[i], s.nodeIDs[i]}
		if _, dup := idx[k]; dup {
			return nil, fmt.Errorf("tree %d has node %d twice", k.tree, k.node)
		}
		if !treeSeen[k.tree] {
			treeSeen[k.tree] = true
			treeOrder = append(treeOrder, k.tree)
		}
		if s.modes[i] == "LEAF" {
			idx[k] = ^nLeaves
			nLeaves++
			continue
		}
		mode, ok := map[string]uint8{"BRANCH_LEQ": modeLEQ, "BRANCH_LT": modeLT, "BRANCH_GTE": modeGTE,
			"BRANCH_GT": modeGT, "BRANCH_EQ": modeEQ, "BRANCH_NEQ": modeNEQ}[s.modes[i]]
		if !ok {
			return nil, fmt.Errorf("node mode %q is not supported", s.modes[i])
		}
		idx[k] = int32(len(e.nodes))
		e.nodes = append(e.nodes, treeNode{split: s.values[i], feature: int32(s.featureIDs[i]), mode: mode,
			missTrue: len(s.missingTrue) > 0 && s.missingTrue[i] != 0})
	}
	child := map[key]bool{}
	for i := range n {
		j, _ := idx[key{s.treeIDs[i], s.nodeIDs[i]}]
		if j < 0 {
			continue
		}
		for b, id := range []int64{s.falseIDs[i], s.trueIDs[i]} {
			ck := key{s.treeIDs[i], id}
			c, ok := idx[ck]
			if !ok {
				return nil, fmt.Errorf("tree %d node %d branches to missing node %d", ck.tree, s.nodeIDs[i], id)
			}
			e.nodes[j].next[b] = c
			child[ck] = true
		}
	}
	// Each tree's root is its one node no other node branches to.
	roots := map[int64]int32{}
	for i := range n {
		k := key{s.treeIDs[i], s.nodeIDs[i]}
		if child[k] {
			continue
		}
		if _, dup := roots[k.tree]; dup {
			return nil, fmt.Errorf("tree %d has more than one root", k.tree)
		}
		roots[k.tree] = idx[k]
	}
	for _, t := range treeOrder {
		r, ok := roots[t]
		if !ok {
			return nil, fmt.Errorf("tree %d has no root", t)
		}
		e.roots = append(e.roots, r)
	}
	// Leaves: group the (target, weight) pairs by leaf.
	count := make([]int32, nLeaves+1)
	leafOf := make([]int32, m)
	for j := range m {
		l, ok := idx[key{s.leafTree[j], s.leafNode[j]}]
		if !ok || l >= 0 {
			return nil, fmt.Errorf("a weight is given for tree %d node %d, which is not a leaf", s.leafTree[j], s.leafNode[j])
		}
		if s.leafTarget[j] < 0 || s.leafTarget[j] >= 1<<16 {
			return nil, fmt.Errorf("target id %d is out of range", s.leafTarget[j])
		}
		leafOf[j] = ^l
		count[^l+1]++
	}
	for l := int32(0); l < nLeaves; l++ {
		count[l+1] += count[l]
	}
	e.leafOff = count
	e.leafTarget = make([]int32, m)
	e.leafWeight = make([]float32, m)
	fill := append([]int32(nil), count[:nLeaves]...)
	for j := range m {
		p := fill[leafOf[j]]
		fill[leafOf[j]]++
		e.leafTarget[p] = int32(s.leafTarget[j])
		e.leafWeight[p] = s.leafWeight[j]
	}
	if len(e.base) == 0 {
		e.base = nil
	}
	return e, e.check()
}

// treeEnsemble5Spec is the attributes of TreeEnsemble (ai.onnx.ml 5).
type treeEnsemble5Spec struct {
	roots, featureIDs, trueIDs, trueLeafs, falseIDs, falseLeafs, missingTrue, leafTarget []int64
	modes, splits, leafWeights, members                                                  *value
	agg, post                                                                            uint8
}

func (s *treeEnsemble5Spec) build() (*treeEnsemble, error) {
	n := len(s.featureIDs)
	if n == 0 || len(s.roots) == 0 {
		return nil, errors.New("has no trees")
	}
	if n > maxTreeItems {
		return nil, errors.New("has too many tree nodes")
	}
	if s.modes == nil || s.splits == nil || s.leafWeights == nil {
		return nil, errors.New("nodes_modes, nodes_splits and leaf_weights are required")
	}
	if s.modes.dt != tensor.Int64 || len(s.modes.i) != n {
		return nil, fmt.Errorf("nodes_modes must hold %d integers", n)
	}
	if s.splits.f == nil || len(s.splits.f) != n {
		return nil, fmt.Errorf("nodes_splits must hold %d floating-point values", n)
	}
	for name, l := range map[string]int{"nodes_truenodeids": len(s.trueIDs), "nodes_trueleafs": len(s.trueLeafs),
		"nodes_falsenodeids": len(s.falseIDs), "nodes_falseleafs": len(s.falseLeafs)} {
		if l != n {
			return nil, fmt.Errorf("%s has %d entries for %d nodes", name, l, n)
		}
	}
	if len(s.missingTrue) != 0 && len(s.missingTrue) != n {
		return nil, fmt.Errorf("nodes_missing_value_tracks_true has %d entries for %d nodes", len(s.missingTrue), n)
	}
	if s.leafWeights.f == nil || len(s.leafWeights.f) != len(s.leafTarget) {
		return nil, fmt.Errorf("leaf_weights must hold %d floating-point values", len(s.leafTarget))
	}
	nl := len(s.leafTarget)
	e := &treeEnsemble{agg: s.agg, post: s.post, nodes: make([]treeNode, n)}
	// Membership sets, in the order of the MEMBER nodes, each ended by NaN.
	var sets [][]float32
	if s.members != nil {
		var cur []float32
		for _, v := range s.members.f {
			if v != v {
				sets = append(sets, cur)
				cur = nil
				continue
			}
			cur = append(cur, v)
		}
		if len(cur) > 0 {
			sets = append(sets, cur)
		}
	}
	for i := range n {
		mode := s.modes.i[i]
		if mode < 0 || mode > int64(modeMember) {
			return nil, fmt.Errorf("node %d has mode %d, not 0 to 6", i, mode)
		}
		nd := treeNode{split: s.splits.f[i], feature: int32(s.featureIDs[i]), mode: uint8(mode),
			missTrue: len(s.missingTrue) > 0 && s.missingTrue[i] != 0}
		if s.featureIDs[i] < 0 || s.featureIDs[i] >= 1<<24 {
			return nil, fmt.Errorf("node %d splits on feature %d", i, s.featureIDs[i])
		}
		if nd.mode == modeMember {
			nd.set = int32(len(e.sets))
			if len(e.sets) >= len(sets) {
				return nil, errors.New("membership_values has fewer sets than there are BRANCH_MEMBER nodes")
			}
			e.sets = append(e.sets, sets[len(e.sets)])
		}
		for b, pair := range [2][2]int64{{s.falseIDs[i], s.falseLeafs[i]}, {s.trueIDs[i], s.trueLeafs[i]}} {
			id, leaf := pair[0], pair[1]
			if leaf != 0 {
				if id < 0 || id >= int64(nl) {
					return nil, fmt.Errorf("node %d branches to leaf %d of %d", i, id, nl)
				}
				nd.next[b] = ^int32(id)
			} else {
				if id < 0 || id >= int64(n) {
					return nil, fmt.Errorf("node %d branches to node %d of %d", i, id, n)
				}
				nd.next[b] = int32(id)
			}
		}
		e.nodes[i] = nd
	}
	for _, r := range s.roots {
		if r < 0 || r >= int64(n) {
			return nil, fmt.Errorf("tree root %d is not a node", r)
		}
		e.roots = append(e.roots, int32(r))
	}
	e.leafOff = make([]int32, nl+1)
	e.leafTarget = make([]int32, nl)
	for l := range nl {
		e.leafOff[l+1] = int32(l + 1)
		if s.leafTarget[l] < 0 || s.leafTarget[l] >= 1<<16 {
			return nil, fmt.Errorf("leaf %d adds to target %d", l, s.leafTarget[l])
		}
		e.leafTarget[l] = int32(s.leafTarget[l])
	}
	e.leafWeight = s.leafWeights.f
	return e, e.check()
}
