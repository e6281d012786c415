#!/usr/bin/env bash
# units/host2mqtt.container AS SHIPPED, end to end, rootless:
# - the real Quadlet generator (Debian forky's podman, in tests/ha/harness's
#   chroot) turns the shipped file into its .service; this script runs that
#   ExecStart's `podman run` (podman 4.3 here) as a rootless test user, with
#   only the image, the broker address and port replaced, systemd's
#   specifiers (%t %h %U %G %N) expanded as systemd would, and what needs
#   systemd as the cgroup manager (--cgroups=split) dropped;
# - around it a host like the users': the test user's Podman API socket
#   (`podman system service`, one running container opted in by label), a
#   pending update in the file host2mqtt-updates.timer writes, a REAL user
#   manager's bus and a REAL system bus from systemd 252 booted in a
#   container (tests/env/systemd-image.sh; a unit failed there, so the
#   system is degraded), and /run/reboot-required. The host's /run is a
#   tmpfs private to this test (unshare --mount) holding the system bus and
#   reboot-required, so the unit's paths under /host/root are the real ones.
# - a subscriber (as Home Assistant) asserts the device has container
#   counts, the per-container update entity, user units, the system state,
#   failed units and reboot-required;
# - again with the Podman socket and the user bus absent: the container still
#   starts, and those two groups are unavailable (avail.* false).
#
#   tests/deploy/quadlet.sh        (as root)
# Env: H2M_IMAGE  an image already in root's storage (default: packaging/build.sh image)
set -uo pipefail
source "$(dirname "$0")/lib.sh"

deploy_work h2m-quadlet "a rootless test user, a systemd container"
need mosquitto mosquitto
need mosquitto_sub mosquitto-clients
need busybox busybox-static
need debootstrap debootstrap
need jq jq

RUSER=${DEPLOY_QUADLET_USER:-h2m-quadlet}
NODE=$(host_node_id)

# --- the generator's unit ---------------------------------------------------------
why=$(ensure_quadlet) || skip_all "no Quadlet generator: $why"
mkdir -p "$WORK/units"
cp "$PROJECT/units/host2mqtt.container" "$WORK/units/"
chmod -R a+rX "$WORK/units"
GEN=$(generated_unit "$(quadlet_dryrun "$WORK/units")" host2mqtt)
mapfile -t ARGS < <(exec_start "$GEN")
check "the Quadlet generator made a podman run ExecStart" test "${ARGS[0]:-}/${ARGS[1]:-}" = /usr/bin/podman/run
printf '%s\n' "$GEN" | grep -E '^(Wants|After|Requires)=' | indent
check "the generated unit waits for the network the user-unit way" grep -q 'podman-user-wait-network-online.service' <<<"$GEN"

# --- the image ------------------------------------------------------------------------
if [ -n "${H2M_IMAGE:-}" ]; then
  IMAGE=$H2M_IMAGE
else
  build_dist image
  IMAGE=localhost/host2mqtt:$VERSION-amd64
fi

# --- the rootless user --------------------------------------------------------------
id "$RUSER" >/dev/null 2>&1 || useradd --create-home --shell /bin/sh "$RUSER" || skip_all "cannot create $RUSER"
grep -q "^$RUSER:" /etc/subuid || usermod --add-subuids 400000-465535 --add-subgids 400000-465535 "$RUSER"
RUID=$(id -u "$RUSER") RGID=$(id -g "$RUSER") RHOME=$(getent passwd "$RUSER" | cut -d: -f6)
# The user's runtime directory, %t: one that outlives this run (rootless
# podman records the first it used in its database and keeps using it).
RT=/tmp/h2m-quadlet-rt-$RUID
mkdir -p "$RT/podman" && chown -R "$RUSER:" "$RT" && chmod 700 "$RT"
AS=(setpriv --reuid="$RUSER" --regid="$RUSER" --init-groups env "XDG_RUNTIME_DIR=$RT" "CONTAINERS_CONF=$CONTAINERS_CONF" "HOME=$RHOME")
as_user() { (cd / && "${AS[@]}" "$@"); }
as_user podman rm -f -t 0 host2mqtt app >/dev/null 2>&1 # a run that was killed
on_exit "stop_pid \$(cat $RT/libpod/tmp/pause.pid 2>/dev/null)"
on_exit "stop_pid \$(cat $WORK/service.pid 2>/dev/null)"

