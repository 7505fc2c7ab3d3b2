package onnxrt

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	onnxpb "github.com/infergate/infergate/proto/onnx"
)

// XGBoost's JSON model format (Booster.save_model("model.json"), xgboost ≥
// 1.0) loaded directly: the trees become an ai.onnx.ml TreeEnsembleRegressor
// (or TreeEnsembleClassifier for multi:softmax) in a generated ONNX graph, so
// they run on the same tree kernel as converted models.
//
// The served signature: input "input", float32 [N, num_feature] (NaN is a
// missing value, which follows each split's default_left); output
// "predictions": float32 [N, 1] for one output (reg:*, binary:logistic,
// binary:logitraw, count:poisson, …), float32 [N, classes] for
// multi:softprob, int64 [N] (the class) for multi:softmax — the values
// xgboost's own predict() returns.

// XGBoostInputName and XGBoostOutputName name the signature of a model
// loaded by LoadXGBoostJSON.
const (
	XGBoostInputName  = "input"
	XGBoostOutputName = "predictions"
)

type xgbModel struct {
	Learner struct {
		LearnerModelParam struct {
			BaseScore  string `json:"base_score"`
			NumClass   string `json:"num_class"`
			NumFeature string `json:"num_feature"`
			NumTarget  string `json:"num_target"`
		} `json:"learner_model_param"`
		Objective struct {
			Name string `json:"name"`
		} `json:"objective"`
		GradientBooster json.RawMessage `json:"gradient_booster"`
	} `json:"learner"`
}

type xgbBooster struct {
	Name  string `json:"name"`
	Model *struct {
		Trees    []xgbTree `json:"trees"`
		TreeInfo []int64   `json:"tree_info"`
	} `json:"model"`
	// dart: the gbtree inside, and a weight per tree.
	Gbtree     *xgbBooster `json:"gbtree"`
	WeightDrop []float64   `json:"weight_drop"`
}

type xgbTree struct {
	LeftChildren    []int64   `json:"left_children"`
	RightChildren   []int64   `json:"right_children"`
	SplitIndices    []int64   `json:"split_indices"`
	SplitConditions []float64 `json:"split_conditions"`
	DefaultLeft     []xgbBool `json:"default_left"`
	SplitType       []int64   `json:"split_type"`
}

// xgbBool accepts 0/1 (xgboost 1.x) and true/false.
type xgbBool bool

func (b *xgbBool) UnmarshalJSON(d []byte) error {
	switch string(d) {
	case "1", "true":
		*b = true
	case "0", "false":
		*b = false
	default:
		return fmt.Errorf("default_left value %s is not 0, 1, true or false", d)
	}
	return nil
}

// maxXGBoostBytes bounds the model file (the trees are held twice while
// converting).
const maxXGBoostBytes = 1 << 30

// LoadXGBoostJSON loads a model saved by xgboost's Booster.save_model in JSON.
// Objectives: reg:squarederror, reg:squaredlogerror, reg:pseudohubererror,
// reg:absoluteerror, reg:linear (identity); reg:logistic, binary:logistic
// (probability); binary:logitraw (margin); count:poisson, reg:gamma,
// reg:tweedie (exp of the margin); multi:softprob (class probabilities);
// multi:softmax (the class). Boosters gbtree and dart; numerical splits only.
func LoadXGBoostJSON(b []byte) (*Model, error) {
	g, err := xgboostGraph(b)
	if err != nil {
		return nil, fmt.Errorf("runtime: xgboost model: %w", err)
	}
	return Load(g)
}

func xgbNumber(name, s string, def float64) (float64, error) {
	s = strings.Trim(strings.TrimSpace(s), "[]")
	if i := strings.IndexByte(s, ','); i >= 0 {
		s = s[:i] // xgboost 2 writes one base score per target: all equal for these objectives
	}
	if s == "" {
		return def, nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("learner_model_param %s %q is not a number", name, s)
	}
	return v, nil
}

