#!/usr/bin/env bash
# Footprint benchmark: the release binaries (glibc and static musl) side by
# side with collectd (and mqtt-system-monitor when installed), all running
# at once against one private Mosquitto, so every figure of one table comes
# from the same minutes of the same machine. A measurement, not a test.
#
#   bench/footprint.sh                          # 10 s interval, 30 s warm-up, 180 s window, 2 rounds
#   BENCH_SECONDS=60 BENCH_WARMUP=15 BENCH_ROUNDS=1 bench/footprint.sh   # a smoke run
#   MSM_BIN=/tmp/msm/bin/mqtt-system-monitor bench/footprint.sh
#   BASE_BIN=/tmp/host2mqtt-before bench/footprint.sh   # an older build beside, as host2mqtt-base
#   BENCH_BUILD=0 bench/footprint.sh            # the binaries in target/ as they are
#   BENCH_MUSL=0 bench/footprint.sh             # the glibc binary only (no musl target here)
#   BENCH_FLOOR=0 bench/footprint.sh            # without the syscall floor (needs a C compiler)
#
# Every agent reports the root filesystem and the first non-loopback
# interface only (collectd: df MountPoint "/", interface eth0): on a shared
# machine other jobs' mounts and veths come and go, and each one changes
# host2mqtt's entity set (a new discovery) mid-window.
#
# Per agent and round, over the window (after the warm-up):
#   CPU per cycle   nanoseconds on a CPU from /proc/PID/task/*/schedstat
#                   (the process's own accounting, all its threads), divided
#                   by the cycles the window holds (window / interval)
#   VmRSS           /proc/PID/status at the end of the window
#   PSS, USS        /proc/PID/smaps_rollup (USS = Private_Clean + Private_Dirty)
#   bytes/cycle     /proc/PID/io wchar over the window / cycles (logging is
#                   at warn, so that is the MQTT socket)
#   discovery B     the retained discovery payload (host2mqtt only)
# The table gives each figure's median over the rounds and the ratio
# host2mqtt/collectd. collectd: Debian's collectd-core with its mqtt plugin
# and cpu, memory, df, interface, load: what host2mqtt reports by default
# without HA discovery. This host has no Podman socket and no system bus
# unless something started them, and the table says which it had.
# syscall-floor: bench/floor.c, a C loop that makes exactly the system
# calls of one host2mqtt cycle (the same files, the same wake-up, one
# PUBLISH of the state's size) with no user-space work: the part of
# host2mqtt's CPU that is the kernel's, for this data, on this machine.
set -euo pipefail
cd "$(dirname "$0")/.."
WINDOW=${BENCH_SECONDS:-180}
WARMUP=${BENCH_WARMUP:-30}
ROUNDS=${BENCH_ROUNDS:-2}
INTERVAL=${BENCH_INTERVAL:-10}
MSM_BIN=${MSM_BIN:-$(command -v mqtt-system-monitor || true)}
WITH_FLOOR=${BENCH_FLOOR:-1}
# Seconds between starting one agent and the next: each ticks on its own
# phase, as on a real host, instead of all at one instant contending for
# two CPUs; the window starts half a second off every agent's tick.
STAGGER=${BENCH_STAGGER:-1.3}
BASE_BIN=${BASE_BIN:-}
WITH_MUSL=${BENCH_MUSL:-1}

command -v mosquitto >/dev/null || { echo "needs mosquitto (apt-get install mosquitto mosquitto-clients)"; exit 1; }
if [ "${BENCH_BUILD:-1}" != 0 ]; then
    cargo build --release --quiet
    [ "$WITH_MUSL" = 0 ] || cargo build --release --quiet --target x86_64-unknown-linux-musl \
        || { echo "needs the musl target: rustup target add x86_64-unknown-linux-musl; apt-get install musl-tools"; exit 1; }
fi
GLIBC=target/release/host2mqtt
MUSL=target/x86_64-unknown-linux-musl/release/host2mqtt
COLLECTD=$(command -v collectd || echo /usr/sbin/collectd)
[ -x "$COLLECTD" ] && [ -e /usr/lib/collectd/mqtt.so ] || COLLECTD=

. bench/lib.sh
bench_workdir foot

