#!/usr/bin/python3
"""Writes the runtime's test models and their expected outputs.

Run from this directory with Debian's python3-torch and python3-onnx:
    /usr/bin/python3 gen.py
Each model X.onnx gets X.json: {"model": file, "cases": [{"inputs": {name:
{"shape", "data"}}, "outputs": {name: {"shape", "data"}}}]}, all float32.
Expected outputs come from torch (for exported modules) or numpy (for
hand-built graphs), never from the Go runtime under test.

demo.json (the bundled demo model) is written by ../../demo/train.py.
"""

import json

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from torch import nn

SEED = 7


def write_cases(name, model_file, cases):
    doc = {"model": model_file, "cases": []}
    for inputs, outputs in cases:
        doc["cases"].append({
            "inputs": {k: {"shape": list(v.shape), "data": v.ravel().tolist()} for k, v in inputs.items()},
            "outputs": {k: {"shape": list(v.shape), "data": v.ravel().tolist()} for k, v in outputs.items()},
        })
    with open(name + ".json", "w") as f:
        json.dump(doc, f)
        f.write("\n")


class Ops(nn.Module):
    """Touches most supported operators the way torch exports them."""

    def __init__(self):
        super().__init__()
        self.k = nn.Parameter(torch.randn(4))
        self.fc1 = nn.Linear(32, 12)                      # Gemm, transB=1
        self.w = nn.Parameter(torch.randn(12, 6) * 0.5)   # MatMul
        self.b = nn.Parameter(torch.randn(6))             # Add (bias)
        self.bn = nn.BatchNorm1d(6)
        with torch.no_grad():
            self.bn.running_mean.copy_(torch.randn(6) * 0.1)
            self.bn.running_var.copy_(torch.rand(6) + 0.5)
            self.bn.weight.copy_(torch.rand(6) + 0.5)
            self.bn.bias.copy_(torch.randn(6) * 0.1)

    def forward(self, x):                                 # x [N, 8]
        u = x.unsqueeze(2) * self.k                       # general broadcast -> [N, 8, 4]
        u = torch.flatten(u, 1)                           # [N, 32]
        h = F.leaky_relu(self.fc1(u), 0.1)
        h = torch.tanh(h @ self.w + self.b)               # [N, 6]
        h = self.bn(h)
        s = torch.softmax(h, dim=-1)
        e = torch.exp(torch.clamp(h, -1.0, 0.5))
        p = torch.sqrt(h.pow(2) + 1.0)
        q = (s - e) * p / (e + 2.0)
        c = torch.cat([q, s, torch.sigmoid(h)], dim=1)    # [N, 18]
        r = c.view(c.size(0), 3, 6)                       # Shape/Gather/Unsqueeze/Concat/Reshape
        r = r.transpose(1, 2).unsqueeze(1).squeeze(1)     # [N, 6, 3]
        f = torch.flatten(r, 1) - 0.25                    # [N, 18]
        return f, s


