#!/usr/bin/python3
"""Writes tree-ensemble and linear test models (ai.onnx.ml) and the frameworks' own predictions.

Run from this directory with Debian's python3-xgboost, python3-sklearn and python3-onnx:
    /usr/bin/python3 export_trees.py
No ONNX converter for these frameworks is installable from Debian, so the graphs are built with
onnx.helper from the fitted models' own tree arrays. Every model gets trees/X.onnx and trees/X.json in
gen.py's case format ({"model", "cases": [{"inputs", "outputs"}]}; labels written as numbers, NaN
as null); the
expected outputs are what xgboost's and scikit-learn's predict/predict_proba return for the same
float32 inputs, some of them NaN (missing). The xgboost models are also saved in xgboost's own JSON
format (trees/xgb_*.model.json) for the Go XGBoost loader.

  xgb_reg        XGBRegressor (reg:squarederror), 30 trees depth 4 -> TreeEnsembleRegressor (BRANCH_LT,
                 missing values follow default_left, base_values = base_score)
  xgb_reg_v5     the same trees as TreeEnsemble of ai.onnx.ml 5 (nodes/leaves arrays, modes tensor)
  xgb_bin        XGBClassifier binary:logistic -> TreeEnsembleRegressor, post_transform LOGISTIC
  xgb_multi      XGBClassifier multi:softprob, 3 classes -> TreeEnsembleClassifier, SOFTMAX; label, probabilities
  rf_reg         RandomForestRegressor, 12 trees -> TreeEnsembleRegressor (BRANCH_LEQ, AVERAGE)
  rf_cls         RandomForestClassifier, 3 classes -> TreeEnsembleClassifier (+ ZipMap on the probabilities)
  gb_bin         GradientBoostingClassifier, binary -> TreeEnsembleClassifier in ONNX Runtime's binary form
                 (weights for one class, LOGISTIC: scores [sigmoid(-s), sigmoid(s)])
  logreg_multi   LogisticRegression, 3 classes -> LinearClassifier (SOFTMAX)
  logreg_bin     LogisticRegression, binary -> LinearClassifier with one row of coefficients (LOGISTIC)
  scaled_linreg  StandardScaler -> Normalizer(L2) -> LinearRegression as Scaler -> Normalizer -> LinearRegressor
"""

import json
import os

import numpy as np
import onnx
import xgboost as xgb
from onnx import TensorProto, helper
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.preprocessing import Normalizer, StandardScaler

SEED = 5
F = 6
OUT = "trees"
ML = "ai.onnx.ml"


def plain(v):
    """A tensor as {"shape", "data"}, NaN written as null (JSON has no NaN)."""
    flat = np.asarray(v, dtype=np.float64).ravel()
    return {"shape": list(np.shape(v)), "data": [None if np.isnan(x) else float(x) for x in flat]}


def write_cases(name, cases):
    doc = {"model": name + ".onnx", "cases": []}
    for inputs, outputs in cases:
        doc["cases"].append({
            "inputs": {k: plain(v) for k, v in inputs.items()},
            "outputs": {k: plain(v) for k, v in outputs.items()},
        })
    with open(os.path.join(OUT, name + ".json"), "w") as f:
        json.dump(doc, f, allow_nan=False)
        f.write("\n")


def save(name, nodes, outputs, ml_opset=3, inputs=None):
    inputs = inputs or [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", F])]
    g = helper.make_graph(nodes, name, inputs, outputs)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(ML, ml_opset)])
    m.ir_version = 8
    onnx.save(m, os.path.join(OUT, name + ".onnx"))


def data(rng, n, missing=True):
    X = rng.standard_normal((n, F)).astype(np.float32)
    if missing:
        X[rng.random((n, F)) < 0.1] = np.nan
    return X


def xgb_trees(booster):
    """The booster's trees from its own JSON dump, with tree_info (class per tree) and base_score."""
    path = "/tmp/_xgb_export.json"
    booster.save_model(path)
    with open(path) as f:
        d = json.load(f)
    model = d["learner"]["gradient_booster"]["model"]
    return model["trees"], model["tree_info"], float(d["learner"]["learner_model_param"]["base_score"]), d


