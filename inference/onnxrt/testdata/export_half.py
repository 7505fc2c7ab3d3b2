#!/usr/bin/python3
"""Writes mlp64_fp16.onnx: gen.py's torch-exported mlp64.onnx (16→64→64→1, ReLU,
ReLU, Sigmoid) converted to float16 the way onnx tools do it — every float
initializer stored as FLOAT16, the graph input and output declared FLOAT16 —
and mlp64_fp16.json with numpy's outputs for it: the same layers in float32
over the float16 weights, the output rounded to float16.

Run from this directory with Debian's python3-onnx (torch only made mlp64.onnx):
    /usr/bin/python3 export_half.py
"""

import json

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper


def main():
    m = onnx.load("mlp64.onnx")
    weights = {}
    inits = []
    for t in m.graph.initializer:
        a = numpy_helper.to_array(t).astype(np.float16)
        weights[t.name] = a.astype(np.float32)
        inits.append(numpy_helper.from_array(a, t.name))
    del m.graph.initializer[:]
    m.graph.initializer.extend(inits)
    m.graph.input[0].type.tensor_type.elem_type = TensorProto.FLOAT16
    m.graph.output[0].type.tensor_type.elem_type = TensorProto.FLOAT16
    onnx.checker.check_model(m)
    onnx.save(m, "mlp64_fp16.onnx")

    rng = np.random.default_rng(16)
    doc = {"model": "mlp64_fp16.onnx", "cases": []}
    for batch in (1, 5):
        x = rng.standard_normal((batch, 16)).astype(np.float16).astype(np.float32)
        h = x
        for i, act in ((0, "relu"), (2, "relu"), (4, "sigmoid")):
            h = h @ weights[f"{i}.weight"].T + weights[f"{i}.bias"]
            h = np.maximum(h, 0) if act == "relu" else 1 / (1 + np.exp(-h))
        y = h.astype(np.float16).astype(np.float32)
        doc["cases"].append({"inputs": {"input": {"shape": list(x.shape), "data": x.ravel().tolist()}},
                             "outputs": {m.graph.output[0].name: {"shape": list(y.shape), "data": y.ravel().tolist()}}})
    with open("mlp64_fp16.json", "w") as f:
        json.dump(doc, f)
        f.write("\n")


if __name__ == "__main__":
    main()
