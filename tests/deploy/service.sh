#!/usr/bin/env bash
# units/host2mqtt.service under a REAL systemd (Debian 12's 252), booted in
# a Podman container (never on this machine),
# installed the way the README says, against a Mosquitto with the README's
# ACL inside that container:
# - `systemctl start` returns once the agent sent READY=1 (Type=notify);
# - it runs as its system user, logs in with the LoadCredential password (no
#   password in its config) and publishes;
# - the sandbox does not blind it: the same entities as `check --json` run
#   unsandboxed as root, and no "Operation not permitted" in its journal
#   (SystemCallFilter with EPERM), journal lines with priorities;
# - in that sandbox, as that user, the system bus answers (the systemd
#   collector's source; a DynamicUser it would not);
# - watchdog: with WatchdogSec=2s it keeps running (pets), and a SIGSTOPped
#   agent is killed by the watchdog and restarted;
# - a config error (exit 78) is not restarted;
# - `systemctl stop` publishes offline.
#
#   tests/deploy/service.sh       (as root; the first run builds the image: ~2 min)
# Env: HOST2MQTT_STATIC_BIN  the binary to install (default: packaging/build.sh bin's)
set -uo pipefail
source "$(dirname "$0")/lib.sh"

deploy_work h2m-service "podman, a systemd container"
need debootstrap debootstrap
need mosquitto_passwd mosquitto

static_binary

log "the systemd image (tests/deploy/sysd-image.sh; built once, about 2 minutes)"
IMAGE=$("$DEPLOY_DIR/sysd-image.sh" 2>"$WORK/image.err") || skip_all "cannot build the systemd image: $(tail -3 "$WORK/image.err")"

NODE=h2m-deploy-sysd
SHARE=$WORK/share
mkdir -p "$SHARE"
cp "$BIN" "$SHARE/host2mqtt"
cp "$PROJECT/units/host2mqtt.service" "$SHARE/"
cp "$DEPLOY_DIR/mosquitto.acl" "$SHARE/acl"
PASSWORD="pw-$RANDOM$RANDOM"
: >"$SHARE/passwd"
mosquitto_passwd -b "$SHARE/passwd" homeassistant ha-secret
mosquitto_passwd -b "$SHARE/passwd" "$NODE" "$PASSWORD"
printf '%s\n' "$PASSWORD" >"$SHARE/mqtt-password"
cat >"$SHARE/mosquitto.conf" <<EOF
per_listener_settings false
persistence false
log_dest stderr
log_type all
listener 1883 127.0.0.1
allow_anonymous false
password_file /srv/h2m/passwd
acl_file /srv/h2m/acl
EOF
# The README's config: the broker, the host's user, no password (it is the credential).
cat >"$SHARE/host2mqtt.toml" <<EOF
interval = "2s"
[mqtt]
host = "127.0.0.1"
username = "$NODE"
reconnect_max = "2s"
EOF
chmod -R a+rX "$SHARE"

NAME=h2m-deploy-sysd-$$
# CAP_SYS_ADMIN: systemd sets up the unit's sandbox (mount namespaces,
# LoadCredential's ramfs); no network: the broker is inside.
if ! out=$(podman run -d --name "$NAME" --hostname "$NODE" --systemd=always --network=none \
  --cap-add SYS_ADMIN -v "$SHARE:/srv/h2m:ro" "$IMAGE" /sbin/init 2>&1); then
  fail "boot the systemd container" "$out"
  exit 1
fi
on_exit "podman rm -f -t 0 $NAME"
inside() { podman exec "$NAME" "$@"; }
for _ in $(seq 50); do # until systemd's bus answers
  state=$(inside timeout 60 systemctl is-system-running --wait 2>&1) && break
  [[ $state == degraded ]] && break
  sleep 0.2
done
check "systemd booted in the container ($state)" bash -c "[[ '$state' == running || '$state' == degraded ]]"
log "systemd $(inside systemctl --version | head -1 | cut -d' ' -f2)"

show() { inside systemctl show -P "$1" host2mqtt; }

# On a host, systemd makes / a shared mount at boot; in a container it
# leaves that to the runtime, and podman's rootfs is private. LoadCredential
# (252) needs it shared: it moves the credentials' ramfs into place from a
# helper's mount namespace. Do what the host's systemd does.
inside mount --make-rshared / || fail "mount --make-rshared / in the container"
# The README's steps.
inside sh -ec '
  useradd --system --no-create-home --home-dir / --shell /usr/sbin/nologin host2mqtt
  install -m 755 /srv/h2m/host2mqtt /usr/local/bin/host2mqtt
  install -D -m 644 /srv/h2m/host2mqtt.toml /etc/host2mqtt/host2mqtt.toml
  install -m 600 /srv/h2m/mqtt-password /etc/host2mqtt/mqtt-password
  install -m 644 /srv/h2m/host2mqtt.service /etc/systemd/system/host2mqtt.service
  systemd-run --quiet --unit=h2m-broker /usr/sbin/mosquitto -c /srv/h2m/mosquitto.conf
  systemctl daemon-reload
