package onnxrt

import (
	"errors"
	"fmt"
	"math"

	onnxpb "github.com/infergate/infergate/proto/onnx"

	"github.com/infergate/infergate/inference/tensor"
)

// The classic machine-learning operators of the ai.onnx.ml domain: tree
// ensembles (TreeEnsembleRegressor, TreeEnsembleClassifier, and TreeEnsemble
// of ai.onnx.ml 5), linear models, Scaler, Normalizer and ZipMap. Every tree
// form compiles to one flattened treeEnsemble (tree.go), which the XGBoost
// JSON loader also produces.

const mlDomain = "ai.onnx.ml"

var mlOps = map[string]opCompiler{
	"TreeEnsembleRegressor":  compileTreeRegressor,
	"TreeEnsembleClassifier": compileTreeClassifier,
	"TreeEnsemble":           compileTreeEnsemble5,
	"LinearRegressor":        compileLinearRegressor,
	"LinearClassifier":       compileLinearClassifier,
	"Scaler":                 compileScaler,
	"Normalizer":             compileNormalizer,
	"ZipMap":                 compileZipMap,
}

// mlInput checks that input 0 is a [N, F] (or [F]) matrix of numbers; ML
// operators take float, double, int64 and int32 features, all computed here
// as float32.
func mlInput(x *nodeCtx) error {
	if err := x.inputs(1, 1); err != nil {
		return err
	}
	return x.types(floatOrInt, 0)
}

// features returns input 0 as float32 rows: N and F, converting int64 data
// into scratch buffer sc.
func features(st *state, nd *node, sc int) ([]float32, int, int, error) {
	in := st.in(nd, 0)
	var n, f int
	switch len(in.shape) {
	case 1:
		n, f = 1, in.shape[0]
	case 2:
		n, f = in.shape[0], in.shape[1]
	default:
		return nil, 0, 0, fmt.Errorf("input has shape %v, want [N, features]", in.shape)
	}
	if in.dt == tensor.Float {
		return in.f, n, f, nil
	}
	buf := st.scratchF(sc, len(in.i))
	for i, v := range in.i {
		buf[i] = float32(v)
	}
	return buf, n, f, nil
}

func (x *nodeCtx) floatsAttr(name string) ([]float32, error) {
	a, err := x.attr(name, onnxpb.AttributeProto_FLOATS)
	if a == nil || err != nil {
		return nil, err
	}
	return a.GetFloats(), nil
}

func (x *nodeCtx) stringAttr(name, def string) (string, error) {
	a, err := x.attr(name, onnxpb.AttributeProto_STRING)
	if a == nil || err != nil {
		return def, err
	}
	return string(a.GetS()), nil
}

func (x *nodeCtx) stringsAttr(name string) ([]string, error) {
	a, err := x.attr(name, onnxpb.AttributeProto_STRINGS)
	if a == nil || err != nil {
		return nil, err
	}
	out := make([]string, len(a.GetStrings()))
	for i, s := range a.GetStrings() {
		out[i] = string(s)
	}
	return out, nil
}

// tensorAttr decodes a tensor-valued attribute, nil if absent.
func (x *nodeCtx) tensorAttr(name string) (*value, error) {
	a, err := x.attr(name, onnxpb.AttributeProto_TENSOR)
	if a == nil || err != nil {
		return nil, err
	}
	v, err := decodeTensor(a.GetT())
	if err != nil {
		return nil, fmt.Errorf("attribute %s: %w", name, err)
	}
	return v, nil
}

// floatsOrTensor reads attribute name (FLOATS) or name_as_tensor.
func (x *nodeCtx) floatsOrTensor(name string) ([]float32, error) {
	v, err := x.floatsAttr(name)
	if v != nil || err != nil {
		return v, err
	}
	t, err := x.tensorAttr(name + "_as_tensor")
	if t == nil || err != nil {
		return nil, err
	}
	if t.dt != tensor.Float {
		return nil, fmt.Errorf("attribute %s_as_tensor is not floating point", name)
	}
	return t.f, nil
}

// Post transforms shared by the tree and linear models.
const (
	postNone uint8 = iota
	postSoftmax
	postLogistic
	postSoftmaxZero
	postProbit
)

