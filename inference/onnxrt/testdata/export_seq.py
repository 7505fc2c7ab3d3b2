#!/usr/bin/python3
"""Writes the recurrent test models and torch's outputs for them.

Run from this directory with Debian's python3-torch and python3-onnx:
    /usr/bin/python3 export_seq.py
Each model X.onnx gets X.json in gen.py's format ({"model", "cases": [{"inputs",
"outputs"}]}, float32), with the outputs torch computed for fixed random inputs.
The models are exported at opsets 13 and 17 with a dynamic batch dimension:

  lstm_cls   LSTM(8→32) over 50 steps × 8 channels, last step → Linear(32→3) (a classifier)
  gru_cls    GRU(8→32), final hidden state → Linear(32→1) → Sigmoid
  bilstm     2-layer bidirectional LSTM(8→24), mean over time → Linear(48→2)
  rnn_relu   RNN(8→16, relu) with the initial hidden state as a second input; all steps and h_n out
  lstm_state LSTM(8→16) with h0 and c0 as inputs; outputs y, h_n, c_n

torch's GRU is ONNX GRU with linear_before_reset=1; torch's LSTM gate order is
rearranged by the exporter into ONNX's (i, o, f, c).
"""

import json

import numpy as np
import torch
from torch import nn

SEED = 11
STEPS, CH = 50, 8


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


class LSTMCls(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(CH, 32, batch_first=True)
        self.fc = nn.Linear(32, 3)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.fc(y[:, -1, :])


class GRUCls(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(CH, 32, batch_first=True)
        self.fc = nn.Linear(32, 1)

    def forward(self, x):
        _, h = self.rnn(x)
        return torch.sigmoid(self.fc(h[-1]))


class BiLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(CH, 24, num_layers=2, bidirectional=True, batch_first=True)
        self.fc = nn.Linear(48, 2)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.fc(y.mean(dim=1))


class RNNRelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.RNN(CH, 16, nonlinearity="relu")

    def forward(self, x, h0):  # x [T, N, C] (time-major), h0 [1, N, 16]
        return self.rnn(x, h0)


class LSTMState(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(CH, 16)

    def forward(self, x, h0, c0):
        y, (h, c) = self.rnn(x, (h0, c0))
        return y, h, c


def export(name, module, inputs, input_names, output_names, dyn, opset):
    module.eval()
    fname = f"{name}_opset{opset}"
    torch.onnx.export(module, tuple(torch.zeros_like(t) for t in inputs), fname + ".onnx",
                      input_names=input_names, output_names=output_names,
                      dynamic_axes=dyn, opset_version=opset)
    return fname


def main():
    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    models = [
        ("lstm_cls", LSTMCls(), "batch-first"),
        ("gru_cls", GRUCls(), "batch-first"),
        ("bilstm", BiLSTM(), "batch-first"),
        ("rnn_relu", RNNRelu(), "state1"),
        ("lstm_state", LSTMState(), "state2"),
    ]
    for name, m, kind in models:
        m.eval()
        for opset in (13, 17):
            if kind == "batch-first":
                ex = (torch.zeros(2, STEPS, CH),)
                names, outs = ["x"], ["y"]
                dyn = {"x": {0: "batch"}, "y": {0: "batch"}}
            elif kind == "state1":
                ex = (torch.zeros(STEPS, 2, CH), torch.zeros(1, 2, 16))
                names, outs = ["x", "h0"], ["y", "h_n"]
                dyn = {"x": {1: "batch"}, "h0": {1: "batch"}, "y": {1: "batch"}, "h_n": {1: "batch"}}
            else:
                ex = (torch.zeros(STEPS, 2, CH), torch.zeros(1, 2, 16), torch.zeros(1, 2, 16))
                names, outs = ["x", "h0", "c0"], ["y", "h_n", "c_n"]
                dyn = {"x": {1: "batch"}, "h0": {1: "batch"}, "c0": {1: "batch"},
                       "y": {1: "batch"}, "h_n": {1: "batch"}, "c_n": {1: "batch"}}
            fname = export(name, m, ex, names, outs, dyn, opset)
            cases = []
            for n in (1, 3):
                ins = []
                for t in ex:
                    shape = list(t.shape)
                    shape[0 if kind == "batch-first" else 1] = n
                    ins.append(rng.standard_normal(shape).astype(np.float32))
                with torch.no_grad():
                    res = m(*[torch.from_numpy(a) for a in ins])
                if not isinstance(res, tuple):
                    res = (res,)
                cases.append(({k: v for k, v in zip(names, ins)},
                              {k: r.numpy().astype(np.float32) for k, r in zip(outs, res)}))
            write_cases(fname, fname + ".onnx", cases)
            print("wrote", fname)


if __name__ == "__main__":
    main()
