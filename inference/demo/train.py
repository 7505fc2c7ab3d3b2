#!/usr/bin/python3
"""Trains and exports infergate's bundled demo model (demo.onnx).

The model scores one reading of 16 sensor channels with an anomaly score in
[0, 1]: input `input` float32 [-1, 16], output `output` float32 [-1, 1], ONNX
opset 13, batch dimension dynamic. Everything is seeded, so a rerun on the same
torch build gives the same file.

Run from this directory with Debian's packages (python3-torch, python3-onnx):
    /usr/bin/python3 train.py
It writes demo.onnx here and the runtime's test vectors to
../onnxrt/testdata/demo.json (inputs and torch's outputs for them).

The distribution of readings. generator.go produces the same one for the
appliance's --demo traffic; keep the two in step.

Normal operation, one reading:
    theta ~ U[0, 2*pi)          position in the machine's cycle
    a     ~ U[0.8, 1.2]         load
    for channel c in 0..15:
        h_c   = 1 + c % 3                 harmonic the channel follows
        phi_c = 2*pi*c / 16               its phase
        o_c   = 0.25 * (c % 4) - 0.375    its offset
        x_c   = o_c + a * sin(h_c*theta + phi_c) + N(0, 0.05^2)
Anomalies: a normal reading, then one of three faults with equal probability:
    spike: 1-3 distinct channels each get +/- U[2, 4] added (sign per channel)
    drift: 4-8 distinct channels all get the same offset +/- U[0.8, 1.6]
    stuck: 3-6 distinct channels are all set to one value v ~ U[-1.5, 1.5],
           without noise (a frozen or shorted sensor group)
Channel counts are uniform over their ranges.
"""

import json
import math
import os

import numpy as np
import torch
from torch import nn

CHANNELS = 16
SEED = 20240611


def normal_readings(rng, n):
    theta = rng.uniform(0.0, 2 * math.pi, size=(n, 1))
    a = rng.uniform(0.8, 1.2, size=(n, 1))
    c = np.arange(CHANNELS)
    h = 1 + c % 3
    phi = 2 * math.pi * c / CHANNELS
    o = 0.25 * (c % 4) - 0.375
    x = o + a * np.sin(h * theta + phi) + rng.normal(0.0, 0.05, size=(n, CHANNELS))
    return x.astype(np.float32)


def anomalous_readings(rng, n):
    x = normal_readings(rng, n)
    kinds = rng.integers(0, 3, size=n)
    for i in range(n):
        if kinds[i] == 0:  # spike
            k = rng.integers(1, 4)
            ch = rng.choice(CHANNELS, size=k, replace=False)
            sign = rng.choice([-1.0, 1.0], size=k)
            x[i, ch] += sign * rng.uniform(2.0, 4.0, size=k)
        elif kinds[i] == 1:  # drift
            k = rng.integers(4, 9)
            ch = rng.choice(CHANNELS, size=k, replace=False)
            x[i, ch] += rng.choice([-1.0, 1.0]) * rng.uniform(0.8, 1.6)
        else:  # stuck
            k = rng.integers(3, 7)
            ch = rng.choice(CHANNELS, size=k, replace=False)
            x[i, ch] = rng.uniform(-1.5, 1.5)
    return x, kinds


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    rng = np.random.default_rng(SEED)
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)

    n = 40000
    xn = normal_readings(rng, n)
    xa, _ = anomalous_readings(rng, n)
    x = torch.from_numpy(np.concatenate([xn, xa]))
    y = torch.cat([torch.zeros(n, 1), torch.ones(n, 1)])

    model = nn.Sequential(
        nn.Linear(CHANNELS, 32), nn.ReLU(),
        nn.Linear(32, 16), nn.ReLU(),
        nn.Linear(16, 1), nn.Sigmoid(),
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    loss_fn = nn.BCELoss()
    gen = torch.Generator().manual_seed(SEED)
    for epoch in range(40):
        perm = torch.randperm(len(x), generator=gen)
        total = 0.0
        for i in range(0, len(x), 256):
            idx = perm[i:i + 256]
            opt.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        if epoch % 10 == 9:
            print(f"epoch {epoch + 1}: loss {total / len(x):.4f}")

    model.eval()
    test_rng = np.random.default_rng(SEED + 1)
    tn = normal_readings(test_rng, 5000)
    ta, kinds = anomalous_readings(test_rng, 5000)
    with torch.no_grad():
        sn = model(torch.from_numpy(tn)).numpy().ravel()
        sa = model(torch.from_numpy(ta)).numpy().ravel()
    print(f"held out: normal mean score {sn.mean():.3f}, flagged (>0.5) {np.mean(sn > 0.5):.3f}")
    for k, name in enumerate(["spike", "drift", "stuck"]):
        s = sa[kinds == k]
        print(f"held out: {name} mean score {s.mean():.3f}, flagged {np.mean(s > 0.5):.3f}")

    path = os.path.join(here, "demo.onnx")
    torch.onnx.export(
        model, torch.zeros(1, CHANNELS), path,
        input_names=["input"], output_names=["output"],
        dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        opset_version=13, do_constant_folding=True,
    )
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")

    # Test vectors for the Go runtime: a few of each kind, batch 9.
    vec = np.concatenate([tn[:4], ta[:5]])
    with torch.no_grad():
        out = model(torch.from_numpy(vec)).numpy()
    tv = {
        "model": "../../demo/demo.onnx",
        "cases": [{
            "inputs": {"input": {"shape": list(vec.shape), "data": vec.ravel().tolist()}},
            "outputs": {"output": {"shape": list(out.shape), "data": out.ravel().tolist()}},
        }],
    }
    tv_path = os.path.join(here, "..", "onnxrt", "testdata", "demo.json")
    with open(tv_path, "w") as f:
        json.dump(tv, f, indent=1)
        f.write("\n")
    print(f"wrote {tv_path}")


if __name__ == "__main__":
    main()
