#!/usr/bin/env bash
# Memory one cycle of `host2mqtt run` touches: distinct cache lines (64 B)
# and pages (4 KiB) of code and of data per cycle, from valgrind's lackey
# (every instruction and memory access, with its address). A process that
# sleeps 10 s between cycles finds none of it in the caches or the TLB,
# and on a VM a page missed in the TLB costs a two-level page walk: these
# counts, not the instructions, are most of what a cycle costs in user
# space (bench/cold.c measures the price of one). Repeatable for a binary:
# the counts do not depend on what else the machine is doing. A
# measurement, not a test.
#
#   bench/touch.sh BINARY [BINARY...]      # e.g. dist/host2mqtt-x86_64
#
# Each agent runs under lackey against a private Mosquitto at a 2 s
# interval with the default config on / and the first interface (as
# bench/footprint.sh; NVIDIA and SMART off, as in bench/instructions.sh).
# A cycle is a burst of activity between quiet gaps; the first
# BENCH_WARMUP (14) bursts are left out (start-up, first discovery),
# then the medians of the next BENCH_CYCLES (12) are printed. The window
# ends before the first OS update check (2 min after start).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: bench/touch.sh BINARY [BINARY...]"; exit 2; }
WARMUP=${BENCH_WARMUP:-14}
CYCLES=${BENCH_CYCLES:-12}
for t in valgrind mosquitto python3; do
    command -v $t >/dev/null || { echo "needs $t (valgrind, mosquitto, python3)"; exit 1; }
done
. bench/lib.sh
bench_workdir touch keep
bench_mosquitto "$work"
pids+=("$BENCH_MOSQUITTO_PID")

printf '%-40s %12s %11s %11s %11s %11s\n' binary instructions code-lines data-lines code-pages data-pages
i=0
for bin in "$@"; do
    i=$((i + 1))
    bench_agent_conf "$work/agent$i.toml" "bench_touch$i" 2s "$BENCH_PORT" \
        "$(printf '[hardware.nvidia]\nenabled = false\n[hardware.smart]\nenabled = false')"
    # A cycle under lackey takes ~0.1 s; the gap between bursts is 2 s.
    seconds=$(( (WARMUP + CYCLES) * 2 + 12 ))
    HOST2MQTT_LOG=warn timeout "$seconds" valgrind --tool=lackey --trace-mem=yes --log-fd=3 \
        "$bin" --config "$work/agent$i.toml" run 3>&1 1>/dev/null 2>"$work/agent$i.log" |
        python3 bench/touch.py > "$work/bursts$i" || true
    python3 bench/touch.py --summary "$bin" "$WARMUP" "$CYCLES" < "$work/bursts$i"
done
echo "(medians of $CYCLES cycles after $WARMUP; per-cycle lists in $work)"