def xgb_attrs(trees, tree_info, prefix):
    a = {k: [] for k in ["nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_modes", "nodes_values",
                         "nodes_truenodeids", "nodes_falsenodeids", "nodes_missing_value_tracks_true",
                         prefix + "_treeids", prefix + "_nodeids", prefix + "_ids", prefix + "_weights"]}
    for ti, t in enumerate(trees):
        for n in range(len(t["left_children"])):
            leaf = t["left_children"][n] == -1
            a["nodes_treeids"].append(ti)
            a["nodes_nodeids"].append(n)
            a["nodes_featureids"].append(0 if leaf else t["split_indices"][n])
            a["nodes_modes"].append("LEAF" if leaf else "BRANCH_LT")
            a["nodes_values"].append(0.0 if leaf else t["split_conditions"][n])
            a["nodes_truenodeids"].append(0 if leaf else t["left_children"][n])
            a["nodes_falsenodeids"].append(0 if leaf else t["right_children"][n])
            a["nodes_missing_value_tracks_true"].append(0 if leaf else int(t["default_left"][n]))
            if leaf:
                a[prefix + "_treeids"].append(ti)
                a[prefix + "_nodeids"].append(n)
                a[prefix + "_ids"].append(tree_info[ti])
                a[prefix + "_weights"].append(t["split_conditions"][n])
    return a


def sk_attrs(estimators, prefix, leaf_weights, mode="BRANCH_LEQ"):
    """Attributes for sklearn trees; leaf_weights(tree_index, tree, node) -> [(target, weight)]."""
    a = {k: [] for k in ["nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_modes", "nodes_values",
                         "nodes_truenodeids", "nodes_falsenodeids",
                         prefix + "_treeids", prefix + "_nodeids", prefix + "_ids", prefix + "_weights"]}
    for ti, est in enumerate(estimators):
        t = est.tree_
        for n in range(t.node_count):
            leaf = t.children_left[n] == -1
            a["nodes_treeids"].append(ti)
            a["nodes_nodeids"].append(n)
            a["nodes_featureids"].append(0 if leaf else int(t.feature[n]))
            a["nodes_modes"].append("LEAF" if leaf else mode)
            a["nodes_values"].append(0.0 if leaf else float(t.threshold[n]))
            a["nodes_truenodeids"].append(0 if leaf else int(t.children_left[n]))
            a["nodes_falsenodeids"].append(0 if leaf else int(t.children_right[n]))
            if leaf:
                for target, w in leaf_weights(ti, t, n):
                    a[prefix + "_treeids"].append(ti)
                    a[prefix + "_nodeids"].append(n)
                    a[prefix + "_ids"].append(target)
                    a[prefix + "_weights"].append(w)
    return a


def zipmap_output(name):
    """A value info of type sequence(map(int64, float)), as ZipMap declares its output."""
    vi = onnx.ValueInfoProto()
    vi.name = name
    mt = vi.type.sequence_type.elem_type.map_type
    mt.key_type = TensorProto.INT64
    mt.value_type.tensor_type.elem_type = TensorProto.FLOAT
    return vi