bench_mosquitto "$work"
pids+=("$BENCH_MOSQUITTO_PID")
FLOOR=
if [ "$WITH_FLOOR" != 0 ] && command -v cc >/dev/null; then
    cc -O2 -o "$work/floor" bench/floor.c && FLOOR=$work/floor
fi
port=$BENCH_PORT
iface=$(bench_iface)
h2m_conf() { bench_agent_conf "$work/$1.toml" "$1" "${INTERVAL}s" "$port"; }
h2m_conf bench_glibc
h2m_conf bench_musl
h2m_conf bench_base
if [ -n "$COLLECTD" ]; then
    cat > "$work/collectd.conf" <<CONF
Hostname "bench_collectd"
FQDNLookup false
Interval $INTERVAL
BaseDir "$work/collectd"
PIDFile "$work/collectd.pid"
PluginDir "/usr/lib/collectd"
TypesDB "/usr/share/collectd/types.db"
LoadPlugin logfile
<Plugin logfile>
  LogLevel warning
  File "$work/collectd.log"
</Plugin>
LoadPlugin cpu
LoadPlugin memory
LoadPlugin df
<Plugin df>
  MountPoint "/"
</Plugin>
LoadPlugin interface
<Plugin interface>
  Interface "$iface"
</Plugin>
LoadPlugin load
LoadPlugin mqtt
<Plugin mqtt>
  <Publish "bench">
    Host "127.0.0.1"
    Port $port
    ClientId "bench_collectd"
    Prefix "collectd"
  </Publish>
</Plugin>
CONF
    mkdir -p "$work/collectd"
fi
if [ -n "$MSM_BIN" ]; then
    # mqtt-system-monitor's config (its README): CPU, memory and one
    # network interface, which is what it can report.
    cat > "$work/msm.toml" <<CONF
log-verbosity = 1
[mqtt]
host = "127.0.0.1"
port = $port
entity = "bench_msm"
update-period = $INTERVAL
[sensors]
network = [ "$iface" ]
CONF
fi

podman_socket=no; [ -S /run/podman/podman.sock ] && podman_socket=yes
system_bus=no; [ -S /run/dbus/system_bus_socket ] && system_bus=yes
results="$work/results.txt"
: > "$results"
for round in $(seq "$ROUNDS"); do
    declare -A agent=()
    HOST2MQTT_LOG=warn "$GLIBC" --config "$work/bench_glibc.toml" run 2>"$work/glibc.log" & agent[host2mqtt-glibc]=$!; pids+=($!)
    sleep "$STAGGER"
    if [ "$WITH_MUSL" != 0 ]; then
        HOST2MQTT_LOG=warn "$MUSL" --config "$work/bench_musl.toml" run 2>"$work/musl.log" & agent[host2mqtt-musl]=$!; pids+=($!)
        sleep "$STAGGER"
    fi
    if [ -n "$BASE_BIN" ]; then
        HOST2MQTT_LOG=warn "$BASE_BIN" --config "$work/bench_base.toml" run 2>"$work/base.log" & agent[host2mqtt-base]=$!; pids+=($!)
        sleep "$STAGGER"
    fi
    if [ -n "$COLLECTD" ]; then
        "$COLLECTD" -f -C "$work/collectd.conf" 2>>"$work/collectd.log" & agent[collectd]=$!; pids+=($!)
        sleep "$STAGGER"
    fi
    if [ -n "$MSM_BIN" ]; then
        "$MSM_BIN" "$work/msm.toml" >>"$work/msm.log" 2>&1 & agent[mqtt-system-monitor]=$!; pids+=($!)
        sleep "$STAGGER"
    fi
    if [ -n "$FLOOR" ]; then
        "$FLOOR" "$port" "$INTERVAL" "$iface" 600 2>>"$work/floor.log" & agent[syscall-floor]=$!; pids+=($!)
        sleep "$STAGGER"
    fi
    sleep "$(python3 -c "print($WARMUP + 0.5 - $STAGGER)")"
    declare -A c0=() w0=()
    for a in "${!agent[@]}"; do c0[$a]=$(cpu_ns "${agent[$a]}"); w0[$a]=$(wchar "${agent[$a]}"); done
    sleep "$WINDOW"
    for a in "${!agent[@]}"; do
        p=${agent[$a]}
        if ! kill -0 "$p" 2>/dev/null; then echo "round $round: $a exited early" >&2; continue; fi
        read -r rss pss uss < <(mem "$p")
        echo "$round $a $(( $(cpu_ns "$p") - c0[$a] )) $(( $(wchar "$p") - w0[$a] )) $rss $pss $uss" >> "$results"
    done
    for node in bench_glibc $([ "$WITH_MUSL" = 0 ] || echo bench_musl) ${BASE_BIN:+bench_base}; do
        n=$(mosquitto_sub -h 127.0.0.1 -p "$port" -t "homeassistant/device/$node/config" -C 1 -W 5 2>/dev/null | tr -d '\n' | wc -c || true)
        echo "$round discovery-$node $n" >> "$results"
    done
    mosquitto_sub -h 127.0.0.1 -p "$port" -t "homeassistant/device/bench_glibc/config" -C 1 -W 5 > "$work/discovery.json" 2>/dev/null || true
    for a in "${!agent[@]}"; do kill "${agent[$a]}" 2>/dev/null || true; wait "${agent[$a]}" 2>/dev/null || true; done
    unset agent c0 w0
