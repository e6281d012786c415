#!/usr/bin/env bash
# Instructions per cycle of `host2mqtt run` (user space), counted by
# callgrind: repeatable on a busy machine, where CPU time is not. A
# measurement, not a test.
#
#   bench/instructions.sh BINARY [CYCLES]     # e.g. a build with debug info:
#   CARGO_TARGET_DIR=target-prof CARGO_PROFILE_RELEASE_STRIP=false \
#       CARGO_PROFILE_RELEASE_DEBUG=1 cargo build --release
#   bench/instructions.sh target-prof/release/host2mqtt 20
#   callgrind_annotate --inclusive=yes /tmp/h2m-ir.*/cg.out.<n>   # where
#
# The agent runs under valgrind against a private Mosquitto at a 1 s
# interval with the default config on / and the first interface (as
# bench/footprint.sh). After BENCH_WARMUP state messages (25: past the
# one-off work of the first 20 s, the SMART scan and the NVIDIA probe),
# the counters are zeroed, then dumped 0.3 s after each of CYCLES state
# messages, so each dump holds one cycle and what its wake-up ran. Prints
# the median, min and max instructions per cycle (a cycle that happens to
# re-read the mount table or rebuild discovery lands at the max).
set -euo pipefail
BIN=$(realpath "$1")
CYCLES=${2:-20}
WARMUP=${BENCH_WARMUP:-25}
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)"; exit 1; }
command -v mosquitto_sub >/dev/null || { echo "needs mosquitto and mosquitto-clients"; exit 1; }

cd "$(dirname "$0")/.."
. bench/lib.sh
bench_workdir ir keep

bench_mosquitto "$work"
pids+=("$BENCH_MOSQUITTO_PID")
port=$BENCH_PORT
# nvidia-smi and smartctl off: a program that is not installed "runs"
# under valgrind (its posix_spawn starts the child, which exits 127), so
# those sources would count it as failing and run again every cycle, where
# a real run finds it absent and looks again in 10 minutes.
bench_agent_conf "$work/agent.toml" bench_ir 1s "$port" \
    "$(printf '[hardware.nvidia]\nenabled = false\n[hardware.smart]\nenabled = false')"

mosquitto_sub -h 127.0.0.1 -p "$port" -t host2mqtt/bench_ir/state -F '%U' > "$work/states" & pids+=($!)
HOST2MQTT_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" \
    "$BIN" --config "$work/agent.toml" run 2> "$work/valgrind.log" &
vg=$!
pids+=($vg)
states() { wc -l < "$work/states"; }
while [ "$(states)" -lt "$WARMUP" ]; do sleep 0.05; done
callgrind_control -z "$vg" > /dev/null 2>&1
start=$(states)
for i in $(seq "$CYCLES"); do
    while [ "$(states)" -lt $((start + i)) ]; do sleep 0.02; done
    sleep 0.3
    callgrind_control -d "$vg" > /dev/null 2>&1
done
for f in "$work"/cg.out.*; do
    callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}'
done | sort -n > "$work/per-cycle"
awk -v bin="$BIN" -v dir="$work" '{a[NR] = $1} END {
    printf "%s: median %d instructions per cycle (min %d, max %d, %d cycles); dumps in %s\n",
        bin, a[int((NR + 1) / 2)], a[1], a[NR], NR, dir }' "$work/per-cycle"