' || fail "install the unit as the README says"
check "systemd-analyze verify by the systemd that runs it" bash -c "[ -z \"\$(podman exec $NAME systemd-analyze verify /etc/systemd/system/host2mqtt.service 2>&1)\" ]"
wait_until 10 inside bash -c 'exec 3<>/dev/tcp/127.0.0.1/1883' 2>/dev/null || fail "the broker listens in the container"
# HA's view, in the background: state, availability, discovery of this node.
inside sh -c "rm -f /run/sub.out; setsid mosquitto_sub -h 127.0.0.1 -u homeassistant -P ha-secret -q 1 -F '%t|%p' -t 'host2mqtt/$NODE/#' -t 'homeassistant/device/$NODE/config' >/run/sub.out 2>&1 &"
seen() { # seen REGEX SECONDS
  wait_until "$2" inside grep -qE "$1" /run/sub.out || {
    echo "nothing matching $1; the subscriber saw:"
    inside cut -c1-150 /run/sub.out | tail -5
    return 1
  }
}

T=$EPOCHREALTIME
check "systemctl start host2mqtt (returns after READY=1)" inside timeout 30 systemctl start host2mqtt
log "started in $(elapsed "$T")s: $(inside systemctl show -p Type -p ActiveState -p SubState -p WatchdogUSec -p NRestarts host2mqtt | tr '\n' ' ')"
check "active (running), Type=notify" bash -c "[ '$(show ActiveState)/$(show SubState)/$(show Type)' = active/running/notify ]"
PID=$(show MainPID)
UID_=$(inside awk '/^Uid:/ { print $2 }' "/proc/$PID/status")
check "runs as the host2mqtt user (uid $UID_), not root" test "$UID_" = "$(inside id -u host2mqtt)"
check "no capabilities" bash -c "[ \"\$(podman exec $NAME awk '/^CapEff:/ { print \$2 }' /proc/$PID/status)\" = 0000000000000000 ]"
check "no password in its config: it logged in with the LoadCredential one; the ACL denied nothing" \
  bash -c "$(declare -f seen wait_until inside); NAME=$NAME; seen '^host2mqtt/$NODE/state\|\{' 10 && ! podman exec $NAME journalctl -u h2m-broker | grep -q 'Denied'"
check "discovery published" seen "^homeassistant/device/$NODE/config\|\{" 5

# The sandbox must not blind the collectors: compare with an unsandboxed run.
inside /usr/local/bin/host2mqtt --config /etc/host2mqtt/host2mqtt.toml check --json >"$WORK/plain.json" 2>/dev/null
inside grep "^homeassistant/device/$NODE/config|" /run/sub.out | tail -1 | cut -d'|' -f2- >"$WORK/sandboxed.json"
cmp_out=$(python3 - "$WORK/plain.json" "$WORK/sandboxed.json" "$NODE" <<'EOF'
import json, sys
# The host collectors' entities (cpu, load, memory, pressure, disk, diskio,
# network, system); others (containers, systemd units) depend on sockets
# the two runs see differently.
HOST_PREFIXES = ("cpu_", "load_", "memory_", "swap_", "pressure_", "disk_", "diskio_", "net_")
HOST_KEYS = {"boot_time", "processes", "os", "kernel", "reboot_required"}
def host_only(keys): return {k for k in keys if k.startswith(HOST_PREFIXES) or k in HOST_KEYS}
plain = {m["topic"]: m["payload"] for m in json.load(open(sys.argv[1]))}[f"homeassistant/device/{sys.argv[3]}/config"]
boxed = json.load(open(sys.argv[2]))
a, b = host_only(plain["cmps"]), host_only(boxed["cmps"])
print(f"  {len(b)} host entities; disks {sorted(k for k in b if k.startswith('disk_') and k.endswith('_used'))}")
if a != b:
    print(f"  only unsandboxed: {sorted(a - b)}; only sandboxed: {sorted(b - a)}")
    sys.exit(1)
EOF
)
rc=$?
if ((rc == 0)); then pass "sandboxed, it sees what an unsandboxed root run sees"; else fail "sandboxed, it sees what an unsandboxed root run sees" "$cmp_out"; fi
printf '%s\n' "$cmp_out" | head -1 | indent
JOURNAL=$(inside journalctl -u host2mqtt -o cat --no-pager)
check "its journal has no 'Operation not permitted' (seccomp, sandbox)" \
  bash -c "! grep -iE 'not permitted|os error 1\\)|permission denied|bad system call' <<<\"\$1\"" _ "$JOURNAL"
