#!/usr/bin/env bash
# End-to-end proof of the Home Assistant blueprints in
# config/homeassistant/blueprints/automation/host2mqtt/ against a REAL Home
# Assistant (the harness in tests/ha/harness): loads them, makes one
# automation from each through HA's API, runs the real agent against HA's
# broker, causes each condition for real, and asserts that each automation
# fired (a persistent notification, a to-do item) and that nothing fired
# while nothing was wrong. See tests/ha/README.md.
#
#   tests/ha/blueprints.sh
#
# Env: HOST2MQTT_BIN  use this binary instead of `cargo build --release`
#      HA_REUSE=1     use the harness already running on $HA_PORT (not started, not stopped here)
#      H2M_HA_DIR, HA_PORT, MQTT_PORT   passed on to the harness (free ports by default)
# Must run as root (tmpfs mount; the harness and Podman need root anyway).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TEST_NAME=blueprints
# shellcheck source=../lib.sh
source "$HERE/../lib.sh"
BLUEPRINTS=$PROJECT/config/homeassistant/blueprints/automation/host2mqtt
N_BLUEPRINTS=$(ls "$BLUEPRINTS"/*.yaml | wc -l)
INTERVAL_S=2
# Three agents, three devices: MAIN has the disk, memory, systemd and
# container updates; HUNG gets frozen, DEAD gets killed.
MAIN=bpmain HUNG=bphung DEAD=bpdead
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PROJECT/tests/env/systemd-containers.conf}
declare -A AGENT_PID=()
HOG=""
MNT=""
CTR=""
now() { date +%s.%N; }
need_root "must run as root (tmpfs mount; the harness needs root)"
temp_dir WORK h2m-blueprints
umount_tmpfs() { if [ -n "$MNT" ] && mountpoint -q "$MNT"; then umount "$MNT" || umount -l "$MNT"; fi; }
remove_ctr() { [ -n "$CTR" ] && podman rm -f -t 2 "$CTR"; }
on_exit umount_tmpfs
on_exit remove_ctr
log "work dir $WORK"

h2m_binary "$WORK"

# supports ENV=VALUE...: the binary accepts these settings. The config is
# checked before anything runs and an unknown key exits 78 at once; the
# check itself is cut short.
supports() {
  timeout 2 env -i PATH="$PATH" "$@" HOST2MQTT__NODE_ID=probe HOST2MQTT__MQTT__HOST=127.0.0.1 \
    "$BIN" --config "$WORK/host2mqtt.toml" check > /dev/null 2>&1
  [ $? != 78 ]
}
echo "# empty: tests/ha/blueprints.sh configures through the environment" > "$WORK/host2mqtt.toml"
# The image of a real systemd (for the failed-units blueprint), built once
# by the systemd tests' script (about 2 minutes the first time); in the
# background while HA starts.
if command -v podman > /dev/null && [ -x "$PROJECT/tests/env/systemd-image.sh" ] \
    && supports HOST2MQTT__SYSTEMD__SYSTEM__ADDRESS=unix:path=/nonexistent; then
  "$PROJECT/tests/env/systemd-image.sh" > "$WORK/image.log" 2>&1 &
  IMAGE_JOB=$!
  track "$IMAGE_JOB"
fi

ha_up "$WORK"
HA_LOG_OFFSET=$(stat -c %s "$HA_LOG" 2>/dev/null || echo 0)
B=(env PYTHONDONTWRITEBYTECODE=1 python3 "$HERE/blueprints_ha.py" --env "$HA_ENV")
NOTES=$WORK/notifications.jsonl

# --- 2. the blueprints in HA --------------------------------------------------------
echo "== blueprints"
# This run lasts longer than the 5 minutes after which HA 2026.11 reverts
# an unconfirmed HTTP config and restarts.
check "HA's HTTP config confirmed (http/config/promote)" "${B[@]}" promote-http
check "blueprints copied to <config>/blueprints/automation/host2mqtt/, automations.yaml loaded" \
  "${B[@]}" install "$BLUEPRINTS" || fatal "install" ""
check "blueprint/list: $N_BLUEPRINTS host2mqtt blueprints, no error, inputs as declared" \
  "${B[@]}" blueprints "$N_BLUEPRINTS" --dir "$BLUEPRINTS"
TODO=$("${B[@]}" todo "Host maintenance" 2>&1)
check "a Local to-do list through the config flow: $TODO" test "${TODO#todo.}" != "$TODO"
: > "$NOTES"
"${B[@]}" record "$NOTES" > "$WORK/recorder.log" 2>&1 &
track $!

# --- 3. the agents --------------------------------------------------------------------
clear_agent_env
COMMON=(HOST2MQTT_LOG=info HOST2MQTT__INTERVAL=${INTERVAL_S}s HOST2MQTT__MQTT__HOST=127.0.0.1
  HOST2MQTT__MQTT__PORT="$MQTT_PORT" HOST2MQTT__HOMEASSISTANT__DISCOVERY_PREFIX="$PREFIX")

OFF=()
supports HOST2MQTT__SYSTEMD__SYSTEM__ENABLED=false && OFF+=(HOST2MQTT__SYSTEMD__SYSTEM__ENABLED=false)
supports HOST2MQTT__CONTAINERS__ENABLED=false && OFF+=(HOST2MQTT__CONTAINERS__ENABLED=false)

# The main agent's disks: / and a tmpfs mounted later (a disk that comes
# along while the automation runs). Its container updates: the captured
# output of a real `podman auto-update --dry-run --format json`, from a file.
MNT_DIR=$WORK/tmpfs
mkdir -p "$MNT_DIR"
MAIN_ENV=(HOST2MQTT__NODE_ID=$MAIN HOST2MQTT__DEVICE_NAME=bp-main
  HOST2MQTT__COLLECTORS__DISK__MOUNT_POINTS_INCLUDE="/,$MNT_DIR" HOST2MQTT__COLLECTORS__DISK__FS_TYPES_EXCLUDE="")
UPDATES=0
cp "$PROJECT/tests/fixtures/autoupdate/4.3.1-pending.json" "$WORK/autoupdate.json"
U=(HOST2MQTT__CONTAINERS__UPDATES__SOURCE=file HOST2MQTT__CONTAINERS__UPDATES__FILE="$WORK/autoupdate.json"
  HOST2MQTT__CONTAINERS__UPDATES__FIRST_CHECK_AFTER=1s)
if supports "${U[@]}"; then
  MAIN_ENV+=("${U[@]}")
  UPDATES=1
elif supports HOST2MQTT__CONTAINERS__ENABLED=false; then
  MAIN_ENV+=(HOST2MQTT__CONTAINERS__ENABLED=false)
fi

# A real systemd in a container (tests/env/systemd-image.sh), its system
# bus on a directory we share: the agent reads PID 1's failed units there.
SYSTEMD=0
SYSTEMD_WHY="no podman, no tests/env/systemd-image.sh, or no systemd source in this binary"
if [ -n "${IMAGE_JOB:-}" ]; then
  log "waiting for the systemd image (tests/env/systemd-image.sh)"
  if wait "$IMAGE_JOB"; then
    SYSD_IMAGE=$(tail -n 1 "$WORK/image.log") # the script prints the image's name
    mkdir -p "$WORK/dbus"
    CTR=h2m-blueprints-$$
    if podman run -d --rm --systemd=always --network=none -v "$WORK/dbus:/run/dbus" --name "$CTR" \
        "$SYSD_IMAGE" /sbin/init > "$WORK/podman.log" 2>&1; then
      for _ in $(seq 100); do
        st=$(podman exec "$CTR" systemctl is-system-running 2>/dev/null)
        [ "$st" = running ] || [ "$st" = degraded ] && break
        sleep 0.2
      done
      if [ -S "$WORK/dbus/system_bus_socket" ]; then
        SYSTEMD=1
        MAIN_ENV+=(HOST2MQTT__SYSTEMD__SYSTEM__ADDRESS="unix:path=$WORK/dbus/system_bus_socket")
        log "systemd in container $CTR: $st"
      else
        SYSTEMD_WHY="the systemd container did not come up: $(tail -n 1 "$WORK/podman.log")"
      fi
    else
      CTR=""
      SYSTEMD_WHY="podman run failed: $(tail -n 1 "$WORK/podman.log")"
    fi
  else
    SYSTEMD_WHY="no systemd image: $(tail -n 1 "$WORK/image.log")"
  fi
  IMAGE_JOB=""
fi
if ((!SYSTEMD)) && supports HOST2MQTT__SYSTEMD__SYSTEM__ENABLED=false; then
  MAIN_ENV+=(HOST2MQTT__SYSTEMD__SYSTEM__ENABLED=false)
fi

start_agent() { # NAME ENV...: starts the agent, records its PID
  local name=$1
  shift
  env "${COMMON[@]}" "$@" "$BIN" --config "$WORK/host2mqtt.toml" run >> "$WORK/$name.log" 2>&1 &
  AGENT_PID[$name]=$!
  track "${AGENT_PID[$name]}"
}
HUNG_ENV=(HOST2MQTT__NODE_ID=$HUNG HOST2MQTT__DEVICE_NAME=bp-hung "${OFF[@]}"
  # A long keepalive: the broker must not notice the frozen agent (and
  # publish its will) before the heartbeat check does; this is the agent
  # whose loop hangs while its TCP session stays open.
  HOST2MQTT__MQTT__KEEPALIVE=600s)
DEAD_ENV=(HOST2MQTT__NODE_ID=$DEAD HOST2MQTT__DEVICE_NAME=bp-dead "${OFF[@]}")
start_agent "$MAIN" "${MAIN_ENV[@]}"
start_agent "$HUNG" "${HUNG_ENV[@]}"
start_agent "$DEAD" "${DEAD_ENV[@]}"
log "agents: $MAIN (pid ${AGENT_PID[$MAIN]}), $HUNG (pid ${AGENT_PID[$HUNG]}), $DEAD (pid ${AGENT_PID[$DEAD]}); interval ${INTERVAL_S}s, broker 127.0.0.1:$MQTT_PORT"

echo "== devices"
for n in $MAIN $HUNG $DEAD; do
  id=$("${B[@]}" device "$n" --timeout 20 2>&1)
  check "device host2mqtt_$n in HA: $id" test ${#id} = 32 || fatal "agent $n" "$(tail -n 20 "$WORK/$n.log")"
  printf -v "DEV_$n" '%s' "$id"
done
state_of() { # ENTITY: its state, or nothing
  "$HA_HARNESS" probe get "/api/states/$1" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])' 2>/dev/null
}
has_value() { case $(state_of "$1") in "" | unknown | unavailable) return 1 ;; esac; }
wait_state() { # ENTITY [SECONDS]: has a value (not unknown/unavailable) within SECONDS (20)
  wait_until "${2:-20}" has_value "$1" || { echo "$1 has no value within ${2:-20}s: $(state_of "$1")"; return 1; }
  echo "$1 = $(state_of "$1")"
}
check "memory used of $MAIN has a value" wait_state "sensor.${MAIN}_memory_used"
MEM=$(state_of "sensor.${MAIN}_memory_used")
if ((UPDATES)); then
  check "container updates of $MAIN, from the captured podman output: on" wait_state "binary_sensor.${MAIN}_updates_available"
fi
if ((SYSTEMD)); then
  check "failed units of $MAIN, from the systemd in $CTR" wait_state "sensor.${MAIN}_systemd_system_failed_units" 40
fi

# --- 4. one automation per blueprint ----------------------------------------------------
echo "== automations from the blueprints (through POST /api/config/automation/config/<id>)"
# Memory: the threshold sits 12.5 points (rounded down) above what is used now; the test then
# takes 6 GiB (a quarter of this 24 GiB machine), which crosses it for real.
# CPU and memory pressure and CPU usage are set to 100 (off): other work on
# a shared 2-core machine moves them too much for a quiet baseline.
MEM_LIMIT=$(awk -v m="$MEM" 'BEGIN { printf "%d", m + 12.5 }')
# Disk: bp-main watches / and the tmpfs. The threshold sits halfway between
# what / uses now and 100 % (at least 50 %), so / stays quiet on any
# machine; the tmpfs is then filled halfway between the threshold and
# 100 %, which crosses it for real.
ROOT_USED=$(df --output=pcent / | tail -n 1 | tr -dc 0-9)
DISK_T=$(((${ROOT_USED:-0} + 100) / 2))
((DISK_T >= 50)) || DISK_T=50
TMPFS_MIB=16
FILL_MIB=$(((TMPFS_MIB * (DISK_T + 100) / 2 + 99) / 100))
log "/ is ${ROOT_USED} % used: disk threshold ${DISK_T} %, the ${TMPFS_MIB} MiB tmpfs filled with ${FILL_MIB} MiB"
# The to-do: the maintenance window is today, 100 s from now, in HA's time zone.
HA_TZ=$("$HA_HARNESS" probe get /api/config | python3 -c 'import json,sys; print(json.load(sys.stdin)["time_zone"])')
AT_EPOCH=$(($(date +%s) + 100))
AT=$(TZ=$HA_TZ date -d "@$AT_EPOCH" +%H:%M:%S)
DAY=$(LC_ALL=C TZ=$HA_TZ date -d "@$AT_EPOCH" +%a | tr 'A-Z' 'a-z')
DM=$DEV_bpmain DH=$DEV_bphung DD=$DEV_bpdead
check "host offline (hosts bp-hung, bp-dead; interval ${INTERVAL_S} s)" "${B[@]}" create bp_offline host2mqtt/host_offline.yaml \
  "{\"hosts\":[\"$DH\",\"$DD\"],\"interval\":$INTERVAL_S}"
check "disk filling (bp-main; above $DISK_T % for 1 min; recovery message on)" "${B[@]}" create bp_disk host2mqtt/disk_filling.yaml \
  "{\"hosts\":[\"$DM\"],\"threshold\":$DISK_T,\"minutes\":1,\"notify_recovery\":true}"
check "CPU/memory pressure (bp-main; memory used above $MEM_LIMIT % for 1 min; the rest off)" "${B[@]}" create bp_pressure \
  host2mqtt/cpu_memory_pressure.yaml \
  "{\"hosts\":[\"$DM\"],\"cpu_pressure\":100,\"memory_pressure\":100,\"cpu_usage\":100,\"memory_used\":$MEM_LIMIT,\"minutes\":1}"
check "failed systemd units (bp-main; at once)" "${B[@]}" create bp_systemd host2mqtt/systemd_failed_units.yaml \
  "{\"hosts\":[\"$DM\"],\"minutes\":0}"
check "container updates to-do ($TODO; $DAY at $AT $HA_TZ)" "${B[@]}" create bp_updates host2mqtt/container_updates.yaml \
  "{\"hosts\":[\"$DM\"],\"todo_list\":\"$TODO\",\"weekdays\":[\"$DAY\"],\"at_time\":\"$AT\"}"

# A disk that comes along while the automations run: the disk blueprint
# must pick it up by itself.
if mount -t tmpfs -o size=${TMPFS_MIB}m,mode=0755 h2m-blueprints "$MNT_DIR" 2> "$WORK/mount.err"; then
  MNT=$MNT_DIR
  check "a tmpfs mounted at $MNT now appears in HA (its disk used sensor has a value)" \
    "${B[@]}" entity "$DM" --name "Disk $MNT used" --timeout 20
else
  check "mount a tmpfs at $MNT_DIR" false
fi

echo "== nothing is wrong yet: nothing fires"
sleep 4
IDS=(host2mqtt_bp_offline host2mqtt_bp_disk host2mqtt_bp_pressure host2mqtt_bp_systemd)
check "no notification, no automation ran (last_triggered empty)" "${B[@]}" quiet "$NOTES" "${IDS[@]}" --after 0 \
  --automation bp_offline --automation bp_disk --automation bp_pressure --automation bp_systemd --automation bp_updates
check "no to-do item before the maintenance window" "${B[@]}" todo-count "$TODO" --count 0

# --- 5. cause every condition at once ------------------------------------------------------
echo "== cause: disk, memory, a hung agent, a dead agent, a failed unit"
T0=$(now)
[ -n "$MNT" ] && dd if=/dev/zero of="$MNT/fill" bs=1M count="$FILL_MIB" status=none
python3 -c 'import time; b = b"\x01" * (6 << 30); time.sleep(900)' &
HOG=$!
track "$HOG"
kill -STOP "${AGENT_PID[$HUNG]}"
{ kill -KILL "${AGENT_PID[$DEAD]}" && wait "${AGENT_PID[$DEAD]}"; } 2> /dev/null
AGENT_PID[$DEAD]=""
((SYSTEMD)) && podman exec "$CTR" systemd-run --unit=h2m-bp-fails.service /bin/false > /dev/null 2>&1
log "tmpfs filled to $FILL_MIB of $TMPFS_MIB MiB, 6 GiB taken (pid $HOG), $HUNG stopped (SIGSTOP), $DEAD killed (SIGKILL)"

if ((SYSTEMD)); then
  check "failed unit: notification names h2m-bp-fails.service (at once)" "${B[@]}" expect "$NOTES" host2mqtt_bp_systemd \
    --after "$T0" --timeout 30 --contains bp-main --contains h2m-bp-fails.service
else
  skip "failed systemd units blueprint against the agent" "$SYSTEMD_WHY"
fi
check "memory: notification names bp-main and memory used (1 min after)" "${B[@]}" expect "$NOTES" host2mqtt_bp_pressure \
  --after "$T0" --timeout 100 --contains bp-main --contains "memory used"
if [ -n "$MNT" ]; then
  check "disk: notification names the new tmpfs (picked up by itself), 1 min after" "${B[@]}" expect "$NOTES" host2mqtt_bp_disk \
    --after "$T0" --timeout 170 --contains bp-main --contains "$MNT" --lacks "bp-main: / is"
fi
check "offline: one notification names both quiet hosts (the hung one: no heartbeat; the dead one: offline)" \
  "${B[@]}" expect "$NOTES" host2mqtt_bp_offline --after "$T0" --timeout 150 \
  --contains "bp-hung: no heartbeat" --contains "bp-dead: offline"
if ((UPDATES)); then
  check "container updates: to-do item at $AT names autoapp and its image" "${B[@]}" todo-wait "$TODO" \
    --contains "Update containers on bp-main" --description autoapp --description "127.0.0.1:5000/app:latest" \
    --timeout $((AT_EPOCH - $(date +%s) + 40))
  "${B[@]}" trigger automation.bp_updates > /dev/null
  sleep 2
  # Only the containers' item: the OS's own item (this host may have
  # pending packages) comes and goes with the OS update check.
  check "run again while the item is open: still one item (updated, not added twice)" "${B[@]}" todo-count "$TODO" --count 1 \
    --summary "Update containers on"
else
  skip "container updates blueprint against the agent" "this binary has no containers.updates file source"
fi
if [ -n "$MNT" ]; then
  # A new automation made while the disk is already full reports it at once
  # (a template trigger does not fire when it is already true at setup).
  T=$(now)
  "${B[@]}" create bp_disk_late host2mqtt/disk_filling.yaml "{\"hosts\":[\"$DM\"],\"threshold\":$DISK_T,\"minutes\":1}" > /dev/null
  check "a disk automation made while the disk is full reports it at once" "${B[@]}" expect "$NOTES" host2mqtt_bp_disk_late \
    --after "$T" --timeout 15 --contains "$MNT" --contains "when this automation was set up"
fi

# --- 6. recovery ----------------------------------------------------------------------------
echo "== recovery"
T1=$(now)
kill -CONT "${AGENT_PID[$HUNG]}"
check "bp-hung resumed: recovery message, bp-dead still not reporting" "${B[@]}" expect "$NOTES" host2mqtt_bp_offline \
  --after "$T1" --timeout 20 --contains "bp-hung is reporting again" --contains "Still not reporting: bp-dead"
start_agent "$DEAD" "${DEAD_ENV[@]}"
check "bp-dead restarted: recovery message" "${B[@]}" expect "$NOTES" host2mqtt_bp_offline \
  --after "$T1" --timeout 20 --contains "bp-dead is reporting again" --lacks "Still not reporting"
if ((SYSTEMD)); then
  podman exec "$CTR" systemctl reset-failed h2m-bp-fails.service > /dev/null 2>&1
  check "failed unit reset: recovery message" "${B[@]}" expect "$NOTES" host2mqtt_bp_systemd \
    --after "$T1" --timeout 20 --contains "No failed systemd units"
fi
stop_pid "$HOG"
HOG=""
[ -n "$MNT" ] && rm -f "$MNT/fill"
T2=$(now)
if [ -n "$MNT" ]; then
  check "disk emptied: recovery message after 1 min" "${B[@]}" expect "$NOTES" host2mqtt_bp_disk \
    --after "$T2" --timeout 100 --contains "No disk above $DISK_T %"
fi
check "memory freed: the notification is dismissed after 1 min (recovery message off)" \
  "${B[@]}" dismissed "$NOTES" host2mqtt_bp_pressure --after "$T2" --timeout 100

echo "== Home Assistant's log"
check "no warning/error from automations, blueprints, templates, to-do or MQTT, none about our devices" \
  "${B[@]}" log "$HA_LOG" --offset "$HA_LOG_OFFSET" --node "$MAIN" --node "$HUNG" --node "$DEAD"

if ((FAIL)); then
  echo "notifications seen:"
  indent < "$NOTES"
  for n in $MAIN $HUNG $DEAD; do
    echo "agent $n log (last 10 lines):"
    tail -n 10 "$WORK/$n.log" | indent
  done
fi
