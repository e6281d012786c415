#!/usr/bin/env bash
# End-to-end check against a REAL Home Assistant (the harness in
# tests/ha/harness): runs `host2mqtt run` against the harness's Mosquitto and
# asserts what HA builds from it: the device, every entity with its unit/
# device_class/state_class/entity_category, sane states, removal of a vanished
# mount, re-announcing on HA's birth, LWT on kill -9, offline on SIGTERM, and
# expire_after while the agent is frozen; and, from two more agents reading
# fixture sysfs trees of real machines (an AMD desktop, a Raspberry Pi), the
# hardware entities (temperatures, fans, GPU, Pi problems, OOM kills). See
# tests/ha/README.md.
#
#   tests/ha/check.sh
#
# Env: HOST2MQTT_BIN  use this binary instead of `cargo build --release`
#      HA_REUSE=1     use the harness already running on $HA_PORT (not started, not stopped here)
#      H2M_HA_DIR, HA_PORT, MQTT_PORT   passed on to the harness (free ports by default)
# Must run as root (mount/umount of a tmpfs; the harness needs root anyway).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TEST_NAME=hacheck
# shellcheck source=../lib.sh
source "$HERE/../lib.sh"
NODE=hacheck
INTERVAL_S=2
AGENT_PID=""
HW_PIDS=()
MNT=""
need_root "must run as root (tmpfs mount; the harness needs root)"
temp_dir WORK h2m-hacheck
stop_agent() { [ -n "$AGENT_PID" ] && stop_pid "$AGENT_PID"; }
stop_hw_agents() { ((${#HW_PIDS[@]})) && stop_pid "${HW_PIDS[@]}"; HW_PIDS=(); }
umount_tmpfs() { if [ -n "$MNT" ] && mountpoint -q "$MNT"; then umount "$MNT" || umount -l "$MNT"; fi; }
on_exit umount_tmpfs
on_exit stop_agent
on_exit stop_hw_agents
log "work dir $WORK"

h2m_binary "$WORK"
ha_up "$WORK"

# --- 4. the tmpfs and the agent's config ------------------------------------------
MNT_DIR=$WORK/tmpfs
mkdir -p "$MNT_DIR"
if mount -t tmpfs -o size=4m,mode=0755 h2m-hacheck "$MNT_DIR" 2> "$WORK/mount.err"; then
  MNT=$MNT_DIR
  log "tmpfs mounted at $MNT"
else
  skip "a mount that goes away" "cannot mount a tmpfs at $MNT_DIR: $(cat "$WORK/mount.err")"
fi

# Only our settings: nothing from the caller's environment or /etc.
clear_agent_env
echo "# empty: tests/ha/check.sh configures through the environment" > "$WORK/host2mqtt.toml"
export HOST2MQTT_LOG=info
export HOST2MQTT__NODE_ID=$NODE
export HOST2MQTT__INTERVAL=${INTERVAL_S}s
export HOST2MQTT__MQTT__HOST=127.0.0.1
export HOST2MQTT__MQTT__PORT=$MQTT_PORT
export HOST2MQTT__HOMEASSISTANT__DISCOVERY_PREFIX=$PREFIX
export HOST2MQTT__COLLECTORS__DISK__MOUNT_POINTS_INCLUDE="/${MNT:+,$MNT}"
export HOST2MQTT__COLLECTORS__DISK__FS_TYPES_EXCLUDE=""
# The first OS update check soon after the start (`apt-get -s upgrade`: up
# to a minute on a busy machine; the pending count is `unknown` until then).
export HOST2MQTT__OS_UPDATES__FIRST_CHECK_AFTER=1s
SLOW_S=120
H2M=("$BIN" --config "$WORK/host2mqtt.toml")

if ! "${H2M[@]}" check --json > "$WORK/check.json" 2> "$WORK/check.err"; then
  fatal "host2mqtt check --json" "$(cat "$WORK/check.err")"
fi
CHECK=(env PYTHONDONTWRITEBYTECODE=1 python3 "$HERE/check_ha.py" --env "$HA_ENV" --check-json "$WORK/check.json" --node "$NODE")
AGENT_LOG=$WORK/agent.log
: > "$AGENT_LOG"
start_agent() {
  "${H2M[@]}" run >> "$AGENT_LOG" 2>&1 &
  AGENT_PID=$!
}
# agent_exited TIMEOUT_S: waits for the agent to exit; sets AGENT_RC.
agent_exited() {
  local i
  for i in $(seq $(($1 * 10))); do alive "$AGENT_PID" || break; sleep 0.1; done
  alive "$AGENT_PID" && return 1
  wait "$AGENT_PID" 2>/dev/null
  AGENT_RC=$?
  AGENT_PID=""
}

# The hardware agents: this VM has no hwmon, thermal zone or GPU, so two more
# agents read the fixture sysfs trees of real machines (tests/fixtures/sys/,
# see tests/fixtures/README.md) and the captured /proc/vmstat (oom_kill 1),
# with only the hardware collectors on and every entity enabled (so the
# disabled-by-default fans and VRAM are in /api/states too). They share HA
# and the broker with the main agent; a node of their own each.
FIXTURES=$PROJECT/tests/fixtures
HW_NODES=(hwamd hwpi)
declare -A HW_SYS=([hwamd]=amd [hwpi]=pi)
hw_conf() { # NODE: its config file (nothing from the environment: see hw_agent)
  cat <<EOF
node_id = "$1"
device_name = "$1"
interval = "${INTERVAL_S}s"
[mqtt]
host = "127.0.0.1"
port = $MQTT_PORT
# hwpi speaks MQTT 5 (HA's own default), so the real HA sees an MQTT 5 agent too.
protocol = "$([ "$1" = hwpi ] && echo 5 || echo 3.1.1)"
[homeassistant]
discovery_prefix = "$PREFIX"
enable_all_entities = true
[host]
proc = "$FIXTURES/proc/oom"
sys = "$FIXTURES/sys/${HW_SYS[$1]}"
root = "$FIXTURES/root/vm"
EOF
  for c in cpu load memory pressure disk diskio network system; do printf '[collectors.%s]\nenabled = false\n' "$c"; done
  for c in containers systemd.system systemd.reboot os_updates hardware.nvidia hardware.smart; do
    printf '[%s]\nenabled = false\n' "$c"
  done
}
# hw_agent NODE ARGS...: host2mqtt with NODE's config and none of the
# HOST2MQTT__* variables set above for the main agent.
# hw_cmd NODE: the command line of a hardware agent in HW_CMD (the main
# agent's HOST2MQTT__* settings left out). Started in the background as a
# plain command, so $! is the agent itself (env execs it), which
# stop_hw_agents ends; a function in the background would be a subshell
# whose agent outlives it.
hw_cmd() {
  local v
  HW_CMD=(env)
  for v in $(compgen -e); do [[ $v == HOST2MQTT__* ]] && HW_CMD+=(-u "$v"); done
  HW_CMD+=("$BIN" --config "$WORK/$1.toml")
}
hw_agent() {
  hw_cmd "$1"
  shift
  "${HW_CMD[@]}" "$@"
}
for n in "${HW_NODES[@]}"; do
  hw_conf "$n" > "$WORK/$n.toml"
  hw_agent "$n" check --json > "$WORK/$n.json" 2> "$WORK/$n.check.err" ||
    fatal "host2mqtt check --json ($n)" "$(cat "$WORK/$n.check.err")"
done

HA_LOG_OFFSET=$(stat -c %s "$HA_LOG" 2>/dev/null || echo 0)
T_CHECKS=$EPOCHREALTIME
start_agent
log "host2mqtt run (pid $AGENT_PID, node_id $NODE, interval ${INTERVAL_S}s, broker 127.0.0.1:$MQTT_PORT)"
for n in "${HW_NODES[@]}"; do
  hw_cmd "$n"
  "${HW_CMD[@]}" run >> "$WORK/$n.log" 2>&1 &
  HW_PIDS+=($!)
done
log "hardware agents ${HW_NODES[*]} (pids ${HW_PIDS[*]}; sys = tests/fixtures/sys/{amd,pi})"

# --- 5. the checks -----------------------------------------------------------------
echo "== discovery"
if ! check "device and every entity of \`host2mqtt check --json\` appear in HA" "${CHECK[@]}" discovered --timeout 20; then
  echo "agent log:"
  indent < "$AGENT_LOG"
  exit 1
fi
check "device registry: identifiers, name = host name, manufacturer/model from os-release, sw_version = kernel" \
  "${CHECK[@]}" device
check "entities: entity_id = default_entity_id (or HA's own, where it is left out); unit, device_class, state_class, entity_category as announced; disabled-by-default ones disabled by the integration" \
  "${CHECK[@]}" entities
KINDS=(--want 'net_*_rx_total=sensor,data_size,MiB,total_increasing' --want 'net_*_tx_total=sensor,data_size,MiB,total_increasing'
  --want 'net_*_address=sensor,-,-,-')
# The OS update entity and its pending count: on a Debian/Ubuntu (apt) host.
if command -v apt-get > /dev/null; then
  KINDS+=(--want 'os_update=update,*,-,-' --want 'os_updates_pending=sensor,-,-,measurement')
fi
check "new entities: network totals (data_size, MiB, total_increasing), address, OS update (update.${NODE}_os_update)" \
  "${CHECK[@]}" kinds "${KINDS[@]}"
check "states after the second cycle (and the first OS update check): numbers, 0..100 %, timestamps, on/off" \
  "${CHECK[@]}" sane --timeout $((INTERVAL_S * 4)) --settle $SLOW_S

echo "== hardware entities (agents on the AMD desktop and Raspberry Pi fixture trees)"
T_HW=$EPOCHREALTIME
HW() { env PYTHONDONTWRITEBYTECODE=1 python3 "$HERE/check_ha.py" --env "$HA_ENV" --check-json "$WORK/$1.json" --node "$1" "${@:2}"; }
for n in "${HW_NODES[@]}"; do
  if ! check "$n: device and every entity appear in HA" HW "$n" discovered --timeout 20; then
    indent < "$WORK/$n.log"
    continue
  fi
  check "$n: entities as announced (entity_id, unit, device_class, state_class, category)" HW "$n" entities
  check "$n: states after the second cycle (numbers, on/off)" HW "$n" sane --timeout $((INTERVAL_S * 4))
done
# What HA makes of each kind: KEY_GLOB=PLATFORM,DEVICE_CLASS,UNIT,STATE_CLASS (- none).
TEMP=sensor,temperature,°C,measurement
check "hwamd: CPU temperature and temp_* (temperature, °C), fans (rpm, measurement, no device class), GPU load (%), VRAM (data_size, GiB), OOM kills (total_increasing)" \
  HW hwamd kinds --want "cpu_temperature=$TEMP" --want "temp_*=$TEMP" \
  --want 'fan_*=sensor,-,rpm,measurement' --want 'gpu_*_load=sensor,-,%,measurement' \
  --want 'gpu_*_vram_*=sensor,data_size,GiB,measurement' --want 'oom_kills=sensor,-,-,total_increasing' \
  --absent 'rpi_*'
check "hwpi is connected over MQTT 5 (the harness broker's log)" grep -q "as host2mqtt-hwpi (p5" "$(ha_env MOSQUITTO_LOG)"
check "hwpi: CPU temperature and the cpu-thermal zone (°C), the Pi's problem binary_sensors, OOM kills" \
  HW hwpi kinds --want "cpu_temperature=$TEMP" --want "temp_cpu_thermal=$TEMP" \
  --want 'rpi_*=binary_sensor,problem,-,-' --want 'oom_kills=sensor,-,-,total_increasing' \
  --absent 'gpu_*' --absent 'fan_*'
# Every state is what `check --json` read from the same fixture; the literal
# ones are the fixture files' own numbers (millidegrees / 1000, bytes / GiB,
# get_throttled = 50005: under-voltage and throttled, now and since boot).
VOLATILE=(--skip last_seen --skip cycle_duration)
check "hwamd: HA shows the fixture's readings" HW hwamd values "${VOLATILE[@]}" \
  --expect cpu_temperature=45.3 --expect temp_k10temp_tctl=45.3 --expect fan_nct6798_fan1=1081 \
  --expect gpu_card0_load=7 --expect gpu_card0_vram_used=1.025 --expect oom_kills=1
check "hwpi: HA shows the fixture's readings" HW hwpi values "${VOLATILE[@]}" \
  --expect cpu_temperature=48.7 --expect rpi_under_voltage=on --expect rpi_under_voltage_since_boot=on \
  --expect rpi_throttled=on --expect rpi_throttled_since_boot=on --expect rpi_frequency_capped=off
for n in "${HW_NODES[@]}"; do
  check "$n: no discovery error or warning about it in HA's log" HW "$n" log --log "$HA_LOG" --offset "$HA_LOG_OFFSET"
done
stop_hw_agents
log "hardware checks took $(elapsed "$T_HW")s"

WITHOUT=()
if [ -n "$MNT" ]; then
  echo "== a mount that goes away"
  check "tmpfs $MNT: its entities exist with values" "${CHECK[@]}" mount "$MNT"
  if umount "$MNT"; then
    T=$EPOCHREALTIME
    MNT=""
    WITHOUT=(--without-mount "$MNT_DIR")
    check "tmpfs unmounted: its entities leave /api/states and the entity registry within 10 s" \
      "${CHECK[@]}" gone "$MNT_DIR" --since "$T" --timeout 10
  else
    check "umount of the tmpfs" false
  fi
fi
CHECK+=("${WITHOUT[@]}")
# subcommands come last: put the global options before them
C() { "${CHECK[@]}" "$@"; }

echo "== Home Assistant's birth message"
n0=$(grep -c 'announcing again' "$AGENT_LOG")
mosquitto_pub -h 127.0.0.1 -p "$MQTT_PORT" -t "$PREFIX/status" -m online
birth_line() {
  local i
  for i in $(seq 50); do
    line=$(grep 'announcing again' "$AGENT_LOG" | sed -n "$((n0 + 1))p")
    [ -n "$line" ] && { echo "$line"; return 0; }
    sleep 0.1
  done
  echo "no 'announcing again' in the agent log within 5 s of $PREFIX/status = online"
  return 1
}
check "agent logs 'announcing again'" birth_line
delay_ms=$(grep 'announcing again' "$AGENT_LOG" | sed -n "$((n0 + 1))p" | sed -n 's/.*delay_ms=\([0-9]*\).*/\1/p')
steady_s=$(awk -v d="${delay_ms:-3000}" -v i="$INTERVAL_S" 'BEGIN { printf "%.1f", d / 1000 + i + 1.5 }')
check "entities stay available and sane through the re-announcement (${steady_s}s)" C steady --duration "$steady_s"
check "entities unchanged after the re-announcement" C entities

echo "== expire_after (agent frozen with SIGSTOP: connection open, no will)"
kill -STOP "$AGENT_PID"
T=$EPOCHREALTIME
check "entities with expire_after go unavailable ~$((3 * INTERVAL_S)) s after the last state; last_seen keeps its value" \
  C expire --since "$T" --expect-after $((3 * INTERVAL_S)) --min 3.5 --max $((3 * INTERVAL_S + 3))
kill -CONT "$AGENT_PID"
check "after SIGCONT every entity is back with a sane value" C sane --cycles 1 --settle $((INTERVAL_S * 3))

echo "== kill -9 (broker publishes the will)"
kill -KILL "$AGENT_PID"
T=$EPOCHREALTIME
wait "$AGENT_PID" 2>/dev/null
AGENT_PID=""
check "all entities unavailable within 3 s (LWT)" C all-state unavailable --since "$T" --timeout 3 --what "kill -9"
start_agent
check "restarted agent: every entity back with a sane value" C sane --cycles 2 --timeout $((INTERVAL_S * 5)) --settle $SLOW_S

echo "== SIGTERM"
kill -TERM "$AGENT_PID"
T=$EPOCHREALTIME
check "all entities unavailable within 3 s (offline published)" C all-state unavailable --since "$T" --timeout 3 --what SIGTERM
AGENT_RC=""
agent_exited 10 || AGENT_RC="none: still running 10 s after SIGTERM"
exit_code_is_0() { echo "exit code $AGENT_RC"; [ "$AGENT_RC" = 0 ]; }
check "agent exits 0" exit_code_is_0
retained() {
  local got
  got=$(mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -t "host2mqtt/$NODE/availability" -C 1 -W 3 2>&1)
  echo "retained host2mqtt/$NODE/availability = '$got'"
  [ "$got" = offline ]
}
check "retained availability is 'offline'" retained

echo "== Home Assistant's log"
check "no discovery error or warning about our device in HA's log" C log --log "$HA_LOG" --offset "$HA_LOG_OFFSET"

log "checks took $(elapsed "$T_CHECKS")s (after HA was ready)"
if ((FAIL)); then
  echo "agent log (last 30 lines):"
  tail -n 30 "$AGENT_LOG" | indent
fi