func parsePost(s string) (uint8, error) {
	switch s {
	case "", "NONE":
		return postNone, nil
	case "SOFTMAX":
		return postSoftmax, nil
	case "LOGISTIC":
		return postLogistic, nil
	case "SOFTMAX_ZERO":
		return postSoftmaxZero, nil
	case "PROBIT":
		return postProbit, nil
	}
	return 0, fmt.Errorf("post_transform %q is not NONE, SOFTMAX, LOGISTIC, SOFTMAX_ZERO or PROBIT", s)
}

// applyPost transforms one row of scores in place.
func applyPost(post uint8, v []float32) {
	switch post {
	case postLogistic:
		for i, s := range v {
			v[i] = logistic(s)
		}
	case postSoftmax, postSoftmaxZero:
		mx := float32(math.Inf(-1))
		for _, s := range v {
			if post == postSoftmaxZero && s == 0 {
				continue
			}
			mx = max(mx, s)
		}
		var sum float64
		for i, s := range v {
			if post == postSoftmaxZero && s == 0 {
				continue
			}
			e := math.Exp(float64(s - mx))
			v[i] = float32(e)
			sum += e
		}
		if sum > 0 {
			for i, s := range v {
				if post == postSoftmaxZero && s == 0 {
					continue
				}
				v[i] = float32(float64(s) / sum)
			}
		}
	case postProbit:
		for i, s := range v {
			v[i] = float32(math.Sqrt2 * math.Erfinv(2*float64(s)-1))
		}
	}
}

func logistic(s float32) float32 {
	if s >= 0 {
		return float32(1 / (1 + math.Exp(-float64(s))))
	}
	e := math.Exp(float64(s))
	return float32(e / (1 + e))
}

// treeKernel runs a tree ensemble: a regressor (one output [N, targets]) or
// a classifier (label [N] and scores [N, classes]).
type treeKernel struct {
	e          *treeEnsemble
	classifier bool
	labels     []int64 // class labels (classifier)
	binary     bool    // two labels, weights for one class only (see finishBinary)
	allPos     bool    // every class weight ≥ 0 (binary case)
	sFeat      int
	sScore     int
}

func compileTreeRegressor(x *nodeCtx) (kernel, []tensor.DType, error) {
	if err := mlInput(x); err != nil {
		return nil, nil, err
	}
	e, err := legacyTrees(x, "target")
	if err != nil {
		return nil, nil, err
	}
	nt, err := x.intAttr("n_targets", 1)
	if err != nil {
		return nil, nil, err
	}
	if nt < 1 || nt > 1<<16 {
		return nil, nil, fmt.Errorf("n_targets %d is out of range", nt)
	}
	if err := e.setTargets(int(nt)); err != nil {
		return nil, nil, err
	}
	k := &treeKernel{e: e, sFeat: x.newScratch(), sScore: x.newScratch()}
	return k, []tensor.DType{tensor.Float}, nil
}

func compileTreeClassifier(x *nodeCtx) (kernel, []tensor.DType, error) {
	if err := mlInput(x); err != nil {
		return nil, nil, err
	}
	e, err := legacyTrees(x, "class")
	if err != nil {
		return nil, nil, err
	}
	k := &treeKernel{e: e, classifier: true, sFeat: x.newScratch(), sScore: x.newScratch()}
	if err := k.classLabels(x); err != nil {
		return nil, nil, err
	}
	if err := e.setTargets(len(k.labels)); err != nil {
		return nil, nil, err
	}
	// ONNX Runtime's binary case: two labels and weights for a single class
	// give one score s; see finishBinary.
	ids := map[int32]bool{}
	k.allPos = true
	for i, t := range e.leafTarget {
		ids[t] = true
		if e.leafWeight[i] < 0 {
			k.allPos = false
		}
	}
	k.binary = len(k.labels) == 2 && len(ids) == 1
	return k, []tensor.DType{tensor.Int64, tensor.Float}, nil
}

// classLabels reads classlabels_int64s; string labels are refused when the
// label output is used, since the runtime holds no string tensors.
func (k *treeKernel) classLabels(x *nodeCtx) error {
	// TreeEnsembleClassifier names them classlabels_int64s, LinearClassifier classlabels_ints.
	ints, _, err := x.intsAttr("classlabels_int64s")
	if err != nil {
		return err
	}
	if len(ints) == 0 {
		if ints, _, err = x.intsAttr("classlabels_ints"); err != nil {
			return err
		}
	}
	strs, err := x.stringsAttr("classlabels_strings")
	if err != nil {
		return err
	}
	switch {
	case len(ints) > 0:
		k.labels = ints
	case len(strs) > 0:
		if len(x.n.out) > 0 && x.n.out[0] >= 0 {
			return errors.New("string class labels are not supported (the runtime has no string tensors); the label output must be unused")
		}
		k.labels = make([]int64, len(strs))
		for i := range k.labels {
			k.labels[i] = int64(i)
		}
	default:
		return errors.New("has no class labels")
	}
	if len(k.labels) > 1<<16 {
		return fmt.Errorf("%d classes is too many", len(k.labels))
	}
	return nil
}

