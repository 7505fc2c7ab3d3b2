#!/usr/bin/env bash
# Runs every measurement of docs/performance.md, each REPEAT times, and
# keeps each run's JSON report in OUT (default bench-out/). The machine
# is shared: each file records `uptime` before the run, and the summary
# takes the median of the repetitions.
#
#   bench/measure.sh [OUT] [REPEAT]
#   /usr/bin/python3 bench/summarize.py OUT
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench-out}
repeat=${2:-3}
mkdir -p "$out"
go build -o "$out/infergate" ./cmd/infergate
bin="$out/infergate"

run() { # name, args...
	local name=$1
	shift
	for i in $(seq 1 "$repeat"); do
		local f="$out/$name.$i.json"
		echo "--- $name #$i: infergate bench $*" >&2
		uptime >"$out/$name.$i.uptime"
		"$bin" bench --quiet --json --plot "$out/$name.$i.svg" "$@" >"$f" || echo "    (exit $?: see $f)" >&2
	done
}

# Maximum sustained throughput (bounded window of outstanding requests).
run max-inprocess          --rate max --duration 20s --warmup 3s
run max-inprocess-os       --rate max --duration 20s --warmup 3s --durability os
run max-grpc               --rate max --duration 20s --warmup 3s --model-path grpc
run max-grpc-os            --rate max --duration 20s --warmup 3s --model-path grpc --durability os
run max-baseline           --rate max --duration 20s --warmup 3s --mode baseline
run max-baseline-os        --rate max --duration 20s --warmup 3s --mode baseline --durability os

# Latency at fixed rates (open loop): 1,000 requests/s, and half the
# median maximum measured above.
half() { /usr/bin/python3 bench/summarize.py --half "$out" "$1"; }
run rate1000               --rate 1000 --duration 20s --warmup 3s
run rate1000-os            --rate 1000 --duration 20s --warmup 3s --durability os
run rate1000-grpc          --rate 1000 --duration 20s --warmup 3s --model-path grpc
run halfmax-inprocess      --rate "$(half max-inprocess)" --duration 20s --warmup 3s
run halfmax-inprocess-os   --rate "$(half max-inprocess-os)" --duration 20s --warmup 3s --durability os
run halfmax-grpc           --rate "$(half max-grpc)" --duration 20s --warmup 3s --model-path grpc

# Idle memory and readiness: a low rate, short.
run idle                   --rate 10 --duration 3s --warmup 0s

# The pipeline and the baseline back to back (one report with the ratio).
for i in $(seq 1 "$repeat"); do
	echo "--- compare #$i" >&2
	uptime >"$out/compare.$i.uptime"
	"$bin" bench --quiet --json --compare --rate max --duration 20s --warmup 3s --plot "$out/compare.$i.svg" \
		>"$out/compare.$i.cmp" || echo "    (exit $?)" >&2
done
