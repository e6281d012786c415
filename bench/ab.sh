#!/usr/bin/env bash
# A/B of host2mqtt builds or configs side by side: CPU per cycle (from
# /proc/PID/task/*/schedstat), wake-ups per cycle (voluntary context
# switches) and minor page faults per cycle, over one window. A
# measurement, not a test; this VM's spread between runs is ±30 %, so run
# it more than once.
#
#   bench/ab.sh OLD_BIN NEW_BIN                      # two builds, 10 s interval
#   bench/ab.sh BIN,1s BIN,10s                       # one build at two intervals
#   bench/ab.sh BIN BIN,10s,sources-off.toml         # TOML appended to the second's config
#   BENCH_SECONDS=300 bench/ab.sh ...                # window (default 100 s)
#
# Each agent runs the bench config (bench/lib.sh: / and the first
# interface) with the OS update check off (it would land in the window),
# against one private Mosquitto, started 3.3 s apart so they wake on
# their own phases; the window starts 40 s after the last start (past the
# start-up text drop at 30 s).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
WINDOW=${BENCH_SECONDS:-100}
[ $# -ge 1 ] || { sed -n '2,17p' "$0"; exit 2; }
command -v mosquitto >/dev/null || { echo "needs mosquitto"; exit 1; }
bench_workdir ab
bench_mosquitto "$work"
pids+=("$BENCH_MOSQUITTO_PID")

agents=() intervals=() names=()
i=0
for spec in "$@"; do
    IFS=, read -r bin interval extra <<<"$spec"
    interval=${interval:-10s}
    toml=$(printf '[os_updates]\nenabled = false')
    [ -z "${extra:-}" ] || toml="$toml"$'\n'"$(cat "$extra")"
    bench_agent_conf "$work/$i.toml" "ab$i" "$interval" "$BENCH_PORT" "$toml"
    HOST2MQTT_LOG=warn "$bin" --config "$work/$i.toml" run 2>"$work/$i.log" &
    agents+=($!) intervals+=("${interval%s}") names+=("$spec")
    pids+=($!)
    i=$((i + 1))
    sleep 3.3
done
sleep 36.7
faults() { awk '{print $10}' /proc/"$1"/stat; }
wakes() { awk '/^voluntary_ctxt_switches/ {print $2}' /proc/"$1"/status; }
c0=() v0=() f0=()
for p in "${agents[@]}"; do c0+=("$(cpu_ns "$p")") v0+=("$(wakes "$p")") f0+=("$(faults "$p")"); done
sleep "$WINDOW"
printf '%s s window, OS update check off\n\n| agent | CPU per cycle | wake-ups per cycle | minor faults per cycle |\n|---|---|---|---|\n' "$WINDOW"
for i in "${!agents[@]}"; do
    p=${agents[$i]}
    kill -0 "$p" 2>/dev/null || { echo "${names[$i]} exited: $(tail -3 "$work/$i.log")"; continue; }
    cycles=$(awk -v w="$WINDOW" -v iv="${intervals[$i]}" 'BEGIN {print w / iv}')
    awk -v n="${names[$i]}" -v c="$(( $(cpu_ns "$p") - c0[i] ))" -v v="$(( $(wakes "$p") - v0[i] ))" \
        -v f="$(( $(faults "$p") - f0[i] ))" -v k="$cycles" \
        'BEGIN {printf "| %s | %.0f µs | %.2f | %.2f |\n", n, c / k / 1000, v / k, f / k}'
done
