#!/usr/bin/env bash
# End-to-end check against a REAL Home Assistant (the harness in ../shared/ha):
# runs `host2mqtt run` against the harness's Mosquitto and asserts what HA
# builds from it: the device, every entity with its unit/device_class/
# state_class/entity_category, sane states, removal of a vanished mount,
# re-announcing on HA's birth, LWT on kill -9, offline on SIGTERM, and
# expire_after while the agent is frozen. See tests/ha/README.md.
#
#   tests/ha/check.sh
#
# Env: HA_HARNESS     harness scripts (default: <project>/../shared/ha); absent -> SKIP
#      HOST2MQTT_BIN  use this binary instead of `cargo build --release`
#      HA_REUSE=1     use an already running harness (not started, not stopped here)
#      HA_HARNESS_DIR, HA_STATE_DIR   passed on to the harness scripts
# Must run as root (mount/umount of a tmpfs; the harness needs root anyway).
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
PROJECT=$(cd "$HERE/../.." && pwd)
HARNESS=${HA_HARNESS:-$(dirname "$0")/../../../shared/ha}
if [ ! -f "$HARNESS/start.sh" ] || [ ! -f "$HARNESS/ha_harness.py" ]; then
  echo "SKIP: no Home Assistant harness at $(realpath -m "$HARNESS")"
  exit 0
fi
HARNESS=$(cd "$HARNESS" && pwd)
STATE=$(realpath -m "${HA_STATE_DIR:-${HA_HARNESS_DIR:-/tmp/ha}/run}")
export HA_ENV=${HA_ENV:-$STATE/ha.env}
NODE=hacheck
INTERVAL_S=2

T_START=$EPOCHREALTIME
PASS=0
FAIL=0
FAILED=()
STARTED_HARNESS=0
AGENT_PID=""
MNT=""
WORK=$(mktemp -d /tmp/h2m-hacheck.XXXXXX)

log() { printf '[hacheck %6.1fs] %s\n' "$(elapsed "$T_START")" "$*"; }
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
indent() { sed 's/^/       /'; }

summary() {
  log "total run time $(elapsed "$T_START")s"
  if ((FAIL)); then printf 'failed: %s\n' "${FAILED[@]}"; fi
  echo "$PASS passed, $FAIL failed"
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$AGENT_PID" ]; then
    if alive "$AGENT_PID"; then
      kill -CONT "$AGENT_PID" 2>/dev/null
      kill -TERM "$AGENT_PID" 2>/dev/null
      for _ in $(seq 50); do alive "$AGENT_PID" || break; sleep 0.1; done
      alive "$AGENT_PID" && kill -KILL "$AGENT_PID" 2>/dev/null
    fi
    wait "$AGENT_PID" 2>/dev/null
  fi
  if [ -n "$MNT" ] && mountpoint -q "$MNT"; then umount "$MNT" || umount -l "$MNT"; fi
  if ((STARTED_HARNESS)); then
    log "stopping the harness"
    "$HARNESS/stop.sh" 2>&1 | indent
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'echo; log "interrupted"; exit 130' INT TERM

# check NAME CMD...: runs CMD, counts it as passed (exit 0) or failed.
check() {
  local name=$1 out rc
  shift
  out=$("$@" 2>&1)
  rc=$?
  if ((rc == 0)); then
    PASS=$((PASS + 1))
    echo "  ok   $name"
  else
    FAIL=$((FAIL + 1))
    FAILED+=("$name")
    echo "  FAIL $name"
  fi
  [ -n "$out" ] && printf '%s\n' "$out" | indent
  return $rc
}

# fatal NAME MESSAGE: a failure that ends the run.
fatal() {
  FAIL=$((FAIL + 1))
  FAILED+=("$1")
  echo "  FAIL $1"
  [ -n "${2:-}" ] && printf '%s\n' "$2" | indent
  summary
  exit 1
}

harness_running() {
  local p f
  for p in hass mosquitto; do
    f=$STATE/$p.pid
    [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null && return 0
  done
  return 1
}

# alive PID: running (a zombie, exited but not yet waited for, is not).
alive() {
  local st
  st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ $st != Z* ]]
}

envval() { sed -n "s/^$1=//p" "$HA_ENV" | tail -n 1; }

# --- 1. the harness --------------------------------------------------------------
[ "$(id -u)" = 0 ] || { echo "must run as root (tmpfs mount; the harness needs root)"; exit 1; }
log "harness $HARNESS, state $STATE, work dir $WORK"
log "setup.sh (idempotent; the first run takes minutes and needs the package registries)"
T=$EPOCHREALTIME
if ! "$HARNESS/setup.sh" 2>&1 | tee "$WORK/setup.log" | indent; then
  fatal "harness setup.sh" "(its output is above)"
fi
log "setup.sh done in $(elapsed "$T")s"

# --- 2. the binary ---------------------------------------------------------------
if [ -n "${HOST2MQTT_BIN:-}" ]; then
  [ -x "$HOST2MQTT_BIN" ] || fatal "binary" "HOST2MQTT_BIN=$HOST2MQTT_BIN is not executable"
  SRC_BIN=$HOST2MQTT_BIN
