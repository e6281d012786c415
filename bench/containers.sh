#!/usr/bin/env bash
# Cost of the containers source against the number of containers (0, 50
# and 200 running by default): per case, one containers cycle's wall time
# in the agent (the source logs each cycle's duration at debug level), the
# API service's CPU per cycle, the agent's own CPU per cycle (schedstat),
# its RSS/PSS, and the discovery it published. The agent runs connected to
# a private Mosquitto, as on a host, so discovery is built and sent. A
# measurement, not a test. Needs root and podman (see tests/env/podman.sh).
#
#   bench/containers.sh                                # 0 50 200, 20 cycles per case
#   BENCH_CONTAINERS="0 50" BENCH_CYCLES=30 bench/containers.sh
#   H2M_BIN=target/release/host2mqtt bench/containers.sh   # another build
#
# The binary is the static musl build the image and packages ship
# (dist/host2mqtt-x86_64 when packaging/build.sh made it, else built into
# target/x86_64-unknown-linux-musl). Cases per count: "list only" (no
# container opted in: the host-level counts, one API call), "libpod, all
# opted in" (list + one stats call for all), "docker API, all opted in"
# (list + one stats call per container; only up to BENCH_DOCKER_MAX
# containers, default 50: beyond, one cycle outlasts the interval), and
# once, the agent with containers off, for the baseline.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
COUNTS=${BENCH_CONTAINERS:-0 50 200}
CYCLES=${BENCH_CYCLES:-20}
DOCKER_MAX=${BENCH_DOCKER_MAX:-50}
INTERVAL=${BENCH_INTERVAL:-2}

command -v podman >/dev/null || { echo "needs podman (apt-get install -y podman runc uidmap slirp4netns fuse-overlayfs busybox-static)"; exit 1; }
command -v mosquitto >/dev/null || { echo "needs mosquitto and mosquitto-clients"; exit 1; }
BIN=${H2M_BIN:-}
if [ -z "$BIN" ]; then
    if [ -x dist/host2mqtt-x86_64 ]; then
        BIN=dist/host2mqtt-x86_64
    else
        cargo build --release --quiet --target x86_64-unknown-linux-musl \
            || { echo "needs the musl target: rustup target add x86_64-unknown-linux-musl; apt-get install musl-tools"; exit 1; }
        BIN=target/x86_64-unknown-linux-musl/release/host2mqtt
    fi
fi
BIN=$(realpath "$BIN")

env_dir=$(mktemp -d /tmp/h2mp.XXXXXX)
work=$(mktemp -d /tmp/h2m-bench.XXXXXX)
agent=
cleanup() {
    [ -n "$agent" ] && kill "$agent" 2>/dev/null || true
    [ -n "${BENCH_MOSQUITTO_PID:-}" ] && kill "$BENCH_MOSQUITTO_PID" 2>/dev/null || true
    tests/env/podman.sh teardown "$env_dir" || true
    rm -rf "$work"
}
trap cleanup EXIT

bench_mosquitto "$work"
tests/env/podman.sh setup "$env_dir"
service=$(tests/env/podman.sh serve "$env_dir")
sock="$env_dir/podman.sock"