grep -iE 'warn|error' <<<"$JOURNAL" | head -5 | indent
check "journal lines carry priorities, no timestamps of their own" \
  bash -c "podman exec $NAME journalctl -u host2mqtt -o json --no-pager | grep -q '\"PRIORITY\":\"6\"' && ! grep -qE '^[0-9]{4}-[0-9]{2}-[0-9]{2}T' <<<\"\$1\"" _ "$JOURNAL"

# The systemd collector asks PID 1 over the system bus; dbus-daemon turns
# away a uid it cannot resolve, which a DynamicUser is to it. The unit's own
# sandbox and user, running busctl instead of the agent:
inside sh -ec 'sed -e "s|^ExecStart=.*|ExecStart=/usr/bin/busctl --system get-property org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager Version|" \
  -e "s/^Type=notify/Type=oneshot/" -e "/^WatchdogSec=/d" -e "/^Restart/d" /etc/systemd/system/host2mqtt.service >/run/systemd/system/h2m-bus-probe.service
  systemctl daemon-reload'
check "in the unit's sandbox, as its user, the system bus answers (systemd's version)" \
  bash -c "podman exec $NAME systemctl start h2m-bus-probe && podman exec $NAME journalctl -u h2m-bus-probe --no-pager -o cat | grep -q '^s \"'"
check "the agent's journal has no 'cannot connect to D-Bus'" bash -c "! grep -iE 'cannot connect to D-Bus|systemd unreachable' <<<\"\$1\"" _ "$JOURNAL"

log "watchdog: WatchdogSec=2s (a drop-in), then SIGSTOP"
inside sh -c 'mkdir -p /run/systemd/system/host2mqtt.service.d && printf "[Service]\nWatchdogSec=2s\nTimeoutAbortSec=2s\nRestartSec=1s\n" >/run/systemd/system/host2mqtt.service.d/test.conf && systemctl daemon-reload && systemctl restart host2mqtt'
sleep 6
check "petted: still active after 3 x WatchdogSec, no restart" bash -c "[ '$(show ActiveState)' = active ] && [ '$(show NRestarts)' = 0 ]"
PID=$(show MainPID)
inside sh -c "kill -STOP $PID"
check "a SIGSTOPped agent: watchdog timeout" wait_until 12 bash -c "podman exec $NAME journalctl -u host2mqtt --no-pager | grep -q 'Watchdog timeout'"
check "... and it is restarted" wait_until 12 bash -c "[ \"\$(podman exec $NAME systemctl show -P NRestarts host2mqtt)\" -ge 1 ] && [ \"\$(podman exec $NAME systemctl show -P ActiveState host2mqtt)\" = active ]"

log "a config error: exit 78, no restart"
inside sh -c 'printf "[Service]\nEnvironment=HOST2MQTT__MQTT__HOTS=x\n" >/run/systemd/system/host2mqtt.service.d/typo.conf && systemctl daemon-reload'
inside systemctl restart host2mqtt >/dev/null 2>&1
sleep 4 # RestartSec is 1s in the drop-in: a restart would have happened
check "exit status 78, unit failed" bash -c "[ '$(show ExecMainStatus)' = 78 ] && [ '$(show ActiveState)' = failed ]"
# (a manual restart resets NRestarts to 0; one automatic restart would make it 1)
check "not restarted (RestartPreventExitStatus=78): NRestarts $(show NRestarts), one exit in the journal" \
  bash -c "[ '$(show NRestarts)' = 0 ] && [ \"\$(podman exec $NAME journalctl -u host2mqtt --no-pager | grep -c 'status=78')\" = 1 ]"
check "the journal names the key" bash -c "podman exec $NAME journalctl -u host2mqtt --no-pager | grep -q 'mqtt.hots'"

log "systemctl stop: offline"
inside sh -c 'rm -f /run/systemd/system/host2mqtt.service.d/typo.conf && systemctl daemon-reload && systemctl reset-failed host2mqtt; systemctl start host2mqtt'
seen "^host2mqtt/$NODE/availability\|online" 10 >/dev/null
inside systemctl stop host2mqtt
check "systemctl stop: the agent publishes offline and exits cleanly" \
  bash -c "$(declare -f seen wait_until inside); NAME=$NAME; seen '^host2mqtt/$NODE/availability\|offline' 5 && [ \"\$(podman exec $NAME systemctl show -P Result host2mqtt)\" = success ]"

exit 0