// xgboostGraph translates the JSON model into an ONNX model.
func xgboostGraph(b []byte) ([]byte, error) {
	if len(b) > maxXGBoostBytes {
		return nil, fmt.Errorf("file of %d bytes is larger than %d", len(b), maxXGBoostBytes)
	}
	var m xgbModel
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("not an xgboost JSON model: %w", err)
	}
	lp := m.Learner.LearnerModelParam
	base, err := xgbNumber("base_score", lp.BaseScore, 0.5)
	if err != nil {
		return nil, err
	}
	nc, err := xgbNumber("num_class", lp.NumClass, 0)
	if err != nil {
		return nil, err
	}
	nf, err := xgbNumber("num_feature", lp.NumFeature, 0)
	if err != nil {
		return nil, err
	}
	if nt, err := xgbNumber("num_target", lp.NumTarget, 1); err != nil {
		return nil, err
	} else if nt > 1 {
		return nil, fmt.Errorf("num_target %g: multi-target models are not supported", nt)
	}
	if !(nf >= 1 && nf <= 1<<24 && nc >= 0 && nc <= 1<<16) { // NaN fails too
		return nil, fmt.Errorf("num_feature %g or num_class %g is out of range", nf, nc)
	}
	var booster xgbBooster
	if len(m.Learner.GradientBooster) == 0 {
		return nil, errors.New("not an xgboost JSON model: no learner.gradient_booster")
	}
	if err := json.Unmarshal(m.Learner.GradientBooster, &booster); err != nil {
		return nil, fmt.Errorf("gradient_booster: %w", err)
	}
	var weights []float64
	switch booster.Name {
	case "gbtree":
	case "dart":
		if booster.Gbtree == nil {
			return nil, errors.New("dart booster without its gbtree")
		}
		weights = booster.WeightDrop
		booster = *booster.Gbtree
	default:
		return nil, fmt.Errorf("booster %q is not supported (gbtree, dart)", booster.Name)
	}
	if booster.Model == nil || len(booster.Model.Trees) == 0 {
		return nil, errors.New("the model has no trees")
	}
	trees, info := booster.Model.Trees, booster.Model.TreeInfo
	if len(info) != len(trees) || (weights != nil && len(weights) != len(trees)) {
		return nil, fmt.Errorf("%d trees but %d tree_info and %d weight_drop entries", len(trees), len(info), len(weights))
	}

	obj := m.Learner.Objective.Name
	classes := 1
	post := "NONE"
	var margin float64 // base_score as a margin
	var exp, label bool
	switch obj {
	case "reg:squarederror", "reg:squaredlogerror", "reg:pseudohubererror", "reg:absoluteerror", "reg:linear":
		margin = base
	case "reg:logistic", "binary:logistic":
		margin, post = logit(base), "LOGISTIC"
	case "binary:logitraw":
		margin = logit(base)
	case "count:poisson", "reg:gamma", "reg:tweedie":
		margin, exp = math.Log(base), true
	case "multi:softprob", "multi:softmax":
		if nc < 2 {
			return nil, fmt.Errorf("objective %s with num_class %g", obj, nc)
		}
		classes, margin, post = int(nc), base, "SOFTMAX"
		label = obj == "multi:softmax"
	default:
		return nil, fmt.Errorf("objective %q is not supported", obj)
	}

	// Node attributes of TreeEnsembleRegressor/Classifier.
	var a struct {
		treeIDs, nodeIDs, feat, trueIDs, falseIDs, miss, lTree, lNode, lID []int64
		modes                                                              [][]byte
		values, lWeight                                                    []float32
	}
	total := 0
	for ti, t := range trees {
		n := len(t.LeftChildren)
		total += n
		if total > maxTreeItems {
			return nil, errors.New("the model has too many nodes")
		}
		if n == 0 || len(t.RightChildren) != n || len(t.SplitIndices) != n || len(t.SplitConditions) != n ||
			len(t.DefaultLeft) != n {
			return nil, fmt.Errorf("tree %d: node arrays have different lengths", ti)
		}
		if info[ti] < 0 || info[ti] >= int64(classes) {
			return nil, fmt.Errorf("tree %d belongs to class %d of %d", ti, info[ti], classes)
		}
		w := 1.0
		if weights != nil {
			w = weights[ti]
		}
		for j := range n {
			a.treeIDs = append(a.treeIDs, int64(ti))
			a.nodeIDs = append(a.nodeIDs, int64(j))
			if t.LeftChildren[j] == -1 {
				a.feat = append(a.feat, 0)
				a.modes = append(a.modes, []byte("LEAF"))
				a.values = append(a.values, 0)
				a.trueIDs = append(a.trueIDs, 0)
				a.falseIDs = append(a.falseIDs, 0)
				a.miss = append(a.miss, 0)
				a.lTree = append(a.lTree, int64(ti))
				a.lNode = append(a.lNode, int64(j))
				a.lID = append(a.lID, info[ti])
				a.lWeight = append(a.lWeight, float32(t.SplitConditions[j]*w))
				continue
			}
			if len(t.SplitType) == n && t.SplitType[j] != 0 {
				return nil, fmt.Errorf("tree %d node %d: categorical splits are not supported", ti, j)
			}
			if t.SplitIndices[j] < 0 || t.SplitIndices[j] >= int64(nf) {
				return nil, fmt.Errorf("tree %d node %d splits on feature %d of %g", ti, j, t.SplitIndices[j], nf)
			}
			a.feat = append(a.feat, t.SplitIndices[j])
			// xgboost goes left (yes) when x < split, and left on missing
			// when default_left.
			a.modes = append(a.modes, []byte("BRANCH_LT"))
			a.values = append(a.values, float32(t.SplitConditions[j]))
			a.trueIDs = append(a.trueIDs, t.LeftChildren[j])
			a.falseIDs = append(a.falseIDs, t.RightChildren[j])
			m := int64(0)
			if t.DefaultLeft[j] {
				m = 1
			}
			a.miss = append(a.miss, m)
		}
	}

	prefix := "target"
	op := "TreeEnsembleRegressor"
	if label {
		prefix, op = "class", "TreeEnsembleClassifier"
	}
	ints := func(name string, v []int64) *onnxpb.AttributeProto {
		return &onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_INTS, Ints: v}
	}
	floats := func(name string, v []float32) *onnxpb.AttributeProto {
		return &onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_FLOATS, Floats: v}
	}
	str := func(name, v string) *onnxpb.AttributeProto {
		return &onnxpb.AttributeProto{Name: name, Type: onnxpb.AttributeProto_STRING, S: []byte(v)}
	}
	baseValues := make([]float32, classes)
	for i := range baseValues {
		baseValues[i] = float32(margin)
	}
	attrs := []*onnxpb.AttributeProto{
		ints("nodes_treeids", a.treeIDs), ints("nodes_nodeids", a.nodeIDs), ints("nodes_featureids", a.feat),
		{Name: "nodes_modes", Type: onnxpb.AttributeProto_STRINGS, Strings: a.modes}, floats("nodes_values", a.values),
		ints("nodes_truenodeids", a.trueIDs), ints("nodes_falsenodeids", a.falseIDs),
		ints("nodes_missing_value_tracks_true", a.miss),
		ints(prefix+"_treeids", a.lTree), ints(prefix+"_nodeids", a.lNode), ints(prefix+"_ids", a.lID),
		floats(prefix+"_weights", a.lWeight), floats("base_values", baseValues), str("post_transform", post),
	}
	outType := onnxpb.TensorProto_FLOAT
	outDims := []int64{-1, int64(classes)}
	treeOuts := []string{XGBoostOutputName}
	if label {
		classIDs := make([]int64, classes)
		for i := range classIDs {
			classIDs[i] = int64(i)
		}
		attrs = append(attrs, ints("classlabels_int64s", classIDs))
		outType, outDims = onnxpb.TensorProto_INT64, []int64{-1}
	} else {
		attrs = append(attrs, &onnxpb.AttributeProto{Name: "n_targets", Type: onnxpb.AttributeProto_INT, I: int64(classes)})
	}
	if exp {
		treeOuts = []string{"margin"}
	}
	nodes := []*onnxpb.NodeProto{{OpType: op, Domain: mlDomain, Name: "trees", Input: []string{XGBoostInputName},
		Output: treeOuts, Attribute: attrs}}
	if exp {
		nodes = append(nodes, &onnxpb.NodeProto{OpType: "Exp", Name: "link", Input: []string{"margin"}, Output: []string{XGBoostOutputName}})
	}
	if label {
		nodes[0].Output = []string{XGBoostOutputName}
	}
	g := &onnxpb.GraphProto{
		Name:   "xgboost " + obj,
		Node:   nodes,
		Input:  []*onnxpb.ValueInfoProto{tensorInfo(XGBoostInputName, onnxpb.TensorProto_FLOAT, -1, int64(nf))},
		Output: []*onnxpb.ValueInfoProto{tensorInfo(XGBoostOutputName, outType, outDims...)},
	}
	return proto.Marshal(&onnxpb.ModelProto{
		IrVersion:   8,
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Version: 17}, {Domain: mlDomain, Version: 3}},
		Graph:       g,
	})
}

func logit(p float64) float64 { return math.Log(p / (1 - p)) }

func tensorInfo(name string, et onnxpb.TensorProto_DataType, dims ...int64) *onnxpb.ValueInfoProto {
	shape := &onnxpb.TensorShapeProto{}
	for _, d := range dims {
		dim := &onnxpb.TensorShapeProto_Dimension{}
		if d < 0 {
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: "N"}
		} else {
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d}
		}
		shape.Dim = append(shape.Dim, dim)
	}
	return &onnxpb.ValueInfoProto{Name: name, Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
		TensorType: &onnxpb.TypeProto_Tensor{ElemType: int32(et), Shape: shape}}}}
}
