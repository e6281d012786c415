#!/usr/bin/env bash
# The .deb and the sysext, installed in a REAL systemd 252 (Debian 12,
# tests/env/systemd-image.sh, booted in a container: never on this machine)
# against a Mosquitto on this machine (the container shares its network):
# - .deb: dpkg -i makes the system user and enables the unit, waiting for a
#   broker; with the config and password written, `systemctl restart`
#   returns at READY=1 (Type=notify) and the device appears on the broker;
#   dpkg -r stops it and keeps the config; dpkg -i again starts it with the
#   same config; dpkg -P removes config and user.
# - sysext: the .raw in /var/lib/extensions, `systemd-sysext merge` (the
#   extension-release's ID=_any and architecture accepted), the unit from
#   /usr/lib/systemd/system makes its user (sysusers) and reaches READY, the
#   device appears; `systemd-sysext unmerge` takes it away again.
# (systemd-dissect is not in Debian 12's systemd; the merge is the check.)
#
#   tests/deploy/native.sh      (as root; needs dist/ from packaging/build.sh deb sysext)
set -uo pipefail
source "$(dirname "$0")/lib.sh"

deploy_work h2m-native "podman, a systemd container"
need mosquitto mosquitto
need mosquitto_sub mosquitto-clients
need debootstrap debootstrap
DEB=$PROJECT/dist/host2mqtt_${VERSION}_amd64.deb
RAW=$PROJECT/dist/host2mqtt_${VERSION}_x86-64.raw
[ -f "$DEB" ] && [ -f "$RAW" ] || build_dist deb sysext
SYSIMG=$("$PROJECT/tests/env/systemd-image.sh" 2>"$WORK/sysimg.err") || skip_all "no systemd image: $(tail -3 "$WORK/sysimg.err")"

NODE=h2m-native-sysd
PORT=$(free_port)
PASSWORD="pw-$RANDOM$RANDOM"
mkdir -p "$WORK/share"
BROKER_USERS="$NODE:$PASSWORD homeassistant:ha-secret" start_broker "$WORK/broker" "$PORT" || fatal "mosquitto starts"
mosquitto_sub -h 127.0.0.1 -p "$PORT" -u homeassistant -P ha-secret -F '%t|%p' \
  -t "homeassistant/device/$NODE/config" -t "host2mqtt/$NODE/#" >"$WORK/capture" 2>&1 &
on_exit "stop_pid $!"

cp "$DEB" "$RAW" "$WORK/share/"
printf '%s\n' "$PASSWORD" >"$WORK/share/mqtt-password"
chmod -R a+rX "$WORK/share"

# Privileged: systemd-sysext needs a loop device and overlayfs; the host's
# network: the broker above.
SYSD=h2m-native-sysd-$$
podman run -d --name "$SYSD" --hostname "$NODE" --systemd=always --network=host --privileged \
  -v "$WORK/share:/srv/h2m:ro" "$SYSIMG" /sbin/init >/dev/null || { fail "boot the systemd container"; exit 1; }
on_exit "podman rm -f -t 0 $SYSD"
inside() { podman exec "$SYSD" "$@"; }
for _ in $(seq 100); do inside systemctl is-system-running 2>/dev/null | grep -qE 'running|degraded' && break; sleep 0.2; done
inside mount --make-rshared / # as a host's systemd does (LoadCredential needs it)
log "systemd $(inside systemctl --version | head -1 | cut -d' ' -f2) in $SYSD"

published() { # published SINCE_LINE SECONDS: discovery and a state after line SINCE_LINE of the capture
  local i
  for i in $(seq 1 $(($2 * 5))); do
    tail -n +"$(($1 + 1))" "$WORK/capture" | grep -q "^homeassistant/device/$NODE/config|{" &&
      tail -n +"$(($1 + 1))" "$WORK/capture" | grep -q "^host2mqtt/$NODE/state|{" && return 0
    sleep 0.2
  done
  echo "capture:"; tail -5 "$WORK/capture" | cut -c1-200
  return 1
}
lines() { wc -l <"$WORK/capture"; }

# --- .deb ---------------------------------------------------------------------------
out=$(inside dpkg -i "/srv/h2m/$(basename "$DEB")" 2>&1)
check "dpkg -i $(basename "$DEB")" test $? = 0
printf '%s\n' "$out" | grep -i host2mqtt | indent
check ".deb: the system user exists" inside getent passwd host2mqtt
check ".deb: the unit is enabled, not started before a broker is set" \
  bash -c "[ \"\$(podman exec $SYSD systemctl is-enabled host2mqtt)\" = enabled ] && ! podman exec $SYSD systemctl -q is-active host2mqtt"