class Norm(nn.Module):
    """Slicing, reductions and layer norm (LayerNormalization at opset 17,
    a ReduceMean/Sub/Pow/Sqrt/Div chain before)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(10, 8)
        self.ln = nn.LayerNorm(8)
        with torch.no_grad():
            self.ln.weight.copy_(torch.rand(8) + 0.5)
            self.ln.bias.copy_(torch.randn(8) * 0.1)

    def forward(self, x):                                 # x [N, 12]
        s = x[:, 1:11]                                    # Slice
        r = x[:, 0:12:3]                                  # Slice with a step
        h = self.ln(torch.relu(self.fc(s)))
        m = h.mean(dim=1, keepdim=True)                   # ReduceMean
        sm = r.sum(dim=1)                                 # ReduceSum
        mx = h.amax(dim=1)                                # ReduceMax
        mn = h.amin(dim=1)                                # ReduceMin
        return torch.cat([h - m, (sm + mx - mn).unsqueeze(1)], dim=1)


def export_norm(opset):
    torch.manual_seed(SEED)
    m = Norm().eval()
    name = f"norm_opset{opset}"
    torch.onnx.export(
        m, torch.zeros(2, 12), name + ".onnx", input_names=["x"], output_names=["y"],
        dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, opset_version=opset,
    )
    rng = np.random.default_rng(SEED)
    cases = []
    for n in (1, 4):
        x = rng.normal(size=(n, 12)).astype(np.float32)
        with torch.no_grad():
            cases.append(({"x": x}, {"y": m(torch.from_numpy(x)).numpy()}))
    write_cases(name, name + ".onnx", cases)
    ops = sorted({n.op_type for n in onnx.load(name + ".onnx").graph.node})
    print(f"{name}.onnx: {', '.join(ops)}")


def export_ops(opset):
    torch.manual_seed(SEED)
    m = Ops().eval()
    name = f"ops_opset{opset}"
    torch.onnx.export(
        m, torch.zeros(2, 8), name + ".onnx",
        input_names=["x"], output_names=["features", "probs"],
        dynamic_axes={"x": {0: "n"}, "features": {0: "n"}, "probs": {0: "n"}},
        opset_version=opset, do_constant_folding=True,
    )
    rng = np.random.default_rng(SEED)
    cases = []
    for n in (1, 3, 9):
        x = rng.normal(0, 1.5, size=(n, 8)).astype(np.float32)
        with torch.no_grad():
            f, s = m(torch.from_numpy(x))
        cases.append(({"x": x}, {"features": f.numpy(), "probs": s.numpy()}))
    write_cases(name, name + ".onnx", cases)
    ops = sorted({n.op_type for n in onnx.load(name + ".onnx").graph.node})
    print(f"{name}.onnx: {', '.join(ops)}")


def gemm_model():
    """Hand-built Gemm variants, checked against numpy."""
    rng = np.random.default_rng(SEED)
    f32 = lambda *s: rng.normal(size=s).astype(np.float32)
    w1, c1 = f32(3, 5), f32(3)
    w2, c2 = f32(5, 3), f32(1, 3)
    w3, c3 = f32(3, 2), f32(2)
    w4, c4 = f32(5, 4), f32(1)
    inits = [numpy_helper.from_array(a, n) for a, n in
             [(w1, "w1"), (c1, "c1"), (w2, "w2"), (c2, "c2"), (w3, "w3"), (c3, "c3"), (w4, "w4"), (c4, "c4")]]
    nodes = [
        # alpha/beta and transB with a per-column C.
        helper.make_node("Gemm", ["x", "w1", "c1"], ["g1"], alpha=0.5, beta=2.0, transB=1),
        # transA over a computed A, C of shape [1, N].
        helper.make_node("Transpose", ["x"], ["xt"]),
        helper.make_node("Gemm", ["xt", "w2", "c2"], ["g2"], transA=1),
        # B computed at run time, transB: the generic path.
        helper.make_node("Gemm", ["g1", "g2"], ["g3"], transB=1, alpha=0.25),
        # MatMul + Add + Relu, fused by the runtime.
        helper.make_node("MatMul", ["g2", "w3"], ["m"]),
        helper.make_node("Add", ["m", "c3"], ["ma"]),
        helper.make_node("Relu", ["ma"], ["fused"]),
        # A narrow-enough and a wide output with scalar-like C and beta.
        helper.make_node("Gemm", ["x", "w4", "c4"], ["g4"], beta=-1.0),
        helper.make_node("Sigmoid", ["g4"], ["g4s"]),
    ]
    outs = [
        helper.make_tensor_value_info("g1", TensorProto.FLOAT, ["n", 3]),
        helper.make_tensor_value_info("g3", TensorProto.FLOAT, ["n", "n"]),
        helper.make_tensor_value_info("fused", TensorProto.FLOAT, ["n", 2]),
        helper.make_tensor_value_info("g4s", TensorProto.FLOAT, ["n", 4]),
    ]
    graph = helper.make_graph(nodes, "gemm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 5])],
                              outs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="gen.py")
    model.ir_version = 7
    onnx.checker.check_model(model)
    onnx.save(model, "gemm.onnx")

    def ref(x):
        x = x.astype(np.float64)
        g1 = 0.5 * x @ w1.T + 2.0 * c1
        g2 = x @ w2 + c2
        g3 = 0.25 * g1 @ g2.T
        fused = np.maximum(g2 @ w3 + c3, 0)
        g4 = 1 / (1 + np.exp(-(x @ w4 - c4)))
        return {k: v.astype(np.float32) for k, v in
                {"g1": g1, "g3": g3, "fused": fused, "g4s": g4}.items()}

    cases = []
    for n in (1, 4, 6):
        x = f32(n, 5)
        cases.append(({"x": x}, ref(x)))
    write_cases("gemm", "gemm.onnx", cases)
    print("gemm.onnx: hand-built")


def mlp64():
    """16->64->64->1 (ReLU, ReLU, Sigmoid): the mlp measured in
    shared/model-runtimes.md, so benchmarks compare with those numbers."""
    torch.manual_seed(SEED)
    m = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                      nn.Linear(64, 1), nn.Sigmoid()).eval()
    torch.onnx.export(
        m, torch.zeros(1, 16), "mlp64.onnx", input_names=["input"], output_names=["output"],
        dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, opset_version=13,
    )
    rng = np.random.default_rng(SEED)
    cases = []
    for n in (1, 5, 64):
        x = rng.normal(size=(n, 16)).astype(np.float32)
        with torch.no_grad():
            cases.append(({"input": x}, {"output": m(torch.from_numpy(x)).numpy()}))
    write_cases("mlp64", "mlp64.onnx", cases)
    print("mlp64.onnx: 16->64->64->1")


if __name__ == "__main__":
    torch.set_num_threads(1)
    export_ops(13)
    export_ops(11)
    gemm_model()
    mlp64()
    export_norm(13)
    export_norm(17)
