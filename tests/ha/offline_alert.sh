#!/usr/bin/env bash
# How soon a user hears that a host fell over, with the "host offline"
# blueprint's DEFAULTS, in a REAL Home Assistant (the harness in
# tests/ha/harness), and that restarts tell nothing:
#
#   * broker restart (kill -9 of Mosquitto, started again): no alert;
#   * agent restart (SIGTERM, started again): no alert;
#   * kill -9 of an agent: alert (measured; must be <= 60 s);
#   * SIGSTOP of an agent whose session stays up (keepalive 600 s): the
#     heartbeat path alerts (measured);
#   * SIGSTOP with the defaults (keepalive 30 s, interval 30 s): the
#     broker's will after 1.5 x keepalive, then the offline path (measured);
#   * each comes back: a recovery message;
#   * the automations show under "Related" on their device's page
#     (search/related), and the devices only have the headline entities
#     enabled.
#
#   tests/ha/offline_alert.sh            # as root; about 4 minutes
#
# Env: HOST2MQTT_BIN  use this binary instead of `cargo build --release`
#      HA_REUSE=1     use the harness already running on $HA_PORT (not started, not stopped here)
#      H2M_HA_DIR, HA_PORT, MQTT_PORT   passed on to the harness (free ports by default)
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TEST_NAME=offline_alert
# shellcheck source=../lib.sh
source "$HERE/../lib.sh"
BLUEPRINTS=$PROJECT/config/homeassistant/blueprints/automation/host2mqtt
declare -A PID=()
now() { date +%s.%N; }
# at_most NAME SECONDS MEASURED: a measured figure within its bound.
at_most() { check "$1: $3 s (at most $2 s)" awk -v m="$3" -v b="$2" 'BEGIN { exit !(m != "" && m + 0 <= b + 0) }'; }
stop_agents() { local n; for n in "${!PID[@]}"; do [ -n "${PID[$n]}" ] && stop_pid "${PID[$n]}"; done; }
need_root "must run as root (the harness needs root)"
temp_dir WORK h2m-offline
on_exit stop_agents
log "work dir $WORK"

h2m_binary "$WORK"
ha_up "$WORK"
# The harness's state directory: its broker's conf and PID file.
STATE=$(dirname "$HA_ENV")
B=(env PYTHONDONTWRITEBYTECODE=1 python3 "$HERE/blueprints_ha.py" --env "$HA_ENV")
X=(env PYTHONDONTWRITEBYTECODE=1 python3 "$HERE/experience_ha.py" --env "$HA_ENV")
NOTES=$WORK/notifications.jsonl
SEEN=$WORK/states.jsonl

echo "== setup"
check "HA's HTTP config confirmed" "${B[@]}" promote-http
check "blueprints installed" "${B[@]}" install "$BLUEPRINTS" || fatal "install"
: > "$NOTES"
"${B[@]}" record "$NOTES" > "$WORK/recorder.log" 2>&1 &
track $!

clear_agent_env
: > "$WORK/empty.toml"
# One host per case, each with the defaults (interval 30 s, keepalive 30 s)
# except the frozen one: its session stays up (keepalive 600 s) and its
# heartbeat check is shortened to 5 s x 3 to keep the test short.
declare -A EXTRA=(
  [crash]=""
  [restart]=""
  [frozen]="HOST2MQTT__INTERVAL=5s HOST2MQTT__MQTT__KEEPALIVE=600s"
  [stopped]=""
)
HOSTS=(crash restart frozen stopped)
start_agent() { # NAME
  local n=$1
  # shellcheck disable=SC2086
  env HOST2MQTT_LOG=info HOST2MQTT__NODE_ID="h2m_$n" HOST2MQTT__DEVICE_NAME="h2m-$n" \
    HOST2MQTT__MQTT__HOST=127.0.0.1 HOST2MQTT__MQTT__PORT="$MQTT_PORT" \
    HOST2MQTT__CONTAINERS__ENABLED=false HOST2MQTT__SYSTEMD__SYSTEM__ENABLED=false ${EXTRA[$n]} \
    "$BIN" --config "$WORK/empty.toml" run >> "$WORK/$n.log" 2>&1 &
  PID[$n]=$!
}
for n in "${HOSTS[@]}"; do start_agent "$n"; done
declare -A DEV=()
for n in "${HOSTS[@]}"; do
  DEV[$n]=$("${B[@]}" device "h2m_$n" --timeout 30 2>&1) || fatal "device h2m_$n" "${DEV[$n]}"
done
log "devices: $(for n in "${HOSTS[@]}"; do printf '%s=%s ' "$n" "${DEV[$n]}"; done)"
for n in "${HOSTS[@]}"; do
  interval=30
  [ "$n" = frozen ] && interval=5
  check "automation for h2m-$n from the blueprint with its defaults (interval $interval s)" \
    "${B[@]}" create "off_$n" host2mqtt/host_offline.yaml "{\"hosts\":[\"${DEV[$n]}\"],\"interval\":$interval}"