func (k *treeKernel) run(st *state, nd *node) error {
	X, n, f, err := features(st, nd, k.sFeat)
	if err != nil {
		return err
	}
	if f < k.e.nFeatures {
		return fmt.Errorf("input has %d features, the trees use %d", f, k.e.nFeatures)
	}
	T := k.e.nTargets
	if !k.classifier {
		sh := st.outShape(nd.out[0], 2)
		sh[0], sh[1] = n, T
		out, err := st.allocF(nd.out[0])
		if err != nil {
			return err
		}
		for r := range n {
			k.e.predict(X[r*f:(r+1)*f], out[r*T:(r+1)*T])
			applyPost(k.e.post, out[r*T:(r+1)*T])
		}
		return nil
	}
	var labels []int64
	if len(nd.out) > 0 && nd.out[0] >= 0 {
		sh := st.outShape(nd.out[0], 1)
		sh[0] = n
		if labels, err = st.allocI(nd.out[0]); err != nil {
			return err
		}
	}
	var scores []float32
	if len(nd.out) > 1 && nd.out[1] >= 0 {
		sh := st.outShape(nd.out[1], 2)
		sh[0], sh[1] = n, T
		if scores, err = st.allocF(nd.out[1]); err != nil {
			return err
		}
	} else {
		scores = st.scratchF(k.sScore, n*T)
	}
	for r := range n {
		row := scores[r*T : (r+1)*T]
		k.e.predict(X[r*f:(r+1)*f], row)
		var lab int64
		if k.binary {
			lab = k.finishBinary(row)
		} else {
			lab = k.labels[argmax(row)]
			applyPost(k.e.post, row)
		}
		if labels != nil {
			labels[r] = lab
		}
	}
	return nil
}

// finishBinary follows ONNX Runtime for a two-class ensemble whose weights
// all go to one class: the score s is the positive class's; with all weights
// non-negative the label is positive when s > 0.5 and the scores are
// [1−s, s]; otherwise the label is positive when s > 0, and the scores are
// [logistic(−s), logistic(s)] under LOGISTIC, else [−s, s]. PROBIT gives
// [probit(s), probit(s)]... which ONNX Runtime writes as a single value;
// here both columns carry it.
func (k *treeKernel) finishBinary(row []float32) int64 {
	id := k.e.leafTarget[0]
	s := row[id]
	lab := k.labels[0]
	if k.allPos && s > 0.5 || !k.allPos && s > 0 {
		lab = k.labels[1]
	}
	switch {
	case k.e.post == postProbit:
		p := float32(math.Sqrt2 * math.Erfinv(2*float64(s)-1))
		row[0], row[1] = p, p
	case k.allPos:
		row[0], row[1] = 1-s, s
	case k.e.post == postLogistic:
		row[0], row[1] = logistic(-s), logistic(s)
	default:
		row[0], row[1] = -s, s
	}
	return lab
}

func argmax(v []float32) int {
	best := 0
	for i, s := range v {
		if s > v[best] {
			best = i
		}
	}
	return best
}