done

python3 - "$results" "$WINDOW" "$INTERVAL" "$WARMUP" "$ROUNDS" "$work/discovery.json" "$podman_socket" "$system_bus" \
    "$(stat -c %s "$GLIBC")" "$(stat -c %s "$MUSL" 2>/dev/null || echo 0)" <<'PY'
import json, statistics, sys
path, window, interval, warmup, rounds, disc, podman, bus, gsize, msize = sys.argv[1:]
window, interval = float(window), float(interval)
cycles = window / interval
rows, disco = {}, {}
for line in open(path):
    f = line.split()
    if f[1].startswith("discovery-"):
        disco.setdefault(f[1][len("discovery-"):], []).append(int(f[2]))
        continue
    _, agent, cpu, wr, rss, pss, uss = f
    rows.setdefault(agent, []).append((int(cpu) / cycles / 1e6, int(wr) / cycles, int(rss) / 1024, int(pss) / 1024, int(uss) / 1024))
try:
    entities = len(json.load(open(disc))["cmps"])
except Exception:
    entities = "?"
med = {a: [statistics.median(v[i] for v in rs) for i in range(5)] for a, rs in rows.items()}
order = [a for a in ("host2mqtt-base", "host2mqtt-glibc", "host2mqtt-musl", "collectd", "mqtt-system-monitor", "syscall-floor") if a in med]
print(f"{len(next(iter(rows.values()), []))} round(s) of {window:.0f} s after {warmup} s warm-up, interval {interval:.0f} s "
      f"({cycles:.0f} cycles), medians; Podman socket: {podman}, system bus: {bus}")
print(f"binary: glibc {int(gsize) / 2**20:.2f} MiB" + (f", static musl {int(msize) / 2**20:.2f} MiB" if int(msize) else "") + " (stripped)")
print()
print("| agent | CPU per cycle | VmRSS | PSS | USS | bytes/cycle | discovery | HA entities |")
print("|---|---|---|---|---|---|---|---|")
for a in order:
    cpu, wr, rss, pss, uss = med[a]
    node = {"host2mqtt-glibc": "bench_glibc", "host2mqtt-musl": "bench_musl", "host2mqtt-base": "bench_base"}.get(a)
    d = f"{statistics.median(disco[node]):.0f} B" if node in disco and disco[node] else "-"
    ents = entities if node else ("0" if a in ("collectd", "syscall-floor") else "?")
    print(f"| {a} | {cpu:.3f} ms | {rss:.2f} MiB | {pss:.2f} MiB | {uss:.2f} MiB | {wr:.0f} | {d} | {ents} |")
for peer in ("collectd", "mqtt-system-monitor"):
    if peer not in med:
        continue
    for a in ("host2mqtt-base", "host2mqtt-glibc", "host2mqtt-musl", "syscall-floor"):
        if a in med:
            r = [x / y if y else float("nan") for x, y in zip(med[a], med[peer])]
            print(f"| {a}/{peer} | {r[0]:.2f}× | {r[2]:.2f}× | {r[3]:.2f}× | {r[4]:.2f}× | {r[1]:.2f}× | | |")
print()
print("CPU per cycle by round (ms), to see the spread the medians hide:")
for a in order:
    print(f"  {a}: " + " ".join(f"{v[0]:.3f}" for v in rows[a]))
PY
