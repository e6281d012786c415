#!/usr/bin/env bash
# Footprint benchmark: runs the release binary against a private Mosquitto
# at a 10 s interval and reports RSS, CPU seconds per hour, median cycle
# time and bytes on the wire per cycle. A measurement, not a test.
#
#   bench/footprint.sh                 # 5 minutes (30 cycles)
#   BENCH_SECONDS=120 bench/footprint.sh
#
# Bytes on the wire come from /proc/PID/io (wchar: every byte the process
# wrote, and with logging at "warn" that is its MQTT socket), counted over
# the steady state, so the one-off discovery payload is not in the figure.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TOTAL=${BENCH_SECONDS:-300}
INTERVAL=${BENCH_INTERVAL:-10s}

command -v mosquitto >/dev/null || { echo "needs mosquitto (apt-get install mosquitto mosquitto-clients)"; exit 1; }
cargo build --release --quiet
BIN=target/release/host2mqtt

work=$(mktemp -d /tmp/h2m-bench.XXXXXX)
chmod 777 "$work"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/mosquitto.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous true
persistence false
log_dest file $work/mosquitto.log
CONF
chmod 644 "$work/mosquitto.conf"
mosquitto -c "$work/mosquitto.conf" & pids+=($!)
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done

cat > "$work/h2m.toml" <<CONF
interval = "$INTERVAL"
node_id = "bench"
[mqtt]
host = "127.0.0.1"
port = $port
CONF
mosquitto_sub -h 127.0.0.1 -p "$port" -t 'host2mqtt/bench/state' > "$work/states.jsonl" & pids+=($!)
HOST2MQTT_LOG=warn "$BIN" --config "$work/h2m.toml" run 2>"$work/agent.log" & agent=$!; pids+=($agent)

# Let the first cycles (discovery, first-rate cycle) pass.
sleep 12
read_io() { awk '/^wchar/ {print $2}' /proc/$agent/io; }
read_cpu() { awk '{print $14 + $15}' /proc/$agent/stat; }
states0=$(wc -l < "$work/states.jsonl"); w0=$(read_io); c0=$(read_cpu); t0=$(date +%s.%N)
sleep "$SECONDS_TOTAL"
states1=$(wc -l < "$work/states.jsonl"); w1=$(read_io); c1=$(read_cpu); t1=$(date +%s.%N)
rss_kb=$(awk '/^VmRSS/ {print $2}' /proc/$agent/status)
hwm_kb=$(awk '/^VmHWM/ {print $2}' /proc/$agent/status)
size=$(stat -c %s "$BIN")
tck=$(getconf CLK_TCK)

python3 - "$work/states.jsonl" "$states0" "$states1" "$w0" "$w1" "$c0" "$c1" "$t0" "$t1" "$rss_kb" "$hwm_kb" "$size" "$tck" <<'PY'
import json, statistics, sys
path, s0, s1, w0, w1, c0, c1, t0, t1, rss, hwm, size, tck = sys.argv[1:]
s0, s1, w0, w1, c0, c1, tck = map(int, (s0, s1, w0, w1, c0, c1, tck))
t0, t1 = float(t0), float(t1)
lines = open(path).read().splitlines()[s0:s1]
cycles = [json.loads(l).get("cycle_duration") for l in lines]
cycles = [c for c in cycles if c is not None]
n = max(s1 - s0, 1)
state_bytes = statistics.median(len(l) for l in lines) if lines else 0
cpu_s = (c1 - c0) / tck
print(f"cycles measured        {s1 - s0} over {t1 - t0:.0f} s")
print(f"RSS                    {int(rss) / 1024:.1f} MiB (peak {int(hwm) / 1024:.1f} MiB)")
print(f"CPU                    {cpu_s / (t1 - t0) * 3600:.2f} s per hour")
print(f"median cycle           {statistics.median(cycles):.3f} ms" if cycles else "median cycle           n/a")
print(f"bytes on the wire      {(w1 - w0) / n:.0f} per cycle (state payload {state_bytes:.0f} B)")
print(f"binary size            {int(size) / 1024 / 1024:.1f} MiB")
PY