# The image reaches the user the way the README's Install says a registry-less host gets it.
podman save -q -o "$WORK/image.tar" "$IMAGE" && chmod 644 "$WORK/image.tar"
check "podman save | podman load (as the user) carries the image over" as_user podman load -q -i "$WORK/image.tar"
# A busybox image for the user's own container.
mkdir -p "$WORK/bb/bin" && cp /bin/busybox "$WORK/bb/bin/" && tar -C "$WORK/bb" -cf "$WORK/bb.tar" . && chmod 644 "$WORK/bb.tar"
as_user podman import -q --change 'CMD ["/bin/busybox","sleep","3600"]' "$WORK/bb.tar" localhost/h2m-quadlet-bb:latest >/dev/null
PASSWORD="pw-$RANDOM$RANDOM"
printf '%s\n' "$PASSWORD" >"$WORK/pw" && chmod 644 "$WORK/pw"
as_user podman secret rm host2mqtt-mqtt-password >/dev/null 2>&1
as_user podman secret create host2mqtt-mqtt-password "$WORK/pw" >/dev/null
on_exit "cd / && ${AS[*]} podman rm -f -t 0 host2mqtt app; cd / && ${AS[*]} podman secret rm host2mqtt-mqtt-password"

# --- the systemd container: the system bus and a real user manager -----------------------
SYSIMG=$("$PROJECT/tests/env/systemd-image.sh" 2>"$WORK/sysimg.err") || skip_all "no systemd image: $(tail -3 "$WORK/sysimg.err")"
mkdir -p "$WORK/sysbus" "$WORK/userbus"
chown "$RUID:$RGID" "$WORK/userbus"
SYSD=h2m-quadlet-sysd-$$
podman run -d --name "$SYSD" --systemd=always --network=none --cap-add SYS_ADMIN \
  -v "$WORK/sysbus:/run/dbus" -v "$WORK/userbus:/run/h2m-quadlet-bus" "$SYSIMG" /sbin/init >/dev/null ||
  { fail "boot the systemd container"; exit 1; }
on_exit "podman rm -f -t 0 $SYSD"
inside() { podman exec "$SYSD" "$@"; }
for _ in $(seq 100); do inside systemctl is-system-running 2>/dev/null | grep -qE 'running|degraded' && break; sleep 0.2; done
# The test user, same uid, lingering; its user bus also listens where this
# host can reach it (after the image's own drop-in: reset, then both).
inside sh -ec "
  useradd --create-home --uid $RUID --user-group h2mq 2>/dev/null || true
  d=/home/h2mq/.config/systemd/user/dbus.socket.d; mkdir -p \$d
  printf '[Socket]\nListenStream=\nListenStream=%%t/bus\nListenStream=/run/h2m-quadlet-bus/bus\n' >\$d/zz-quadlet.conf
  chown -R h2mq: /home/h2mq
  printf '[Service]\nExecStart=/bin/false\n' >/etc/systemd/system/h2m-quadlet-fails.service
  systemctl daemon-reload; systemctl start h2m-quadlet-fails.service || true
  loginctl enable-linger h2mq"
for _ in $(seq 150); do [ -S "$WORK/userbus/bus" ] && [ -S "$WORK/sysbus/system_bus_socket" ] && break; sleep 0.2; done
check "a real user manager's bus for uid $RUID" test -S "$WORK/userbus/bus"
check "the systemd container's system bus" test -S "$WORK/sysbus/system_bus_socket"
check "the system manager is degraded (a failed unit)" bash -c "podman exec $SYSD systemctl is-system-running | grep -qx degraded"

# --- the broker ---------------------------------------------------------------------------
PORT=$(free_port)
BROKER_USERS="myhost:$PASSWORD homeassistant:ha-secret" start_broker "$WORK/broker" "$PORT" || fatal "mosquitto starts"

