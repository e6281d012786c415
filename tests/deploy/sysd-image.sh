#!/bin/sh
# Builds, once, the image tests/deploy/service.sh boots: Debian bookworm with
# a real systemd (252), D-Bus and libnss-systemd as in a standard install,
# and Mosquitto, so units/host2mqtt.service runs under
# the systemd our users have, without ever starting systemd on this machine
# (systemd runs only inside a container).
#
#   tests/deploy/sysd-image.sh       # builds unless it exists; prints the image name
#
# Needs root, debootstrap and podman; CONTAINERS_CONF as REAL-COMPONENTS.md
# says. About 2 minutes the first time. Idempotent, and safe in parallel (flock).
set -eu
# Bump the tag whenever what goes into the image changes.
IMAGE=${DEPLOY_SYSD_IMAGE:-localhost/h2m-deploy-sysd:v2}

exec 9>/tmp/h2m-deploy-sysd.lock
flock 9
if podman image exists "$IMAGE"; then
  echo "$IMAGE"
  exit 0
fi

ROOT=$(mktemp -d /tmp/h2m-deploy-sysd.XXXXXX)
trap 'rm -rf "$ROOT" "$ROOT.log"' EXIT
debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,libnss-systemd,mosquitto,mosquitto-clients \
  bookworm "$ROOT" http://deb.debian.org/debian >"$ROOT.log" 2>&1 || {
  tail -n 30 "$ROOT.log" >&2
  exit 1
}
# A quiet, quick boot: nothing that wants hardware, a network or a timer.
for unit in systemd-networkd.service systemd-resolved.service systemd-timesyncd.service \
  apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer mosquitto.service; do
  ln -sf /dev/null "$ROOT/etc/systemd/system/$unit"
done
echo h2m-deploy-sysd >"$ROOT/etc/hostname"
tar -C "$ROOT" -c . | podman import --change 'CMD ["/sbin/init"]' - "$IMAGE" >"$ROOT.log" 2>&1 || {
  cat "$ROOT.log" >&2
  exit 1
}
echo "$IMAGE"
