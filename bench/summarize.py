#!/usr/bin/python3
"""Summarizes bench/measure.sh's reports: the median of each measurement's
repetitions (by throughput for the max runs, by p99 for the fixed rates),
as a Markdown table.

  summarize.py OUT            the table
  summarize.py --half OUT N   half the median throughput of measurement N
"""
import glob
import json
import os
import statistics
import sys


def load(out):
    runs = {}
    for f in sorted(glob.glob(os.path.join(out, "*.json"))):
        name = os.path.basename(f).rsplit(".", 2)[0]
        try:
            with open(f) as fh:
                rep = json.load(fh)
        except (OSError, ValueError):
            continue
        up = f[: -len(".json")] + ".uptime"
        rep["_load"] = ""
        if os.path.exists(up):
            with open(up) as fh:
                rep["_load"] = fh.read().split("load average:")[-1].split(",")[0].strip()
        runs.setdefault(name, []).append(rep)
    return runs


def median_run(reps, key):
    reps = sorted(reps, key=lambda r: r.get(key, 0))
    return reps[(len(reps) - 1) // 2]


def main():
    if sys.argv[1] == "--half":
        reps = load(sys.argv[2]).get(sys.argv[3], [])
        ok = [r["throughput_rps"] for r in reps if r.get("lost", 1) == 0]
        print(int(statistics.median(ok) / 2) if ok else 1000)
        return
    runs = load(sys.argv[1])
    print("| run | n | throughput req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | sent | lost | dlq | RSS idle MB | RSS load MB | CPU cores | CPU µs/req | ready ms | other cores | load avg (1 min) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, reps in runs.items():
        key = "throughput_rps" if name.startswith("max") else "p99_ms"
        r = median_run(reps, key)
        lost = max(x.get("lost", 0) for x in reps)
        loads = "/".join(x["_load"] for x in reps)
        print(f"| {name} | {len(reps)} | {r['throughput_rps']:.0f} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['p99_ms']:.2f} | "
              f"{r['p999_ms']:.2f} | {r['max_ms']:.2f} | {r['sent']} | {lost} | {r['dlq']} | {r['rss_idle_mb']:.1f} | {r['rss_mb']:.1f} | "
              f"{r['cpu_cores']:.2f} | {r.get('cpu_us_per_request', 0):.1f} | {r['ready_ms']:.0f} | {r.get('other_cores', 0):.2f} | {loads} |")
    compares(sys.argv[1])


def compares(out):
    rows = []
    for f in sorted(glob.glob(os.path.join(out, "compare.*.cmp"))):
        try:
            with open(f) as fh:
                c = json.load(fh)
        except (OSError, ValueError):
            continue
        rows.append(c)
    if not rows:
        return
    print()
    print("| --compare run | pipeline req/s | baseline req/s | ratio | lost (pipeline/baseline) |")
    print("|---|---|---|---|---|")
    for i, c in enumerate(rows, 1):
        p, b = c["pipeline"], c["baseline"]
        print(f"| {i} | {p['throughput_rps']:.0f} | {b['throughput_rps']:.0f} | {c['ratio']:.0f}x | {p['lost']}/{b['lost']} |")


if __name__ == "__main__":
    main()
