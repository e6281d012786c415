#!/bin/sh
# Builds, once, the image tests/systemd_dbus.rs boots: Debian bookworm with a
# real systemd and D-Bus, so the tests talk to the real org.freedesktop.systemd1
# API without ever starting systemd on this machine (systemd runs only
# inside a container, as PID 1 of its own). Its user `h2m` (uid 1000)
# lingers, so its user manager runs at boot.
#
#   tests/env/systemd-image.sh          # build unless it exists; prints the image name
#
# Idempotent and safe to run from parallel tests (flock). Needs root,
# debootstrap and podman (apt-get install -y debootstrap podman runc uidmap
# slirp4netns fuse-overlayfs). About 2 minutes the first time.
set -eu
# Bump the tag whenever what goes into the image changes.
IMAGE=${H2M_SYSTEMD_IMAGE:-localhost/h2m-debsysd:v2}
HERE=$(cd "$(dirname "$0")" && pwd)
export CONTAINERS_CONF="${CONTAINERS_CONF:-$HERE/systemd-containers.conf}"

exec 9>/tmp/h2m-debsysd.lock
flock 9
if podman image exists "$IMAGE"; then
    echo "$IMAGE"
    exit 0
fi

ROOT=$(mktemp -d /tmp/h2m-debsysd.XXXXXX)
trap 'rm -rf "$ROOT" "$ROOT.log"' EXIT
debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,dbus-user-session \
    bookworm "$ROOT" http://deb.debian.org/debian >"$ROOT.log" 2>&1 || {
    tail -n 30 "$ROOT.log" >&2
    exit 1
}
rm -f "$ROOT.log"
# Quiet and fast boot: nothing that needs hardware or a network.
for unit in systemd-networkd.service systemd-resolved.service systemd-timesyncd.service \
    apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer; do
    ln -sf /dev/null "$ROOT/etc/systemd/system/$unit"
done
chroot "$ROOT" useradd --create-home --uid 1000 h2m
mkdir -p "$ROOT/var/lib/systemd/linger"
touch "$ROOT/var/lib/systemd/linger/h2m"
# The user's D-Bus also listens in /run/h2m-user, which a test can mount
# from the host, so a process on the host running as uid 1000 reaches the
# user manager (the user bus only lets its own uid in).
mkdir -p "$ROOT/etc/systemd/user/dbus.socket.d"
printf '[Socket]\nListenStream=/run/h2m-user/bus\n' >"$ROOT/etc/systemd/user/dbus.socket.d/h2m.conf"
echo h2m-debsysd >"$ROOT/etc/hostname"
tar -C "$ROOT" -c . | podman import --change 'CMD ["/sbin/init"]' - "$IMAGE" >"$ROOT.log" 2>&1 || {
    cat "$ROOT.log" >&2
    exit 1
}
rm -f "$ROOT.log"
echo "$IMAGE"
