#!/usr/bin/env bash
# Cost of the containers source with 50 containers: one cycle's wall time in
# the running agent (the source logs each cycle's duration at debug level),
# the API service's CPU per cycle, and the agent's RSS. A measurement, not a
# test. Needs root and podman (see tests/env/podman.sh); no broker: the
# agent collects on schedule while it has no connection.
#
#   bench/containers.sh                    # 50 containers, 30 cycles per case
#   BENCH_CONTAINERS=100 BENCH_CYCLES=60 bench/containers.sh
#
# Cases: "list only" (no container opted in: the host-level counts, one API
# call), "libpod, 50 opted in" (list + one stats call for all), "docker
# API, 50 opted in" (list + one stats call per container), and the agent
# with containers off, for the RSS baseline.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${BENCH_CONTAINERS:-50}
CYCLES=${BENCH_CYCLES:-30}
INTERVAL=1s

command -v podman >/dev/null || { echo "needs podman (apt-get install -y podman runc uidmap slirp4netns fuse-overlayfs busybox-static)"; exit 1; }
cargo build --release --quiet
BIN=target/release/host2mqtt

env_dir=$(mktemp -d /tmp/h2mp.XXXXXX)
work=$(mktemp -d /tmp/h2m-bench.XXXXXX)
agent=
cleanup() {
    [ -n "$agent" ] && kill "$agent" 2>/dev/null || true
    tests/env/podman.sh teardown "$env_dir" || true
    rm -rf "$work"
}
trap cleanup EXIT

tests/env/podman.sh setup "$env_dir"
service=$(tests/env/podman.sh serve "$env_dir")
echo "creating $N running busybox containers…"
for i in $(seq 1 "$N"); do
    tests/env/podman.sh podman "$env_dir" run -d --network=none --name "bench$i" \
        --label host2mqtt.enable=true localhost/bb:latest sleep 100000 >/dev/null
done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

# run_case NAME TOML: runs the agent for CYCLES cycles; prints one table row.
run_case() {
    local name=$1 toml=$2
    cat >"$work/h2m.toml" <<CONF
interval = "$INTERVAL"
node_id = "bench"
$toml
[mqtt]
host = "127.0.0.1"
port = 9
reconnect_min = "60s"
reconnect_max = "60s"
CONF
    HOST2MQTT_LOG="warn,host2mqtt::container::containers=debug" "$BIN" --config "$work/h2m.toml" run 2>"$work/agent.log" &
    agent=$!
    sleep 3 # first cycles: probe, first stats sample
    local t0 c0 a0
    t0=$(cpu_ticks "$service")
    a0=$(cpu_ticks "$agent")
    c0=$(grep -c "containers cycle" "$work/agent.log" || true)
    sleep "$CYCLES"
    local t1 c1 rss a1
    t1=$(cpu_ticks "$service")
    a1=$(cpu_ticks "$agent")
    c1=$(grep -c "containers cycle" "$work/agent.log" || true)
    rss=$(rss_kib "$agent")
    kill "$agent"
    wait "$agent" 2>/dev/null || true
    agent=
    local hz cycles
    hz=$(getconf CLK_TCK)
    cycles=$((c1 - c0))
    { grep "containers cycle" "$work/agent.log" || true; } | tail -n +3 | sed -E 's/.*elapsed_ms=([0-9.]+).*readings=([0-9]+).*/\1 \2/' |
        sort -n | awk -v name="$name" -v rss="$rss" -v t="$((t1 - t0))" -v a="$((a1 - a0))" -v hz="$hz" -v c="$cycles" -v secs="$CYCLES" '
            { ms[NR] = $1; readings = $2 }
            END {
                agent = a / hz / secs * 1000
                if (NR == 0) { printf "%-28s %9s %9s %9s %12s %12.2f %9.1f\n", name, "-", "-", "-", "-", agent, rss / 1024; exit }
                engine = 0
                if (c > 0) engine = t / hz / c * 1000
                p90 = int(NR * 0.9)
                if (p90 < 1) p90 = 1
                printf "%-28s %9.2f %9.2f %9d %12.1f %12.2f %9.1f\n", name, ms[int((NR + 1) / 2)], ms[p90], readings, engine, agent, rss / 1024
            }'
}

sock="$env_dir/podman.sock"
printf "%-28s %9s %9s %9s %12s %12s %9s\n" "case ($N containers)" "median ms" "p90 ms" "readings" "engine ms/cyc" "agent ms/s" "RSS MiB"
run_case "containers off (baseline)" "[containers]
enabled = false"
run_case "list only" "[containers]
socket = \"$sock\"
label = \"\""
run_case "libpod, $N opted in" "[containers]
socket = \"$sock\""
run_case "docker API, $N opted in" "[containers]
socket = \"$sock\"
api = \"docker\""
echo "(median/p90: one containers cycle in the agent, wall time incl. the engine's answer;"
echo " engine ms/cyc: CPU the podman API service spent per cycle; agent ms/s: the agent's whole CPU"
echo " per second of a 1 s interval, every collector included; RSS: the agent's, at the end)"
