#!/usr/bin/env bash
# The unit files, checked by the real tools that read them:
# - every units/*.service and *.timer by `systemd-analyze verify` (this
#   machine's systemd; any message at all counts as a failure), the
#   ExecStart binary being a temporary stand-in at a sed'ed path;
# - host2mqtt.service: the directives the agent relies on, the credential
#   name the config expects, and `systemd-analyze security` exposure;
# - host2mqtt.container by the real Quadlet generator (Debian forky's podman
#   5.x, in the chroot of tests/ha/harness, podman installed there once):
#   no unsupported key or error (and a broken copy proving such errors are
#   caught), and the generated service and `podman run` line carrying what the README
#   promises; the generated .service verified by systemd-analyze too.
#
#   tests/deploy/units.sh
# Env: H2M_HA_DIR (the harness's cache, default /var/cache/host2mqtt/ha)
set -uo pipefail
source "$(dirname "$0")/lib.sh"

command -v systemd-analyze >/dev/null || need systemd-analyze systemd
deploy_work h2m-units
mkdir -p "$WORK/xdg" && chmod 700 "$WORK/xdg"
export XDG_RUNTIME_DIR=$WORK/xdg # for `systemd-analyze verify --user`
UNITS=${DEPLOY_UNITS:-$PROJECT/units} # (another directory: to test this script)

# verify FILE [--user]: systemd-analyze verify, silent or failed.
verify() {
  local out
  out=$(systemd-analyze verify ${2:-} "$1" 2>&1) && [ -z "$out" ] && return 0
  printf '%s\n' "$out"
  return 1
}

# --- systemd units -----------------------------------------------------------
# verify wants every Exec*= program to exist: host2mqtt (not installed
# here) and any other that this machine lacks get a stand-in, by a sed'ed
# path in a temporary copy.
mkdir -p "$WORK/sd" "$WORK/bin"
for f in "$UNITS"/*.service "$UNITS"/*.timer; do
  [ -e "$f" ] || continue
  cp "$f" "$WORK/sd/$(basename "$f")"
  for prog in $(sed -nE 's/^Exec[A-Za-z]*=[-@:+!]*(\/[^ ]+).*/\1/p' "$f" | sort -u); do
    [[ $prog == */host2mqtt || ! -x $prog ]] || continue
    cp /bin/true "$WORK/bin/$(basename "$prog")"
    sed -i "s#=\([-@:+!]*\)$prog\b#=\1$WORK/bin/$(basename "$prog")#" "$WORK/sd/$(basename "$f")"
  done
done
for f in "$WORK"/sd/*; do
  check "systemd-analyze verify units/$(basename "$f")" verify "$f"
done

SVC=$UNITS/host2mqtt.service
directive() { grep -E "^$1=" "$SVC" | tail -1 | cut -d= -f2-; }
check "host2mqtt.service: Type=notify" test "$(directive Type)" = notify
check "host2mqtt.service: WatchdogSec set ($(directive WatchdogSec))" test -n "$(directive WatchdogSec)"
check "host2mqtt.service: Restart=on-failure, not after exit 78" \
  bash -c "[ '$(directive Restart)' = on-failure ] && [ '$(directive RestartPreventExitStatus)' = 78 ]"
CRED=$(sed -n 's/^password_credential *= *"\(.*\)"/\1/p' "$PROJECT/config/host2mqtt.toml")
check "host2mqtt.service: LoadCredential names the credential the config reads ($CRED)" \
  grep -qE "^LoadCredential=$CRED:" "$SVC"
check "host2mqtt.service: runs unprivileged (User=$(directive User), no capabilities)" \
  bash -c "[ -n '$(directive User)' ] && [ '$(directive User)' != root ] && grep -qx 'CapabilityBoundingSet=' '$SVC'"
check "host2mqtt.service: /proc left whole (no ProtectProc/ProcSubset: mounts, process count)" \
  bash -c "! grep -qE '^(ProtectProc|ProcSubset)=' '$SVC'"
EXPOSURE=$(systemd-analyze security --offline=true "$WORK/sd/host2mqtt.service" 2>/dev/null |
  sed -n 's/.*Overall exposure level for host2mqtt.service: \([0-9.]*\).*/\1/p')
check "host2mqtt.service: systemd-analyze security exposure ${EXPOSURE:-?} (<= 2.5)" \
  awk -v e="${EXPOSURE:-99}" 'BEGIN { exit !(e <= 2.5) }'

# --- the Quadlet --------------------------------------------------------------
if ! why=$(ensure_quadlet); then
  skip "the Quadlet checks" "no Quadlet generator: $why"
  exit 0