def to_v5(trees):
    """xgboost trees as TreeEnsemble (ai.onnx.ml 5) attributes."""
    feat, splits, modes, tn, tl, fn, fl, miss, roots, lt, lw = [], [], [], [], [], [], [], [], [], [], []
    for t in trees:
        left, right = t["left_children"], t["right_children"]
        node_index, leaf_index = {}, {}
        for n in range(len(left)):
            if left[n] == -1:
                leaf_index[n] = len(lt)
                lt.append(0)
                lw.append(t["split_conditions"][n])
            else:
                node_index[n] = len(feat) + len(node_index)
        base = len(feat)
        ordered = sorted(node_index, key=node_index.get)
        roots.append(node_index[0])
        for n in ordered:
            feat.append(t["split_indices"][n])
            splits.append(t["split_conditions"][n])
            modes.append(1)  # BRANCH_LT
            miss.append(int(t["default_left"][n]))
            for child, ids, leafs in ((left[n], tn, tl), (right[n], fn, fl)):
                if child in leaf_index:
                    ids.append(leaf_index[child])
                    leafs.append(1)
                else:
                    ids.append(node_index[child])
                    leafs.append(0)
        assert len(feat) == base + len(ordered)
    return dict(tree_roots=roots, nodes_featureids=feat, nodes_truenodeids=tn, nodes_trueleafs=tl,
                nodes_falsenodeids=fn, nodes_falseleafs=fl, nodes_missing_value_tracks_true=miss,
                leaf_targetids=lt,
                nodes_modes=helper.make_tensor("nodes_modes", TensorProto.UINT8, [len(modes)], modes),
                nodes_splits=helper.make_tensor("nodes_splits", TensorProto.FLOAT, [len(splits)], splits),
                leaf_weights=helper.make_tensor("leaf_weights", TensorProto.FLOAT, [len(lw)], lw))


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(SEED)
    Xtr = data(rng, 600)
    ytr = np.nan_to_num(Xtr[:, 0]) * 2 - np.nan_to_num(Xtr[:, 1]) ** 2 + 0.5 * np.nan_to_num(Xtr[:, 2] * Xtr[:, 3])
    ycls = (ytr > np.median(ytr)).astype(int)
    y3 = np.digitize(ytr, np.quantile(ytr, [1 / 3, 2 / 3]))
    Xte = np.concatenate([data(rng, 40), np.full((1, F), np.nan, dtype=np.float32)])
    cases = lambda out: [({"input": Xte[:1]}, {k: v[:1] for k, v in out.items()}), ({"input": Xte}, out)]
    f32 = lambda a: np.asarray(a, dtype=np.float32)

    # xgboost regression
    reg = xgb.XGBRegressor(n_estimators=30, max_depth=4, learning_rate=0.2, random_state=SEED).fit(Xtr, ytr)
    trees, info, base, _ = xgb_trees(reg.get_booster())
    reg.get_booster().save_model(os.path.join(OUT, "xgb_reg.model.json"))
    want = {"variable": f32(reg.predict(Xte)).reshape(-1, 1)}
    save("xgb_reg", [helper.make_node("TreeEnsembleRegressor", ["input"], ["variable"], domain=ML, n_targets=1,
                                      base_values=[base], **xgb_attrs(trees, info, "target"))],
         [helper.make_tensor_value_info("variable", TensorProto.FLOAT, ["N", 1])])
    write_cases("xgb_reg", cases(want))
    save("xgb_reg_v5", [helper.make_node("TreeEnsemble", ["input"], ["variable"], domain=ML, n_targets=1,
                                         aggregate_function=1, post_transform=0, **to_v5(trees))],
         [helper.make_tensor_value_info("variable", TensorProto.FLOAT, ["N", 1])], ml_opset=5)
    # TreeEnsemble has no base value: it is added in the default domain.
    m = onnx.load(os.path.join(OUT, "xgb_reg_v5.onnx"))
    m.graph.node[0].output[0] = "raw"
    m.graph.initializer.append(helper.make_tensor("base", TensorProto.FLOAT, [1], [base]))
    m.graph.node.append(helper.make_node("Add", ["raw", "base"], ["variable"]))
    onnx.save(m, os.path.join(OUT, "xgb_reg_v5.onnx"))
    write_cases("xgb_reg_v5", cases(want))

    # xgboost binary:logistic
    bin_ = xgb.XGBClassifier(n_estimators=25, max_depth=3, learning_rate=0.3, random_state=SEED).fit(Xtr, ycls)
    trees, info, base, _ = xgb_trees(bin_.get_booster())
    bin_.get_booster().save_model(os.path.join(OUT, "xgb_bin.model.json"))
    logit = float(np.log(base / (1 - base)))
    save("xgb_bin", [helper.make_node("TreeEnsembleRegressor", ["input"], ["probability"], domain=ML, n_targets=1,
                                      base_values=[logit], post_transform="LOGISTIC",
                                      **xgb_attrs(trees, info, "target"))],
         [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["N", 1])])
    write_cases("xgb_bin", cases({"probability": f32(bin_.predict_proba(Xte)[:, 1]).reshape(-1, 1)}))

    # xgboost multi:softprob
    multi = xgb.XGBClassifier(n_estimators=15, max_depth=3, objective="multi:softprob", random_state=SEED).fit(Xtr, y3)
    trees, info, base, _ = xgb_trees(multi.get_booster())
    multi.get_booster().save_model(os.path.join(OUT, "xgb_multi.model.json"))
    save("xgb_multi", [helper.make_node("TreeEnsembleClassifier", ["input"], ["label", "probabilities"], domain=ML,
                                        classlabels_int64s=[0, 1, 2], base_values=[base] * 3, post_transform="SOFTMAX",
                                        **xgb_attrs(trees, info, "class"))],
         [helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
          helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 3])])
    write_cases("xgb_multi", cases({"label": multi.predict(Xte), "probabilities": f32(multi.predict_proba(Xte))}))

    # scikit-learn forests and boosting (no NaN: these versions do not take missing values)
    Xtr0, Xte0 = np.nan_to_num(Xtr), np.nan_to_num(Xte)
    cases0 = lambda out: [({"input": Xte0[:1]}, {k: v[:1] for k, v in out.items()}), ({"input": Xte0}, out)]
    rf = RandomForestRegressor(n_estimators=12, max_depth=6, random_state=SEED).fit(Xtr0, ytr)
    a = sk_attrs(rf.estimators_, "target", lambda ti, t, n: [(0, float(t.value[n][0][0]))])
    save("rf_reg", [helper.make_node("TreeEnsembleRegressor", ["input"], ["variable"], domain=ML, n_targets=1,
                                     aggregate_function="AVERAGE", **a)],
         [helper.make_tensor_value_info("variable", TensorProto.FLOAT, ["N", 1])])
    write_cases("rf_reg", cases0({"variable": f32(rf.predict(Xte0.astype(np.float32))).reshape(-1, 1)}))

    rfc = RandomForestClassifier(n_estimators=10, max_depth=5, random_state=SEED).fit(Xtr0, y3)
    nt = len(rfc.estimators_)

    def rf_leaf(ti, t, n):
        v = t.value[n][0]
        return [(c, float(v[c] / v.sum() / nt)) for c in range(3)]

    a = sk_attrs(rfc.estimators_, "class", rf_leaf)
    save("rf_cls", [helper.make_node("TreeEnsembleClassifier", ["input"], ["label", "probabilities"], domain=ML,
                                     classlabels_int64s=[0, 1, 2], **a),
                    helper.make_node("ZipMap", ["probabilities"], ["output_probability"], domain=ML,
                                     classlabels_int64s=[0, 1, 2])],
         [helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
          zipmap_output("output_probability")])
    write_cases("rf_cls", cases0({"label": rfc.predict(Xte0), "output_probability": f32(rfc.predict_proba(Xte0))}))

    gb = GradientBoostingClassifier(n_estimators=20, max_depth=3, random_state=SEED).fit(Xtr0, ycls)
    init = float(gb._raw_predict_init(Xtr0[:1])[0][0])
    lr = gb.learning_rate

    def gb_leaf(ti, t, n):
        w = lr * float(t.value[n][0][0])
        return [(1, w + (init if ti == 0 else 0.0))]

    a = sk_attrs([e[0] for e in gb.estimators_], "class", gb_leaf)
    save("gb_bin", [helper.make_node("TreeEnsembleClassifier", ["input"], ["label", "probabilities"], domain=ML,
                                     classlabels_int64s=[0, 1], post_transform="LOGISTIC", **a)],
         [helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
          helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 2])])
    write_cases("gb_bin", cases0({"label": gb.predict(Xte0), "probabilities": f32(gb.predict_proba(Xte0))}))

    # linear models
    lm = LogisticRegression(max_iter=500).fit(Xtr0, y3)
    save("logreg_multi", [helper.make_node("LinearClassifier", ["input"], ["label", "probabilities"], domain=ML,
                                           classlabels_ints=[0, 1, 2], coefficients=lm.coef_.ravel().tolist(),
                                           intercepts=lm.intercept_.tolist(), multi_class=1, post_transform="SOFTMAX")],
         [helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
          helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 3])])
    write_cases("logreg_multi", cases0({"label": lm.predict(Xte0), "probabilities": f32(lm.predict_proba(Xte0))}))

    lb = LogisticRegression(max_iter=500).fit(Xtr0, ycls)
    save("logreg_bin", [helper.make_node("LinearClassifier", ["input"], ["label", "probabilities"], domain=ML,
                                         classlabels_ints=[0, 1], coefficients=lb.coef_.ravel().tolist(),
                                         intercepts=lb.intercept_.tolist(), post_transform="LOGISTIC")],
         [helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
          helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 2])])
    write_cases("logreg_bin", cases0({"label": lb.predict(Xte0), "probabilities": f32(lb.predict_proba(Xte0))}))

    sc = StandardScaler().fit(Xtr0)
    nz = Normalizer(norm="l2")
    lin = LinearRegression().fit(nz.transform(sc.transform(Xtr0)), ytr)
    save("scaled_linreg", [
        helper.make_node("Scaler", ["input"], ["scaled"], domain=ML, offset=sc.mean_.tolist(),
                         scale=(1 / sc.scale_).tolist()),
        helper.make_node("Normalizer", ["scaled"], ["normed"], domain=ML, norm="L2"),
        helper.make_node("LinearRegressor", ["normed"], ["variable"], domain=ML, coefficients=lin.coef_.tolist(),
                         intercepts=[float(lin.intercept_)], targets=1)],
        [helper.make_tensor_value_info("variable", TensorProto.FLOAT, ["N", 1])])
    pred = lin.predict(nz.transform(sc.transform(Xte0.astype(np.float64))))
    write_cases("scaled_linreg", cases0({"variable": f32(pred).reshape(-1, 1)}))
    print("wrote", sorted(os.listdir(OUT)))


if __name__ == "__main__":
    main()
