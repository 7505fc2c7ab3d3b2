#!/usr/bin/python3
"""Exports the convolution test models from torch, with torch's own outputs.

Run from this directory with Debian's python3-torch and python3-onnx:
    /usr/bin/python3 export_cnn.py
Writes, at opsets 13 and 17 with a dynamic batch dimension:
    cnn2d_opsetN.onnx     defect detector on [N,3,64,64]: 3 conv blocks
                          3->16->32->64 (3x3 conv, BatchNorm, ReLU, 2x2 max
                          pool), global average pool, linear 64->4, softmax
    cnn1d_opsetN.onnx     vibration windows [N,3,256]: conv1d k7/k5/k3
                          3->16->32->64 with ReLU and max pool, global
                          average pool, linear 64->1
    mobilenet_opsetN.onnx MobileNetV2 inverted residual on [N,32,32,32]:
                          1x1 expand to 64, ReLU6, depthwise 3x3, ReLU6,
                          1x1 project to 32, BatchNorms, residual add
    resnet_opsetN.onnx    ResNet basic block on [N,32,32,32] with stride 2
                          and a 1x1 downsample path: 32->64 channels
and conv_cases.json: for each model, the outputs torch computes at batch 1
and 3 (for outputs over 4096 values, every 13th value of the flattened
output, to keep the file small). Inputs are not stored (they would dominate the file): element i of
the flattened input, batch b, is sin(0.01*i + 0.7*b) (computed in float64,
then rounded to float32); the Go test builds the same inputs.
"""

import json
import math

import numpy as np
import torch
from torch import nn

torch.manual_seed(11)


def randomize_bn(m):
    """Gives BatchNorms non-trivial statistics so folding them is tested."""
    for mod in m.modules():
        if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
            with torch.no_grad():
                c = mod.num_features
                mod.running_mean.copy_(torch.randn(c) * 0.1)
                mod.running_var.copy_(torch.rand(c) + 0.5)
                mod.weight.copy_(torch.rand(c) + 0.5)
                mod.bias.copy_(torch.randn(c) * 0.1)


class CNN2D(nn.Module):
    def __init__(self):
        super().__init__()
        layers = []
        for cin, cout in [(3, 16), (16, 32), (32, 64)]:
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, 4)

    def forward(self, x):
        h = self.pool(self.features(x)).flatten(1)
        return torch.softmax(self.fc(h), dim=1)


class CNN1D(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv1d(3, 16, 7, padding=3), nn.ReLU(), nn.MaxPool1d(2),
            nn.Conv1d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2),
            nn.Conv1d(32, 64, 3, padding=1), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(64, 1)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


class MobileNetBlock(nn.Module):
    def __init__(self, c=32, expand=2):
        super().__init__()
        h = c * expand
        self.block = nn.Sequential(
            nn.Conv2d(c, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU6(),
            nn.Conv2d(h, h, 3, padding=1, groups=h, bias=False), nn.BatchNorm2d(h), nn.ReLU6(),
            nn.Conv2d(h, c, 1, bias=False), nn.BatchNorm2d(c),
        )

    def forward(self, x):
        return x + self.block(x)


class ResNetBlock(nn.Module):
    def __init__(self, cin=32, cout=64, stride=2):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        h = torch.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return torch.relu(h + self.down(x))


MODELS = [
    ("cnn2d", CNN2D, (3, 64, 64)),
    ("cnn1d", CNN1D, (3, 256)),
    ("mobilenet", MobileNetBlock, (32, 32, 32)),
    ("resnet", ResNetBlock, (32, 32, 32)),
]


def make_input(batch, shape):
    n = int(np.prod(shape))
    x = np.empty((batch, n), dtype=np.float32)
    for b in range(batch):
        x[b] = np.sin(0.01 * np.arange(n, dtype=np.float64) + 0.7 * b).astype(np.float32)
    return x.reshape((batch,) + shape)


def main():
    cases = {}
    for name, cls, shape in MODELS:
        m = cls()
        randomize_bn(m)
        m.eval()
        for opset in (13, 17):
            path = f"{name}_opset{opset}.onnx"
            torch.onnx.export(m, torch.from_numpy(make_input(1, shape)), path, opset_version=opset,
                              input_names=["input"], output_names=["output"],
                              dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
        outs = []
        for batch in (1, 3):
            with torch.no_grad():
                y = m(torch.from_numpy(make_input(batch, shape))).numpy()
            flat = y.ravel()
            stride = 1 if flat.size <= 4096 else 13
            outs.append({"batch": batch, "shape": list(y.shape), "stride": stride,
                         "data": [float("%.8g" % v) for v in flat[::stride]]})
        cases[name] = {"input_shape": list(shape), "outputs": outs}
    with open("conv_cases.json", "w") as f:
        json.dump(cases, f)
        f.write("\n")


if __name__ == "__main__":
    main()