// legacyTrees reads the nodes_* attributes of TreeEnsembleRegressor
// (prefix "target") or TreeEnsembleClassifier (prefix "class").
func legacyTrees(x *nodeCtx, prefix string) (*treeEnsemble, error) {
	treeIDs, _, err := x.intsAttr("nodes_treeids")
	if err != nil {
		return nil, err
	}
	nodeIDs, _, err := x.intsAttr("nodes_nodeids")
	if err != nil {
		return nil, err
	}
	featIDs, _, err := x.intsAttr("nodes_featureids")
	if err != nil {
		return nil, err
	}
	trueIDs, _, err := x.intsAttr("nodes_truenodeids")
	if err != nil {
		return nil, err
	}
	falseIDs, _, err := x.intsAttr("nodes_falsenodeids")
	if err != nil {
		return nil, err
	}
	missing, _, err := x.intsAttr("nodes_missing_value_tracks_true")
	if err != nil {
		return nil, err
	}
	modes, err := x.stringsAttr("nodes_modes")
	if err != nil {
		return nil, err
	}
	values, err := x.floatsOrTensor("nodes_values")
	if err != nil {
		return nil, err
	}
	lt := legacyTreeSpec{treeIDs: treeIDs, nodeIDs: nodeIDs, featureIDs: featIDs, trueIDs: trueIDs, falseIDs: falseIDs,
		missingTrue: missing, modes: modes, values: values}
	if lt.leafTree, _, err = x.intsAttr(prefix + "_treeids"); err != nil {
		return nil, err
	}
	if lt.leafNode, _, err = x.intsAttr(prefix + "_nodeids"); err != nil {
		return nil, err
	}
	if lt.leafTarget, _, err = x.intsAttr(prefix + "_ids"); err != nil {
		return nil, err
	}
	if lt.leafWeight, err = x.floatsOrTensor(prefix + "_weights"); err != nil {
		return nil, err
	}
	if lt.base, err = x.floatsOrTensor("base_values"); err != nil {
		return nil, err
	}
	agg, err := x.stringAttr("aggregate_function", "SUM")
	if err != nil {
		return nil, err
	}
	switch agg {
	case "SUM":
		lt.agg = aggSum
	case "AVERAGE":
		lt.agg = aggAverage
	case "MIN":
		lt.agg = aggMin
	case "MAX":
		lt.agg = aggMax
	default:
		return nil, fmt.Errorf("aggregate_function %q is not SUM, AVERAGE, MIN or MAX", agg)
	}
	post, err := x.stringAttr("post_transform", "NONE")
	if err != nil {
		return nil, err
	}
	if lt.post, err = parsePost(post); err != nil {
		return nil, err
	}
	return lt.build()
}

// compileTreeEnsemble5 is TreeEnsemble of ai.onnx.ml 5: nodes and leaves in
// separate arrays, the split modes as a uint8 tensor, set membership.
func compileTreeEnsemble5(x *nodeCtx) (kernel, []tensor.DType, error) {
	if err := mlInput(x); err != nil {
		return nil, nil, err
	}
	var s treeEnsemble5Spec
	var err error
	ints := []struct {
		name string
		dst  *[]int64
	}{
		{"tree_roots", &s.roots}, {"nodes_featureids", &s.featureIDs}, {"nodes_truenodeids", &s.trueIDs},
		{"nodes_trueleafs", &s.trueLeafs}, {"nodes_falsenodeids", &s.falseIDs}, {"nodes_falseleafs", &s.falseLeafs},
		{"nodes_missing_value_tracks_true", &s.missingTrue}, {"leaf_targetids", &s.leafTarget},
	}
	for _, a := range ints {
		if *a.dst, _, err = x.intsAttr(a.name); err != nil {
			return nil, nil, err
		}
	}
	tens := []struct {
		name string
		dst  **value
	}{{"nodes_modes", &s.modes}, {"nodes_splits", &s.splits}, {"leaf_weights", &s.leafWeights}, {"membership_values", &s.members}}
	for _, a := range tens {
		if *a.dst, err = x.tensorAttr(a.name); err != nil {
			return nil, nil, err
		}
	}
	nt, err := x.intAttr("n_targets", 0)
	if err != nil {
		return nil, nil, err
	}
	if nt < 1 || nt > 1<<16 {
		return nil, nil, fmt.Errorf("n_targets %d is missing or out of range", nt)
	}
	agg, err := x.intAttr("aggregate_function", 1)
	if err != nil {
		return nil, nil, err
	}
	if agg < 0 || agg > 3 {
		return nil, nil, fmt.Errorf("aggregate_function %d is not 0 to 3", agg)
	}
	s.agg = [...]uint8{aggAverage, aggSum, aggMin, aggMax}[agg]
	post, err := x.intAttr("post_transform", 0)
	if err != nil {
		return nil, nil, err
	}
	if post < 0 || post > 4 {
		return nil, nil, fmt.Errorf("post_transform %d is not 0 to 4", post)
	}
	s.post = uint8(post)
	e, err := s.build()
	if err != nil {
		return nil, nil, err
	}
	if err := e.setTargets(int(nt)); err != nil {
		return nil, nil, err
	}
	return &treeKernel{e: e, sFeat: x.newScratch(), sScore: x.newScratch()}, []tensor.DType{tensor.Float}, nil
}

