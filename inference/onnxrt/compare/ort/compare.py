#!/usr/bin/python3
"""Times models with infergate (`infergate model bench`) and ONNX Runtime
(bench.js, onnxruntime-node) in one run, same thread count, interleaved so
both see the same machine load, and prints the markdown table of
docs/runtime.md.

    cd inference/onnxrt/compare/ort && npm install --ignore-scripts
    go build -o /tmp/infergate ./cmd/infergate     (from the repository root)
    /usr/bin/python3 compare.py --infergate /tmp/infergate [--rounds 3] [--duration 2]
        [--models cnn2d,transformer_opset17.onnx] [--threads 1,2] [--batches 1,32] [--before /tmp/infergate-old]

With --before, a previous build runs in the same rounds too (before, after,
ONNX Runtime, in turn) and the table gains its CPU time and CPU ratio.

Each cell is the median over the rounds of each run's median call. "CPU"
is process CPU time per call (all threads), which on a loaded machine says
more about the work done than wall time does.
"""

import argparse
import json
import os
import statistics
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
TESTDATA = os.path.join(HERE, "..", "..", "testdata")
MODELS = ["cnn2d", "cnn1d", "mobilenet", "resnet"]


def run_infergate(exe, model, batch, threads, duration):
    out = subprocess.run([exe, "model", "bench", model, "--batch", str(batch), "--threads", str(threads),
                          "--duration", f"{duration}s", "--json"], check=True, capture_output=True, text=True).stdout
    return json.loads(out)["results"][0]


def run_ort(model, batch, threads, duration):
    out = subprocess.run(["node", os.path.join(HERE, "bench.js"), model, "--batch", str(batch), "--threads", str(threads),
                          "--duration", str(duration)], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--infergate", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=2)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--before", help="a previous infergate build, timed in the same rounds")
    args = ap.parse_args()
    extra, sep = "", ""
    if args.before:
        extra, sep = " before CPU µs | before CPU ratio |", "---|---|"
    print("| model | threads | batch | infergate µs | ONNX Runtime µs | ratio | infergate CPU µs | ORT CPU µs | CPU ratio |" + extra)
    print("|---|---|---|---|---|---|---|---|---|" + sep)
    for name in args.models.split(","):
        # A name ending in .onnx is a file under testdata/ (trees/xgb_reg.onnx).
        path = os.path.join(TESTDATA, name if name.endswith(".onnx") else f"{name}_opset13.onnx")
        for threads in (int(t) for t in args.threads.split(",")):
            for batch in (int(b) for b in args.batches.split(",")):
                ig, ort, old = [], [], []
                for _ in range(args.rounds):
                    if args.before:
                        old.append(run_infergate(args.before, path, batch, threads, args.duration))
                    ig.append(run_infergate(args.infergate, path, batch, threads, args.duration))
                    ort.append(run_ort(path, batch, threads, args.duration))
                iw = statistics.median(r["us_per_call"] for r in ig)
                ow = statistics.median(r["us_per_call"] for r in ort)
                ic = statistics.median(r["cpu_us_per_call"] for r in ig)
                oc = statistics.median(r["cpu_us_per_call"] for r in ort)
                row = f"| {name} | {threads} | {batch} | {iw:.0f} | {ow:.0f} | {iw / ow:.2f} | {ic:.0f} | {oc:.0f} | {ic / oc:.2f} |"
                if old:
                    bc = statistics.median(r["cpu_us_per_call"] for r in old)
                    row += f" {bc:.0f} | {bc / oc:.2f} |"
                print(row, flush=True)


if __name__ == "__main__":
    main()
