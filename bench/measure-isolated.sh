#!/bin/bash
# The isolated model-server mode against the embedded one (docs/modelserver.md, "Isolated mode"):
# starts `BIN run --model-server MODE` on a fresh data dir (fixed loopback ports 41xxx), runs
# `BIN bench --brokers` from a second process and prints the appliance+child CPU ticks (1/100 s) and the summary.
#   bench/measure-isolated.sh /tmp/infergate embedded 1000 10s; bench/measure-isolated.sh /tmp/infergate isolated max 10s
BIN=$1; MODE=$2; RATE=$3; DUR=$4
D=$(mktemp -d /tmp/iso-XXXX)
$BIN run --data-dir $D --model-server $MODE --broker-listen 127.0.0.1:41092 --grpc-listen 127.0.0.1:41500 --rest-listen 127.0.0.1:41501 --http-listen 127.0.0.1:41080 > $D/log 2>&1 &
P=$!
for i in $(seq 1 120); do curl -sf http://127.0.0.1:41080/readyz >/dev/null && break; sleep 0.5; done
cpu() { local t=0; for p in $P $(pgrep -P $P); do set -- $(awk '{print $14, $15}' /proc/$p/stat); t=$((t+$1+$2)); done; echo $t; }
c0=$(cpu)
$BIN bench --brokers 127.0.0.1:41092 --rate $RATE --duration $DUR --warmup 3s > $D/bench 2>&1
c1=$(cpu)
echo "mode=$MODE rate=$RATE cpu_ticks=$((c1-c0)) load=$(cut -d' ' -f1 /proc/loadavg)"
grep -vE "^(warm| +[0-9]+s )" $D/bench | tail -25
kill $P; wait $P 2>/dev/null; rm -rf $D
