#!/usr/bin/python3
"""Writes a transformer encoder layer and torch's outputs for it.

Run from this directory with Debian's python3-torch and python3-onnx:
    /usr/bin/python3 export_transformer.py
transformer_opset13.onnx / _opset17.onnx (dynamic batch) and .json in gen.py's
format. The layer is written out (not nn.TransformerEncoderLayer, whose
fused eval-mode path torch 1.13 cannot export) the way such a layer is built:
pre-norm, 4-head self-attention over 32 tokens of width 64 (Q/K/V
projections, scaled dot products, softmax, output projection), a GELU
feed-forward 64→256→64, residual adds; then mean over tokens and a
Linear(64→4) head. Opset 13 exports LayerNorm as a ReduceMean chain, opset 17
as LayerNormalization; GELU becomes Erf arithmetic.
"""

import json
import math

import numpy as np
import torch
from torch import nn

SEED = 13
TOKENS, D, HEADS, FF = 32, 64, 4, 256


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1 = nn.LayerNorm(D)
        self.q = nn.Linear(D, D)
        self.k = nn.Linear(D, D)
        self.v = nn.Linear(D, D)
        self.o = nn.Linear(D, D)
        self.ln2 = nn.LayerNorm(D)
        self.ff1 = nn.Linear(D, FF)
        self.ff2 = nn.Linear(FF, D)
        self.head = nn.Linear(D, 4)

    def forward(self, x):  # x [N, T, D]
        n, t, d = x.shape
        h = self.ln1(x)
        dh = D // HEADS

        def split(y):
            return y.reshape(n, t, HEADS, dh).transpose(1, 2)  # [N, H, T, dh]

        q, k, v = split(self.q(h)), split(self.k(h)), split(self.v(h))
        att = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(dh), dim=-1)
        y = (att @ v).transpose(1, 2).reshape(n, t, d)
        x = x + self.o(y)
        x = x + self.ff2(nn.functional.gelu(self.ff1(self.ln2(x))))
        return self.head(x.mean(dim=1))


def main():
    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    m = Encoder().eval()
    for opset in (13, 17):
        name = f"transformer_opset{opset}"
        torch.onnx.export(m, (torch.zeros(2, TOKENS, D),), name + ".onnx", input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, opset_version=opset)
        doc = {"model": name + ".onnx", "cases": []}
        for batch in (1, 3):
            x = rng.standard_normal((batch, TOKENS, D)).astype(np.float32)
            with torch.no_grad():
                y = m(torch.from_numpy(x)).numpy()
            doc["cases"].append({"inputs": {"x": {"shape": list(x.shape), "data": x.ravel().tolist()}},
                                 "outputs": {"y": {"shape": list(y.shape), "data": y.ravel().tolist()}}})
        with open(name + ".json", "w") as f:
            json.dump(doc, f)
            f.write("\n")


if __name__ == "__main__":
    main()