fi
log "Quadlet generator: $(in_forky -- podman --version 2>/dev/null)"
mkdir -p "$WORK/q"
cp "$UNITS"/*.container "$WORK/q/"
chmod -R a+rX "$WORK/q"
OUT=$(quadlet_dryrun "$WORK/q")
# The generator's own lines (not the unit text, whose comments may say "error").
check "quadlet: no unsupported key, no error or warning" \
  bash -c "! grep -E '^quadlet-generator' <<<\"\$1\" | grep -iE 'unsupported|error|warn'" _ "$OUT"
GEN=$(generated_unit "$OUT" host2mqtt)
check "quadlet: host2mqtt.service generated" test -n "$GEN"
printf '%s\n' "$GEN" >"$WORK/host2mqtt-generated.service"

# A negative control: the same file with a misspelt key must be caught.
sed 's/^ReadOnly=true/ReadOnyl=true/' "$WORK/q/host2mqtt.container" >"$WORK/q/bad.container"
mkdir -p "$WORK/qbad" && mv "$WORK/q/bad.container" "$WORK/qbad/host2mqtt.container" && chmod -R a+rX "$WORK/qbad"
check "quadlet: a misspelt key is reported (so the check above can fail)" \
  grep -qiE 'unsupported key' <<<"$(quadlet_dryrun "$WORK/qbad")"

svc() { awk '/^\[Service\]/ { on = 1; next } /^\[/ { on = 0 } on' <<<"$GEN" | grep -E "^$1=" | tail -1 | cut -d= -f2-; }
mapfile -t WORDS < <(exec_start "$GEN")
LINE=" ${WORDS[*]} "
has() { [[ $LINE == *" $1 "* ]] || { echo "not in ExecStart: $1"; return 1; }; }
check "quadlet: Type=notify, NotifyAccess=all" bash -c "[ '$(svc Type)' = notify ] && [ '$(svc NotifyAccess)' = all ]"
check "quadlet: WatchdogSec=$(svc WatchdogSec), Restart=$(svc Restart), RestartPreventExitStatus=$(svc RestartPreventExitStatus)" \
  bash -c "[ -n '$(svc WatchdogSec)' ] && [ '$(svc Restart)' = on-failure ] && [ '$(svc RestartPreventExitStatus)' = 78 ]"
check "quadlet: the agent notifies itself (--sdnotify=container)" has --sdnotify=container
check "quadlet: WATCHDOG_USEC handed to the container" has --env=WATCHDOG_USEC
check "quadlet: read-only, no capabilities, no new privileges" \
  bash -c "$(declare -f has); LINE='$LINE'; has --read-only && has '--cap-drop all' && has --security-opt=no-new-privileges"
check "quadlet: the host's network and UTS namespaces" \
  bash -c "$(declare -f has); LINE='$LINE'; has '--network host' && has --uts=host"
check "quadlet: no published ports" bash -c "! grep -qE ' (-p|--publish|--publish-all|-P) ' <<<'$LINE'"
check "quadlet: the host's /proc, /sys, / read-only, and host.* pointing at them" \
  bash -c "$(declare -f has); LINE='$LINE'; has '-v /proc:/host/proc:ro' && has '-v /sys:/host/sys:ro' && has '-v /:/host/root:ro,rslave' &&
    has '--env HOST2MQTT__HOST__PROC=/host/proc' && has '--env HOST2MQTT__HOST__SYS=/host/sys' && has '--env HOST2MQTT__HOST__ROOT=/host/root'"
check "quadlet: every source on by default, reached under the host's / (nothing mounted that could be missing)" \
  bash -c "$(declare -f has); LINE='$LINE'; has '--env HOST2MQTT__CONTAINERS__SOCKET=/host/root%t/podman/podman.sock' &&
    has '--env HOST2MQTT__SYSTEMD__USER__ENABLED=true' && has '--env HOST2MQTT__SYSTEMD__USER__ADDRESS=unix:path=/host/root%t/bus' &&
    has '--env HOST2MQTT__SYSTEMD__SYSTEM__ADDRESS=unix:path=/host/root/run/dbus/system_bus_socket' &&
    has '--env HOST2MQTT__CONTAINERS__UPDATES__SOURCE=file' && ! grep -qE ' -v (%t|%h|/run)' <<<\"\$LINE\""
check "quadlet: no commented-out settings left to uncomment" bash -c "! grep -qE '^#(Environment|Volume|PodmanArgs|Secret)=' '$UNITS/host2mqtt.container'"
SECRET=$(printf '%s\n' "${WORDS[@]}" | grep -m1 'type=mount')
TARGET=$(sed -n 's/.*target=\([^,]*\).*/\1/p' <<<"$SECRET")
check "quadlet: the password is a Podman secret ($TARGET) and mqtt.password_file names it" \
  has "--env HOST2MQTT__MQTT__PASSWORD_FILE=$TARGET"
check "quadlet: runs as the user's own uid (keep-id, --user %U:%G: D-Bus accepts the uid it claims), the secret theirs" \
  bash -c "$(declare -f has); LINE='$LINE'; has '--userns keep-id' && has '--user %U:%G' && grep -q 'uid=%U,gid=%G' <<<'$SECRET'"
IMAGE=${WORDS[-1]}
check "quadlet: AutoUpdate=registry on a fully qualified image ($IMAGE)" \
  bash -c "$(declare -f has); LINE='$LINE'; has '--label io.containers.autoupdate=registry' && [[ '$IMAGE' =~ ^[a-z0-9.-]+\\.[a-z]+(:[0-9]+)?/ ]]"

# The generated unit is a systemd user unit: systemd's own verdict on it.
sed -e "s#/usr/bin/podman#$WORK/bin/podman#g" "$WORK/host2mqtt-generated.service" >"$WORK/sd-gen-host2mqtt.service"
cp /bin/true "$WORK/bin/podman"
check "systemd-analyze verify --user on the generated host2mqtt.service" verify "$WORK/sd-gen-host2mqtt.service" --user

exit 0