done
check "the device page's Related lists the automation made for it" "${X[@]}" related "${DEV[crash]}" off_crash
check "only the headline entities are enabled" "${X[@]}" enabled h2m_crash \
  --on cpu_usage --on load_1m --on memory_used --on disk_root_used --on last_seen \
  --off pressure_cpu_some --off processes --off cycle_duration --off cpu_iowait
check "every host reports (last seen has a value)" "${X[@]}" states h2m_crash '*' --key last_seen --timeout 40
ENTS=()
for n in "${HOSTS[@]}"; do ENTS+=("sensor.h2m_${n}_last_seen"); done
"${X[@]}" watch "$SEEN" "${ENTS[@]}" > "$WORK/watch.log" 2>&1 &
track $!
sleep 2
check "HA's log: no error from automations, templates or MQTT" "${B[@]}" log "$HA_LOG" --offset 0 \
  --node h2m_crash --node h2m_restart --node h2m_frozen --node h2m_stopped

echo "== broker restart: no alert"
T=$(now)
MPID=$(cat "$STATE/mosquitto.pid")
kill -KILL "$MPID"
sleep 2
MOSQ=$(command -v mosquitto || echo /usr/sbin/mosquitto)
setsid "$MOSQ" -c "$STATE/mosquitto.conf" >> "$STATE/mosquitto.out" 2>&1 < /dev/null &
# (the harness's stop ends it, by this PID file; with HA_REUSE=1 it outlives us)
echo $! > "$STATE/mosquitto.pid"
log "mosquitto killed and started again (pid $(cat "$STATE/mosquitto.pid"))"
sleep 75
GAP=$("${X[@]}" unavailable "$SEEN" sensor.h2m_crash_last_seen --after "$T")
log "last seen of h2m-crash was unavailable for at most $GAP s"
check "no notification in the 75 s after a broker restart" "${B[@]}" quiet "$NOTES" \
  host2mqtt_off_crash host2mqtt_off_restart host2mqtt_off_frozen host2mqtt_off_stopped --after "$T"

echo "== crash, restart, freeze"
# HA logs the lost broker connection above as a warning; the log is
# checked again from here on.
LOG_OFFSET=$(stat -c %s "$HA_LOG")
T0=$(now)
kill -KILL "${PID[crash]}"
wait "${PID[crash]}" 2> /dev/null
PID[crash]=""
stop_pid "${PID[restart]}"
start_agent restart
kill -STOP "${PID[frozen]}" "${PID[stopped]}"
log "h2m-crash killed (SIGKILL), h2m-restart restarted (SIGTERM, run), h2m-frozen and h2m-stopped stopped (SIGSTOP)"
out=$("${B[@]}" expect "$NOTES" host2mqtt_off_crash --after "$T0" --timeout 90 --contains "h2m-crash is offline" 2>&1)
check "kill -9: alert" test $? = 0
echo "$out" | indent
CRASH_S=$(sed -n 's/^after \([0-9]*\)s:.*/\1/p' <<< "$out")
at_most "kill -9 to notification" 60 "$CRASH_S"
out=$("${B[@]}" expect "$NOTES" host2mqtt_off_frozen --after "$T0" --timeout 120 --contains "h2m-frozen is not reporting" \
  --contains "no heartbeat" 2>&1)
check "SIGSTOP, session up: heartbeat alert" test $? = 0
echo "$out" | indent
FROZEN_S=$(sed -n 's/^after \([0-9]*\)s:.*/\1/p' <<< "$out")
at_most "SIGSTOP (keepalive 600 s, 3 x 5 s heartbeats) to notification" 80 "$FROZEN_S"
out=$("${B[@]}" expect "$NOTES" host2mqtt_off_stopped --after "$T0" --timeout 150 --contains "h2m-stopped is" 2>&1)
check "SIGSTOP, default keepalive: alert" test $? = 0
echo "$out" | indent
STOPPED_S=$(sed -n 's/^after \([0-9]*\)s:.*/\1/p' <<< "$out")
at_most "SIGSTOP (defaults: the will after 45 s, then the grace) to notification" 110 "$STOPPED_S"
check "agent restart: no notification" "${B[@]}" quiet "$NOTES" host2mqtt_off_restart --after "$T0"

echo "== recovery"
T1=$(now)
start_agent crash
kill -CONT "${PID[frozen]}" "${PID[stopped]}"
check "h2m-crash started again: recovery message" "${B[@]}" expect "$NOTES" host2mqtt_off_crash \
  --after "$T1" --timeout 30 --contains "h2m-crash is reporting again"
check "h2m-frozen resumed: recovery message" "${B[@]}" expect "$NOTES" host2mqtt_off_frozen \
  --after "$T1" --timeout 30 --contains "h2m-frozen is reporting again"
check "HA's log since the broker restart: no error from automations, templates or MQTT" "${B[@]}" log "$HA_LOG" \
  --offset "$LOG_OFFSET" --node h2m_crash --node h2m_restart --node h2m_frozen --node h2m_stopped

echo "== figures"
echo "  broker restart: last seen unavailable for ${GAP} s, no alert"
echo "  kill -9 -> notification: ${CRASH_S:-?} s; SIGSTOP (heartbeat path) -> ${FROZEN_S:-?} s; SIGSTOP (defaults, will path) -> ${STOPPED_S:-?} s"