# The unit's podman run, for this machine: specifiers expanded, broker replaced.
adapt() { # adapt NAME -> RUN (array)
  local a
  RUN=()
  for a in "${ARGS[@]:1}"; do
    case $a in
      --cgroups=split) continue ;; # needs systemd as the cgroup manager
    esac
    a=${a//%t/$RT}
    a=${a//%h/$RHOME}
    a=${a//%U/$RUID}
    a=${a//%G/$RGID}
    a=${a//%N/host2mqtt}
    a=${a/#HOST2MQTT__MQTT__HOST=*/HOST2MQTT__MQTT__HOST=127.0.0.1}
    a=${a/#HOST2MQTT__MQTT__PORT=*/HOST2MQTT__MQTT__PORT=$PORT}
    RUN+=("$a")
  done
  RUN[-1]=$IMAGE
}
adapt
printf '%s\n' "podman ${RUN[*]}" | fold -w 110 | indent

# run_host SCRIPT: as root in a private mount namespace whose /run is this
# test's: the system bus, reboot-required, nothing else of the machine's.
cat >"$WORK/host-run.sh" <<HOSTEOF
set -e
mount -t tmpfs -o mode=755 h2m-quadlet-run /run
mkdir -p /run/dbus /run/user
mount --bind "$WORK/sysbus" /run/dbus
printf '*** System restart required ***\n' >/run/reboot-required
printf 'linux-image-6.1.0-99-amd64\n' >/run/reboot-required.pkgs
HOSTEOF

subscribe() { # subscribe FILE
  mosquitto_sub -h 127.0.0.1 -p "$PORT" -u homeassistant -P ha-secret -F '%t|%p' \
    -t "homeassistant/device/$NODE/config" -t "host2mqtt/$NODE/#" >"$1" 2>&1 &
  SUB_PID=$!
  on_exit "stop_pid $SUB_PID"
  sleep 0.3
}
# latest FILE TOPIC: the newest payload on TOPIC.
latest() { grep "^$2|" "$1" | tail -1 | cut -d'|' -f2-; }
# The newest state with the newest info (steady values, attributes) merged in, as HA combines them.
latest_host() {
  local info state
  info=$(latest "$1" "host2mqtt/$NODE/info")
  state=$(latest "$1" "host2mqtt/$NODE/state")
  [ -n "$state" ] || return 0
  jq -c -s 'add' <<<"${info:-{\}} $state" 2>/dev/null || printf '%s\n' "$state"
}
wait_state() { # wait_state FILE JQ SECONDS: until the newest state satisfies JQ
  local i s
  for i in $(seq 1 $(($3 * 5))); do
    s=$(latest_host "$1")
    [ -n "$s" ] && jq -e "$2" >/dev/null 2>&1 <<<"$s" && return 0
    sleep 0.2
  done
  echo "newest state: $(cut -c1-1500 <<<"${s:-none}")"
  return 1
}

# start_agent TAG: the user's podman (API socket and app container unless
# TAG is "absent") and the agent, in the private /run namespace.
start_agent() {
  local tag=$1 updates=$RHOME/.local/state/host2mqtt
  # Rootless podman runs every command in the namespaces of its pause
  # process: a new one, made inside this test's /run namespace.
  stop_pid "$(cat "$WORK/service.pid" 2>/dev/null)" "$(cat "$RT/libpod/tmp/pause.pid" 2>/dev/null)"
  rm -f "$RT/bus" "$RT/podman/podman.sock" "$WORK/service.pid"
  if [ "$tag" = present ]; then
    as_user mkdir -p "$updates"
    cat >"$WORK/auto-update.json" <<'JSON'
[{"Unit":"app.service","Container":"0123456789ab (app)","ContainerName":"app","ContainerID":"0123456789abcdef","Image":"ghcr.io/example/app:latest","Policy":"registry","Updated":"pending"}]
JSON
    install -o "$RUSER" -m 644 "$WORK/auto-update.json" "$updates/auto-update.json"
  fi
  cat "$WORK/host-run.sh" - >"$WORK/run-$tag.sh" <<RUNEOF
if [ "$tag" = present ]; then
  rm -f "$RT/bus"; : >"$RT/bus"; mount --bind "$WORK/userbus/bus" "$RT/bus"
  cd / && ${AS[*]} podman system service --time=0 unix://$RT/podman/podman.sock >$WORK/service.log 2>&1 &
  echo \$! >$WORK/service.pid
  for i in \$(seq 50); do [ -S "$RT/podman/podman.sock" ] && break; sleep 0.1; done
  cd / && ${AS[*]} podman run -d --name app --replace --network none --label host2mqtt.enable=true localhost/h2m-quadlet-bb:latest >/dev/null
fi
cd / && exec ${AS[*]} podman $(printf '%q ' "${RUN[@]}")
RUNEOF
  unshare --mount --propagation slave bash "$WORK/run-$tag.sh" >"$WORK/agent-$tag.out" 2>&1
  local rc=$?
  # Their PIDs, for the cleanup (podman outside this namespace cannot stop them).
  as_user podman inspect -f '{{.State.ConmonPid}} {{.State.Pid}}' host2mqtt app 2>/dev/null >>"$WORK/pids"
  pgrep -u "$RUSER" -f "podman system service --time=0 unix://$RT/podman/podman.sock" >>"$WORK/pids"
  return $rc
}
on_exit "stop_pid \$(cat $WORK/pids 2>/dev/null)"

# --- 1. every source present -----------------------------------------------------------
subscribe "$WORK/cap1"
if ! start_agent present; then fail "the agent's container starts (sources present)" "$(cat "$WORK/agent-present.out")"; fi
check "the container runs (sources present)" bash -c "cd / && ${AS[*]} podman inspect -f '{{.State.Running}}' host2mqtt | grep -qx true"
check "state published with every source answering" wait_state "$WORK/cap1" '.avail.containers and .avail.updates and .avail.systemd_user and .avail.systemd_system and .avail.reboot' 90
log "agent log: $(cd / && "${AS[@]}" podman logs host2mqtt 2>&1 | grep -E 'WARN|ERROR' | tail -8)"
STATE=$(latest_host "$WORK/cap1")
DISC=$(latest "$WORK/cap1" "homeassistant/device/$NODE/config")
printf '%s\n' "$STATE" | jq -c '.avail' | indent
jq -c '{containers_total, containers_running, updates_pending, container_app_update, systemd_user_state,
  systemd_user_failed_units, systemd_system_state, systemd_system_failed_units, reboot_required}' <<<"$STATE" | indent
st() { jq -e "$1" >/dev/null <<<"$STATE"; }
has_cmp() { jq -e --arg k "$1" '.cmps | has($k)' >/dev/null <<<"$DISC"; }
check "containers: counts (running >= 1: app)" st '.containers_running >= 1 and .containers_total >= 1'
check "containers: per-container entities for the opted-in app" has_cmp container_app_state
check "updates: one pending, and app's own update entity" bash -c "$(declare -f st has_cmp); STATE='$STATE' DISC='$DISC'; st '.updates_pending == 1' && has_cmp container_app_update && st '.container_app_update != null'"
check "user units: the user manager's state and failed units (its real bus)" \
  bash -c "$(declare -f st has_cmp); STATE='$STATE' DISC='$DISC'; has_cmp systemd_user_state && st '.systemd_user_state | type == \"string\"' && st '.systemd_user_failed_units != null'"
check "system: state degraded, failed units >= 1 (h2m-quadlet-fails.service)" st '.systemd_system_state == "degraded" and .systemd_system_failed_units >= 1'
check "reboot-required on (/run/reboot-required)" st '.reboot_required == true or .reboot_required == "ON"'
(cd / && "${AS[@]}" podman rm -f -t 0 host2mqtt app >/dev/null 2>&1)
stop_pid "$SUB_PID"

# --- 2. no Podman socket, no user bus -------------------------------------------------------------
subscribe "$WORK/cap2"
if ! start_agent absent; then fail "the agent's container starts (no Podman socket, no user bus)" "$(cat "$WORK/agent-absent.out")"; fi
check "the container runs without the Podman socket and the user bus" \
  bash -c "cd / && ${AS[*]} podman inspect -f '{{.State.Running}}' host2mqtt | grep -qx true"
check "containers and user units unavailable, system and reboot still there" \
  wait_state "$WORK/cap2" '(.avail.containers | not) and (.avail.systemd_user | not) and .avail.systemd_system and .avail.reboot' 90
jq -c '.avail' <<<"$(latest "$WORK/cap2" "host2mqtt/$NODE/state")" | indent
log "agent log: $(cd / && "${AS[@]}" podman logs host2mqtt 2>&1 | grep -E 'WARN|ERROR' | tail -4)"
