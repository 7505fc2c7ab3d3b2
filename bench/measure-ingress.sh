#!/usr/bin/env bash
# Interleaves two (or more) infergate binaries on the ingress figures of
# docs/performance.md ("Edge ingress"): for each round and each binary,
# --rate max (durability os, then fsync; answer QoS 1, then os at QoS 0)
# and --rate 1000 (fsync, then os; answer QoS 1). Keeps each run's JSON
# report and `uptime` in OUT and prints one line per run. With PERF=1 each
# run is counted by `perf stat` for fsync and fdatasync calls (root or
# perf_event_paranoid <= 1), printed as syncs per request sent.
#
#   go build -o /tmp/ig-before ./cmd/infergate   # at the "before" commit
#   go build -o /tmp/ig-after ./cmd/infergate    # at the "after" commit
#   bench/measure-ingress.sh OUT ROUNDS /tmp/ig-before /tmp/ig-after
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
	if [ "${PERF:-0}" = 1 ]; then
		perf stat -x, -e syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync -o "$f.perf" -- \
			"$bin" bench --ingress mqtt --duration 10s --warmup 2s --json "$@" >"$f.json" 2>/dev/null || true
	else
		"$bin" bench --ingress mqtt --duration 10s --warmup 2s --json "$@" >"$f.json" 2>/dev/null || true
	fi
	/usr/bin/python3 - "$f" "$name" "$tag" "$round" <<'EOF'
import json, os, sys
f, name, tag, rnd = sys.argv[1:]
try:
    r = json.load(open(f + ".json"))
except Exception as e:
    print(f"{name:16} {tag:10} #{rnd} failed: {e}"); sys.exit()
load = open(f + ".uptime").read().split("load average:")[1].split(",")[0].strip()
st = " / ".join("%.1f" % r[k]["p99_ms"] for k in ("stage_in", "stage_pipeline", "stage_out"))
extra = ""
if os.path.exists(f + ".perf"):
    n = [int(l.split(",")[0]) for l in open(f + ".perf") if "sync" in l and l.split(",")[0].isdigit()]
    if n and r["sent"]:
        extra = " fsync+fdatasync/req %.2f" % (sum(n) / r["sent"])
print(f"{name:16} {tag:10} #{rnd} {r['throughput_rps']:8.0f}/s lost {r['lost']} p50 {r['latency']['p50_ms']:7.1f} "
      f"p99 {r['latency']['p99_ms']:7.1f} ms (stages p99 {st}) cpu {r['cpu_us_per_request']:6.1f} us/req "
      f"other {r['other_cores']:.2f} cores load1 {load}{extra}")
EOF
}

for round in $(seq ${FIRST:-1} "$rounds"); do
	for bin in "$@"; do
		tag=$(basename "$bin")
		run "$bin" "$tag" max-os-qos1 --rate max --durability os
		run "$bin" "$tag" max-fsync-qos1 --rate max --durability fsync
		run "$bin" "$tag" max-os-qos0 --rate max --durability os --answer-qos 0
		run "$bin" "$tag" r1000-fsync-qos1 --rate 1000 --durability fsync
		run "$bin" "$tag" r1000-os-qos1 --rate 1000 --durability os
	done
done