else
  log "cargo build --release"
  T=$EPOCHREALTIME
  if ! (cd "$PROJECT" && cargo build --release --bin host2mqtt --message-format=json-render-diagnostics \
          > "$WORK/cargo.json" 2> "$WORK/cargo.err"); then
    fatal "cargo build --release" "$(tail -n 40 "$WORK/cargo.err")"
  fi
  SRC_BIN=$(python3 -c '
import json, sys
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "host2mqtt":
        print(m["executable"])' "$WORK/cargo.json" | tail -n 1)
  [ -x "$SRC_BIN" ] || fatal "cargo build --release" "no host2mqtt executable in cargo's output"
  log "built $SRC_BIN in $(elapsed "$T")s"
fi
# A private copy: a rebuild in the meantime must not swap the binary under us.
BIN=$WORK/host2mqtt
cp "$SRC_BIN" "$BIN"

# --- 3. HA + broker ---------------------------------------------------------------
if harness_running; then
  if [ "${HA_REUSE:-0}" = 1 ]; then
    log "HA_REUSE=1: using the running harness (it will not be stopped)"
  else
    fatal "harness start" "the harness is already running (pid files in $STATE); stop it with $HARNESS/stop.sh, or set HA_REUSE=1 to use it"
  fi
else
  log "start.sh (fresh HA + Mosquitto)"
  T=$EPOCHREALTIME
  STARTED_HARNESS=1   # from here on, whatever runs is ours to stop
  if ! "$HARNESS/start.sh" > "$WORK/start.log" 2>&1; then
    fatal "harness start.sh" "$(tail -n 30 "$WORK/start.log")"
  fi
  log "HA $(envval HA_VERSION) ready in $(elapsed "$T")s"
fi
[ -f "$HA_ENV" ] || fatal "harness env" "no $HA_ENV"
MQTT_PORT=$(envval MQTT_PORT)
PREFIX=$(envval DISCOVERY_PREFIX)
HA_LOG=$(envval HA_LOG)

# --- 4. the tmpfs and the agent's config ------------------------------------------
MNT_DIR=$WORK/tmpfs
mkdir -p "$MNT_DIR"
if mount -t tmpfs -o size=4m,mode=0755 h2m-hacheck "$MNT_DIR" 2> "$WORK/mount.err"; then
  MNT=$MNT_DIR
  log "tmpfs mounted at $MNT"
else
  log "cannot mount a tmpfs at $MNT_DIR ($(cat "$WORK/mount.err")); skipping the mount checks"
fi

# Only our settings: nothing from the caller's environment or /etc.
for v in $(compgen -e); do
  case $v in HOST2MQTT__* | HOST2MQTT_CONFIG | JOURNAL_STREAM | NOTIFY_SOCKET | WATCHDOG_*) unset "$v" ;; esac
done
echo "# empty: tests/ha/check.sh configures through the environment" > "$WORK/host2mqtt.toml"
export HOST2MQTT_LOG=info
export HOST2MQTT__NODE_ID=$NODE
export HOST2MQTT__INTERVAL=${INTERVAL_S}s
export HOST2MQTT__MQTT__HOST=127.0.0.1
export HOST2MQTT__MQTT__PORT=$MQTT_PORT
export HOST2MQTT__HOMEASSISTANT__DISCOVERY_PREFIX=$PREFIX
export HOST2MQTT__COLLECTORS__DISK__MOUNT_POINTS_INCLUDE="/${MNT:+,$MNT}"
export HOST2MQTT__COLLECTORS__DISK__FS_TYPES_EXCLUDE=""
H2M=("$BIN" --config "$WORK/host2mqtt.toml")

if ! "${H2M[@]}" check --json > "$WORK/check.json" 2> "$WORK/check.err"; then
  fatal "host2mqtt check --json" "$(cat "$WORK/check.err")"
fi
CHECK=(env PYTHONDONTWRITEBYTECODE=1 python3 "$HERE/check_ha.py" --harness "$HARNESS" --env "$HA_ENV" --check-json "$WORK/check.json" --node "$NODE")
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

HA_LOG_OFFSET=$(stat -c %s "$HA_LOG" 2>/dev/null || echo 0)
T_CHECKS=$EPOCHREALTIME
start_agent
log "host2mqtt run (pid $AGENT_PID, node_id $NODE, interval ${INTERVAL_S}s, broker 127.0.0.1:$MQTT_PORT)"

# --- 5. the checks -----------------------------------------------------------------
echo "== discovery"
if ! check "device and every entity of \`host2mqtt check --json\` appear in HA" "${CHECK[@]}" discovered --timeout 20; then
  echo "agent log:"
  indent < "$AGENT_LOG"
  summary
  exit 1
fi
check "device registry: identifiers, name = host name, manufacturer/model from os-release, sw_version = kernel" \
  "${CHECK[@]}" device
check "entities: entity_id = default_entity_id; unit, device_class, state_class, entity_category as announced" \
  "${CHECK[@]}" entities
check "states after the second cycle: numbers, 0..100 %, timestamps, on/off" "${CHECK[@]}" sane --timeout $((INTERVAL_S * 4))

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
check "restarted agent: every entity back with a sane value" C sane --cycles 2 --timeout $((INTERVAL_S * 5)) --settle $((INTERVAL_S * 2))

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
summary
((FAIL == 0))
