#!/usr/bin/env bash
# Cost per cycle against the number of mounts reported: 1, 20 and 100
# tmpfs mounts made in private mount and pid namespaces (`unshare -mpf`),
# so the host's mount table is untouched and the agent, as pid 1 there,
# reads them in /proc/1/mountinfo as it reads the host's. CPU per cycle from
# /proc/PID/task/*/schedstat over the window, like bench/footprint.sh; the
# agent runs with no broker (it collects on schedule while unconnected).
# Needs root. A measurement, not a test.
#
#   bench/mounts.sh                          # 2 s interval, 10 s warm-up, 60 s window
#   BENCH_MOUNTS="1 20 100 200" bench/mounts.sh
#   H2M_BIN=/tmp/host2mqtt bench/mounts.sh     # that binary, no build
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
MOUNTS=${BENCH_MOUNTS:-1 20 100}
INTERVAL=${BENCH_INTERVAL:-2}
WARMUP=${BENCH_WARMUP:-10}
WINDOW=${BENCH_SECONDS:-60}
BIN=${H2M_BIN:-}
if [ -z "$BIN" ]; then
    cargo build --release --quiet
    BIN=$PWD/target/release/host2mqtt
fi

work=$(mktemp -d /tmp/h2m-mounts.XXXXXX)
agent=
cleanup() { [ -n "$agent" ] && kill "$agent" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
# No broker on this port: the agent collects and keeps retrying to connect.
cat > "$work/h.toml" <<CONF
interval = "${INTERVAL}s"
node_id = "bench_mounts"
[mqtt]
host = "127.0.0.1"
port = 9
[collectors.disk]
fs_types_include = ["tmpfs"]
fs_types_exclude = []
mount_points_include = ["$work/m/*"]
CONF

echo "interval ${INTERVAL} s, ${WARMUP} s warm-up, ${WINDOW} s window ($(( WINDOW / INTERVAL )) cycles)"
echo
echo "| tmpfs mounts | disks reported | CPU per cycle | VmRSS |"
echo "|---|---|---|---|"
for n in $MOUNTS; do
    # unshare forks the shell (pid 1 there), which execs the agent.
    HOST2MQTT_LOG=error unshare -mpf --mount-proc --propagation private bash -c '
        for i in $(seq "$1"); do mkdir -p "$2/m/$i"; mount -t tmpfs -o size=1m "h2m$i" "$2/m/$i"; done
        exec "$3" --config "$2/h.toml" run' _ "$n" "$work" "$BIN" 2>/dev/null &
    outer=$!
    sleep 1
    agent=$(pgrep -P "$outer")
    sleep "$WARMUP"
    c0=$(cpu_ns "$agent")
    sleep "$WINDOW"
    c1=$(cpu_ns "$agent")
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$agent/status")
    entities=$(nsenter -t "$agent" -m -p -- "$BIN" --config "$work/h.toml" check 2>/dev/null | grep -c '_free ' || true)
    kill "$agent"; wait "$outer" 2>/dev/null || true; agent=
    awk -v n="$n" -v e="$entities" -v d=$((c1 - c0)) -v cycles=$((WINDOW / INTERVAL)) -v rss="$rss" \
        'BEGIN {printf "| %d | %d | %.3f ms | %.2f MiB |\n", n, e, d / cycles / 1e6, rss / 1024}'
done
