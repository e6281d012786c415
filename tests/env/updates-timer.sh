#!/bin/bash
# Runs units/host2mqtt-updates.service and .timer under a real systemd user
# manager, in a container booted from the systemd tests' image
# (tests/env/systemd-image.sh; systemd is never started on this machine),
# with a stand-in `podman` that prints captured `auto-update` output:
#
#   - the service writes podman's JSON to ~/.local/state/host2mqtt/auto-update.json,
#     byte for byte (tests/fixtures/autoupdate/4.3.1-pending.json);
#   - when podman fails, the service fails and the file becomes exactly
#     tests/fixtures/autoupdate/timer-error.json (which the agent reads as
#     "unknown"), with no temporary file left behind;
#   - the timer enables and is scheduled.
#
#   tests/env/updates-timer.sh      # one line per check, then "N passed, M failed, K skipped"
#
# Needs root, podman and debootstrap (the image is built once, ~2 min).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TEST_NAME=updates-timer
# shellcheck source=../lib.sh
source "$HERE/../lib.sh"
ROOT=$PROJECT
export CONTAINERS_CONF=${CONTAINERS_CONF:-$HERE/systemd-containers.conf}
IMAGE=$("$HERE/systemd-image.sh")
NAME=h2m-updates-timer-$$
FIX=$ROOT/tests/fixtures/autoupdate
on_exit "podman rm -f -t 0 '$NAME'"

podman run -d --name "$NAME" --systemd=always --network=none "$IMAGE" /sbin/init >/dev/null
for _ in $(seq 300); do
    st=$(podman exec "$NAME" systemctl is-system-running 2>/dev/null || true)
    [ "$st" = running ] || [ "$st" = degraded ] && break
    sleep 0.2
done
# The lingering user h2m (uid 1000) and its manager.
as_user() { podman exec -u h2m -e XDG_RUNTIME_DIR=/run/user/1000 "$NAME" "$@"; }
for _ in $(seq 100); do
    as_user systemctl --user is-system-running >/dev/null 2>&1 && break
    st=$(as_user systemctl --user is-system-running 2>/dev/null || true)
    [ "$st" = degraded ] && break
    sleep 0.2
done

podman exec "$NAME" mkdir -p /home/h2m/.config/systemd/user /usr/local/share/h2m
podman cp "$ROOT/units/host2mqtt-updates.service" "$NAME:/home/h2m/.config/systemd/user/"
podman cp "$ROOT/units/host2mqtt-updates.timer" "$NAME:/home/h2m/.config/systemd/user/"
podman cp "$FIX/4.3.1-pending.json" "$NAME:/usr/local/share/h2m/pending.json"
podman exec "$NAME" chown -R h2m:h2m /home/h2m/.config
# The stand-in podman: the captured output of a real dry run.
podman exec "$NAME" sh -c 'printf "#!/bin/sh\n[ \"\$*\" = \"auto-update --dry-run --format json\" ] || exit 3\ncat /usr/local/share/h2m/pending.json\n" > /usr/local/bin/podman && chmod 755 /usr/local/bin/podman'
as_user systemctl --user daemon-reload

OUT=/home/h2m/.local/state/host2mqtt/auto-update.json
# From here on a failed check is counted, not the end of the script.
set +e
verify() { # silent, or failed
    local out
    out=$(as_user systemd-analyze --user verify /home/h2m/.config/systemd/user/host2mqtt-updates.service \
        /home/h2m/.config/systemd/user/host2mqtt-updates.timer 2>&1) && [ -z "$out" ] && return 0
    printf '%s\n' "$out"
    return 1
}
start_service() {
    as_user systemctl --user start host2mqtt-updates.service && return 0
    as_user journalctl --user -u host2mqtt-updates.service -n 5 --no-pager
    return 1
}
wrote() { # wrote FIXTURE: the service's file is FIXTURE, byte for byte
    podman exec "$NAME" cat "$OUT" | cmp -s - "$1" && return 0
    echo "the file holds: $(podman exec "$NAME" cat "$OUT" 2>&1 | head -c 300)"
    return 1
}
check "systemd-analyze --user verify: no message" verify

check "the service runs the stand-in podman and succeeds" start_service
check "it wrote podman's JSON byte for byte to ~/.local/state/host2mqtt/auto-update.json" wrote "$FIX/4.3.1-pending.json"

podman exec "$NAME" sh -c 'printf "#!/bin/sh\necho \"Error: dial unix /run/systemd/private\" >&2\nexit 125\n" > /usr/local/bin/podman'
check "podman failing fails the service" bash -c "! podman exec -u h2m -e XDG_RUNTIME_DIR=/run/user/1000 $NAME systemctl --user start host2mqtt-updates.service"
check "the file says so, exactly as tests/fixtures/autoupdate/timer-error.json" wrote "$FIX/timer-error.json"
check "no temporary file left behind" bash -c "! podman exec $NAME test -e $OUT.tmp"

check "the timer enables" as_user systemctl --user enable --now host2mqtt-updates.timer
check "the timer is scheduled" bash -c "podman exec -u h2m -e XDG_RUNTIME_DIR=/run/user/1000 $NAME systemctl --user list-timers --no-pager | grep -q host2mqtt-updates.timer"