// linearKernel is LinearRegressor or LinearClassifier: scores = X·Cᵀ + b.
type linearKernel struct {
	coef       []float32 // [targets, F]
	intercepts []float32 // [targets] or nil
	targets    int
	post       uint8
	classifier bool
	labels     []int64
	sFeat      int
	sScore     int
}

func compileLinearRegressor(x *nodeCtx) (kernel, []tensor.DType, error) {
	if err := mlInput(x); err != nil {
		return nil, nil, err
	}
	k := &linearKernel{sFeat: x.newScratch(), sScore: x.newScratch()}
	t, err := x.intAttr("targets", 1)
	if err != nil {
		return nil, nil, err
	}
	if t < 1 || t > 1<<16 {
		return nil, nil, fmt.Errorf("targets %d is out of range", t)
	}
	k.targets = int(t)
	if err := k.params(x); err != nil {
		return nil, nil, err
	}
	return k, []tensor.DType{tensor.Float}, nil
}

func compileLinearClassifier(x *nodeCtx) (kernel, []tensor.DType, error) {
	if err := mlInput(x); err != nil {
		return nil, nil, err
	}
	k := &linearKernel{classifier: true, sFeat: x.newScratch(), sScore: x.newScratch()}
	lk := &treeKernel{}
	if err := lk.classLabels(x); err != nil {
		return nil, nil, err
	}
	k.labels = lk.labels
	// As in ONNX Runtime, the intercepts say how many rows of coefficients
	// there are: one row with two labels is the binary form.
	ic, err := x.floatsAttr("intercepts")
	if err != nil {
		return nil, nil, err
	}
	k.targets = len(k.labels)
	if len(ic) > 0 {
		k.targets = len(ic)
	}
	if k.targets != len(k.labels) && !(k.targets == 1 && len(k.labels) == 2) {
		return nil, nil, fmt.Errorf("%d rows of coefficients for %d class labels", k.targets, len(k.labels))
	}
	if err := k.params(x); err != nil {
		return nil, nil, err
	}
	return k, []tensor.DType{tensor.Int64, tensor.Float}, nil
}

func (k *linearKernel) params(x *nodeCtx) error {
	coef, err := x.floatsAttr("coefficients")
	if err != nil {
		return err
	}
	if len(coef) == 0 || len(coef)%k.targets != 0 {
		return fmt.Errorf("%d coefficients do not split into %d rows", len(coef), k.targets)
	}
	k.coef = coef
	if k.intercepts, err = x.floatsAttr("intercepts"); err != nil {
		return err
	}
	if k.intercepts != nil && len(k.intercepts) != k.targets {
		return fmt.Errorf("%d intercepts for %d rows of coefficients", len(k.intercepts), k.targets)
	}
	post, err := x.stringAttr("post_transform", "NONE")
	if err != nil {
		return err
	}
	k.post, err = parsePost(post)
	return err
}

func (k *linearKernel) run(st *state, nd *node) error {
	X, n, f, err := features(st, nd, k.sFeat)
	if err != nil {
		return err
	}
	F := len(k.coef) / k.targets
	if f != F {
		return fmt.Errorf("input has %d features, the model has %d", f, F)
	}
	cols := k.targets
	if k.classifier && k.targets == 1 {
		cols = 2
	}
	var scores []float32
	scoreOut := 0
	if k.classifier {
		scoreOut = 1
	}
	if len(nd.out) > scoreOut && nd.out[scoreOut] >= 0 {
		sh := st.outShape(nd.out[scoreOut], 2)
		sh[0], sh[1] = n, cols
		if scores, err = st.allocF(nd.out[scoreOut]); err != nil {
			return err
		}
	} else {
		scores = st.scratchF(k.sScore, n*cols)
	}
	var labels []int64
	if k.classifier && len(nd.out) > 0 && nd.out[0] >= 0 {
		sh := st.outShape(nd.out[0], 1)
		sh[0] = n
		if labels, err = st.allocI(nd.out[0]); err != nil {
			return err
		}
	}
	for r := range n {
		xr := X[r*f : (r+1)*f]
		row := scores[r*cols : (r+1)*cols]
		for t := range k.targets {
			s := dot(xr, k.coef[t*F:(t+1)*F])
			if k.intercepts != nil {
				s += k.intercepts[t]
			}
			row[t] = s
		}
		if !k.classifier {
			applyPost(k.post, row)
			continue
		}
		var lab int64
		if k.targets == 1 {
			// One row of coefficients for two classes: the score is the
			// second class's, the first gets its negation.
			s := row[0]
			lab = k.labels[0]
			if s > 0 {
				lab = k.labels[1]
			}
			row[0], row[1] = -s, s
		} else {
			lab = k.labels[argmax(row)]
		}
		applyPost(k.post, row)
		if labels != nil {
			labels[r] = lab
		}
	}
	return nil
}