# run_case NAME COUNT TOML: runs the agent for CYCLES cycles; appends one
# result line to $work/results.
run_case() {
    local name=$1 count=$2 toml=$3 node
    node="bench_c$count"
    bench_agent_conf "$work/h2m.toml" "$node" "${INTERVAL}s" "$BENCH_PORT" "$toml"
    # The level applies to every target; at debug the agent logs a few
    # lines per cycle, among them the containers cycle's duration.
    HOST2MQTT_LOG=debug "$BIN" --config "$work/h2m.toml" run 2>"$work/agent.log" &
    agent=$!
    sleep $((2 * INTERVAL + 1)) # first cycles: probe, first stats sample, discovery
    local t0 a0 t1 a1 c0 c1 window mem_kib disc
    t0=$(cpu_ns "$service")
    a0=$(cpu_ns "$agent")
    c0=$(grep -c "containers cycle" "$work/agent.log" || true)
    window=$((CYCLES * INTERVAL))
    sleep "$window"
    t1=$(cpu_ns "$service")
    a1=$(cpu_ns "$agent")
    c1=$(grep -c "containers cycle" "$work/agent.log" || true)
    mem_kib=$(mem "$agent")
    disc=$(mosquitto_sub -h 127.0.0.1 -p "$BENCH_PORT" -t "homeassistant/device/$node/config" -C 1 -W 5 2>/dev/null | tr -d '\n' | wc -c || true)
    kill "$agent"
    wait "$agent" 2>/dev/null || true
    agent=
    # Clear the retained discovery so the next case's count is its own.
    mosquitto_pub -h 127.0.0.1 -p "$BENCH_PORT" -t "homeassistant/device/$node/config" -r -n
    local ms
    ms=$({ grep "containers cycle" "$work/agent.log" || true; } | tail -n +3 |
        sed -nE 's/.*elapsed_ms=([0-9.]+).*readings=([0-9]+).*/\1 \2/p' | sort -n | tr '\n' ' ')
    echo "$name|$count|$((t1 - t0))|$((c1 - c0))|$((a1 - a0))|$window|$mem_kib|$disc|$ms" >>"$work/results"
}

created=0
off_done=0
: >"$work/results"
for n in $COUNTS; do
    if [ "$n" -gt "$created" ]; then
        echo "creating $((n - created)) more running busybox containers (to $n)…" >&2
        for i in $(seq $((created + 1)) "$n"); do
            tests/env/podman.sh podman "$env_dir" run -d --network=none --name "bench$i" \
                --label host2mqtt.enable=true localhost/bb:latest sleep 100000 >/dev/null
        done
        created=$n
    fi
    if [ "$off_done" = 0 ]; then
        run_case "containers off" "$n" "[containers]
enabled = false"
        off_done=1
    fi
    run_case "list only" "$n" "[containers]
socket = \"$sock\"
label = \"\""
    run_case "libpod, all opted in" "$n" "[containers]
socket = \"$sock\""
    if [ "$n" -le "$DOCKER_MAX" ] && [ "$n" -gt 0 ]; then
        run_case "docker API, all opted in" "$n" "[containers]
socket = \"$sock\"
api = \"docker\""
    fi
done

python3 - "$work/results" "$INTERVAL" "$CYCLES" "$BIN" <<'PY'
import sys
path, interval, cycles, binary = sys.argv[1:]
interval = float(interval)
print(f"{binary}: interval {interval:.0f} s, {cycles} cycles per case after the first ones")
print()
print("| containers | case | containers cycle (median, p90) | readings | API service CPU per cycle | agent CPU per cycle | agent RSS | PSS | discovery |")
print("|---|---|---|---|---|---|---|---|---|")
for line in open(path):
    name, count, t, c, a, window, mem, disc, ms = line.rstrip("\n").split("|")
    rss, pss, _ = (int(x) for x in mem.split())
    pairs = [p for p in ms.split()]
    walls = [float(pairs[i]) for i in range(0, len(pairs), 2)]
    readings = pairs[1] if len(pairs) > 1 else "-"
    agent_ms = int(a) / 1e6 / (float(window) / interval)
    if walls:
        med, p90 = walls[(len(walls) - 1) // 2], walls[max(0, int(len(walls) * 0.9) - 1)]
        cyc = f"{med:.1f}, {p90:.1f} ms"
        api = f"{int(t) / 1e6 / int(c):.1f} ms" if int(c) else "-"
    else:
        cyc, api = "-", "-"
    d = f"{int(disc) / 1024:.1f} KiB" if disc.strip() and int(disc) else "-"
    print(f"| {count} | {name} | {cyc} | {readings} | {api} | {agent_ms:.2f} ms | {rss / 1024:.2f} MiB | {pss / 1024:.2f} MiB | {d} |")
print()
print("containers cycle: wall time of one containers cycle in the agent, the engine's answer")
print("included; API service CPU: what the podman API service spent per cycle; agent CPU: the")
print("agent's whole CPU per cycle (schedstat), every collector included; RSS/PSS at the end.")
PY