# What the user does (the README's .deb install): the broker in the config, the password file.
inside sh -ec "
  sed -i -e 's/^host = \"localhost\"/host = \"127.0.0.1\"/' -e 's/^port = 1883/port = $PORT/' \
    -e 's/^username = \"\"/username = \"$NODE\"/' -e 's/^interval = \"30s\"/interval = \"2s\"/' /etc/host2mqtt/host2mqtt.toml
  install -m 600 /srv/h2m/mqtt-password /etc/host2mqtt/mqtt-password"
SUM=$(inside md5sum /etc/host2mqtt/host2mqtt.toml /etc/host2mqtt/mqtt-password)
n=$(lines)
check ".deb: systemctl restart returns at READY (active)" bash -c "podman exec $SYSD systemctl restart host2mqtt && podman exec $SYSD systemctl -q is-active host2mqtt"
check ".deb: runs as host2mqtt" bash -c "podman exec $SYSD sh -c 'grep -q \"^Uid:[[:space:]]*\$(id -u host2mqtt)[[:space:]]\" /proc/\$(systemctl show -P MainPID host2mqtt)/status'"
check ".deb: the device appears on the broker" published "$n" 30
check "dpkg -r stops it" bash -c "podman exec $SYSD dpkg -r host2mqtt >/dev/null 2>&1 && ! podman exec $SYSD systemctl -q is-active host2mqtt"
check "dpkg -r keeps the config and the password" test "$(inside md5sum /etc/host2mqtt/host2mqtt.toml /etc/host2mqtt/mqtt-password 2>&1)" = "$SUM"
n=$(lines)
check "dpkg -i again: started with the kept config" bash -c "podman exec $SYSD dpkg -i /srv/h2m/$(basename "$DEB") >/dev/null 2>&1 && podman exec $SYSD systemctl -q is-active host2mqtt"
check "reinstall: the config is unchanged" test "$(inside md5sum /etc/host2mqtt/host2mqtt.toml /etc/host2mqtt/mqtt-password 2>&1)" = "$SUM"
check "reinstall: the device appears on the broker again" published "$n" 30
check "dpkg -P removes config and user" bash -c "podman exec $SYSD dpkg -P host2mqtt >/dev/null 2>&1 &&
  ! podman exec $SYSD test -e /etc/host2mqtt && ! podman exec $SYSD getent passwd host2mqtt"

# --- sysext --------------------------------------------------------------------------------
inside sh -ec "
  mkdir -p /var/lib/extensions /etc/host2mqtt
  cp /srv/h2m/$(basename "$RAW") /var/lib/extensions/host2mqtt.raw
  printf 'interval = \"2s\"\n[mqtt]\nhost = \"127.0.0.1\"\nport = $PORT\nusername = \"$NODE\"\n' >/etc/host2mqtt/host2mqtt.toml
  install -m 600 /srv/h2m/mqtt-password /etc/host2mqtt/mqtt-password"
check "sysext: nothing of host2mqtt in /usr before the merge" bash -c "! podman exec $SYSD test -e /usr/bin/host2mqtt"
out=$(inside systemd-sysext merge 2>&1)
check "systemd-sysext merge accepts it (ID=_any, ARCHITECTURE=x86-64)" bash -c "podman exec $SYSD systemd-sysext status 2>&1 | grep -q host2mqtt" 
printf '%s\n' "$out" | indent
check "sysext: /usr/bin/host2mqtt from the extension runs" bash -c "podman exec $SYSD /usr/bin/host2mqtt --version | grep -q '^host2mqtt '"
n=$(lines)
check "sysext: systemctl start returns at READY (its user made by sysusers)" \
  bash -c "podman exec $SYSD systemctl daemon-reload && podman exec $SYSD systemctl start host2mqtt && podman exec $SYSD systemctl -q is-active host2mqtt &&
    podman exec $SYSD getent passwd host2mqtt >/dev/null"
check "sysext: the device appears on the broker" published "$n" 30
inside systemctl -q is-active host2mqtt || inside journalctl -u host2mqtt -u host2mqtt-sysusers --no-pager | tail -8 | indent
check "sysext: unmerge takes the binary away" bash -c "podman exec $SYSD systemctl stop host2mqtt; podman exec $SYSD systemd-sysext unmerge >/dev/null && ! podman exec $SYSD test -e /usr/bin/host2mqtt"