// scalerKernel is Scaler: y = (x − offset) · scale, per feature or one value for all.
type scalerKernel struct {
	offset, scale []float32
	sFeat         int
}

func compileScaler(x *nodeCtx) (kernel, []tensor.DType, error) {
	if err := mlInput(x); err != nil {
		return nil, nil, err
	}
	k := &scalerKernel{sFeat: x.newScratch()}
	var err error
	if k.offset, err = x.floatsAttr("offset"); err != nil {
		return nil, nil, err
	}
	if k.scale, err = x.floatsAttr("scale"); err != nil {
		return nil, nil, err
	}
	if len(k.offset) == 0 {
		k.offset = []float32{0}
	}
	if len(k.scale) == 0 {
		k.scale = []float32{1}
	}
	return k, []tensor.DType{tensor.Float}, nil
}

func (k *scalerKernel) run(st *state, nd *node) error {
	X, n, f, err := features(st, nd, k.sFeat)
	if err != nil {
		return err
	}
	for _, p := range [][]float32{k.offset, k.scale} {
		if len(p) != 1 && len(p) != f {
			return fmt.Errorf("input has %d features, the scaler has %d values", f, len(p))
		}
	}
	st.setShape(nd.out[0], st.in(nd, 0).shape)
	out, err := st.allocF(nd.out[0])
	if err != nil {
		return err
	}
	pick := func(v []float32, j int) float32 {
		if len(v) == 1 {
			return v[0]
		}
		return v[j]
	}
	for r := range n {
		for j := range f {
			out[r*f+j] = (X[r*f+j] - pick(k.offset, j)) * pick(k.scale, j)
		}
	}
	return nil
}

// normalizerKernel is Normalizer: each row divided by its MAX, L1 or L2 norm.
type normalizerKernel struct {
	norm  string
	sFeat int
}

func compileNormalizer(x *nodeCtx) (kernel, []tensor.DType, error) {
	if err := mlInput(x); err != nil {
		return nil, nil, err
	}
	norm, err := x.stringAttr("norm", "MAX")
	if err != nil {
		return nil, nil, err
	}
	if norm != "MAX" && norm != "L1" && norm != "L2" {
		return nil, nil, fmt.Errorf("norm %q is not MAX, L1 or L2", norm)
	}
	return &normalizerKernel{norm: norm, sFeat: x.newScratch()}, []tensor.DType{tensor.Float}, nil
}

func (k *normalizerKernel) run(st *state, nd *node) error {
	X, n, f, err := features(st, nd, k.sFeat)
	if err != nil {
		return err
	}
	st.setShape(nd.out[0], st.in(nd, 0).shape)
	out, err := st.allocF(nd.out[0])
	if err != nil {
		return err
	}
	for r := range n {
		row, o := X[r*f:(r+1)*f], out[r*f:(r+1)*f]
		var d float64
		switch k.norm {
		case "MAX":
			d = math.Inf(-1)
			for _, v := range row {
				d = max(d, float64(v))
			}
		case "L1":
			for _, v := range row {
				d += math.Abs(float64(v))
			}
		case "L2":
			for _, v := range row {
				d += float64(v) * float64(v)
			}
			d = math.Sqrt(d)
		}
		for j, v := range row {
			o[j] = float32(float64(v) / d)
		}
	}
	return nil
}

// compileZipMap maps ZipMap, which turns [N, C] scores into one map per row
// (class label → score), to the scores themselves: a TF-Serving output is a
// tensor, so the model serves [N, C] float32 with column j the score of
// classlabels[j] (docs/runtime.md).
func compileZipMap(x *nodeCtx) (kernel, []tensor.DType, error) {
	if err := x.inputs(1, 1); err != nil {
		return nil, nil, err
	}
	if err := x.types(floatOnly, 0); err != nil {
		return nil, nil, err
	}
	x.c.zipMapOut(x.n.out)
	return &viewKernel{shape: sameShape}, []tensor.DType{tensor.Float}, nil
}
