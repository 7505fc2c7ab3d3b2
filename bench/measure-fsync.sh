#!/usr/bin/env bash
# Interleaves two (or more) infergate binaries on the pipeline's figures with
# the default broker durability fsync (docs/performance.md, "The fsync group
# commit: before and after"): for each round and each binary, --rate max,
# --rate 1000 and --rate 120000 (about half the max), 20 s after a 3 s warmup.
# Keeps each run's JSON report and `uptime` in OUT and prints one line per run.
#
#   bench/measure-fsync.sh OUT ROUNDS /tmp/ig-before /tmp/ig-after
set -euo pipefail
out=${1:?OUT}
rounds=${2:?ROUNDS}
shift 2
mkdir -p "$out"

run() { # bin tag name args...
	local bin=$1 tag=$2 name=$3
	shift 3
	local f="$out/$name.$tag.$round"
	uptime >"$f.uptime"
	"$bin" bench --quiet --json --duration 20s --warmup 3s "$@" >"$f.json" 2>/dev/null || true
	/usr/bin/python3 - "$f" "$name" "$tag" "$round" <<'PY'
import json, sys
f, name, tag, rnd = sys.argv[1:]
try:
    r = json.load(open(f + ".json"))
except Exception as e:
    print(f"{name:12} {tag:10} #{rnd} no report ({e})")
    sys.exit()
load = open(f + ".uptime").read().split("load average:")[1].split(",")[0].strip()
l = r
print(f"{name:12} {tag:10} #{rnd} {r['throughput_rps']:9.0f}/s lost {r['lost']} p50 {l['p50_ms']:7.1f} "
      f"p99 {l['p99_ms']:7.1f} max {l['max_ms']:7.1f} ms cpu {r.get('cpu_us_per_request', 0):6.1f} us/req "
      f"other {r.get('other_cores', 0):.2f} cores load1 {load}")
PY
}

for round in $(seq 1 "$rounds"); do
	for bin in "$@"; do
		tag=$(basename "$bin")
		run "$bin" "$tag" max --rate max
		run "$bin" "$tag" rate1000 --rate 1000
		run "$bin" "$tag" rate120000 --rate 120000
	done
done
