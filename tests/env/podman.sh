#!/bin/sh
# A private rootful Podman for the container tests and bench: its own
# storage, run directory, file locks, events log and API socket, all under
# DIR, so it neither touches nor sees the machine's other containers (another
# test may be using the default storage at the same time). The settings:
# systemd-containers.conf beside this script, plus file locks.
#
#   tests/env/podman.sh setup DIR           # containers.conf + a busybox image, localhost/bb:latest
#   tests/env/podman.sh serve DIR           # API service on DIR/podman.sock; prints its PID
#   tests/env/podman.sh podman DIR ARGS...  # podman on that storage
#   tests/env/podman.sh teardown DIR        # removes every container, stops the service, deletes DIR
#
# Needs root and: apt-get install -y podman runc uidmap slirp4netns fuse-overlayfs busybox-static
# Keep DIR short (e.g. /tmp/h2mp.XXXXXX): conmon's sockets live below it.
set -eu
. "$(dirname "$0")/busybox.sh"
cmd=${1:?usage: podman.sh setup|serve|podman|teardown DIR [ARGS...]}
dir=${2:?usage: podman.sh $cmd DIR}
shift 2

# systemd-containers.conf (its last section is [engine]) and lock_type
# "file": that keeps the locks under --tmpdir; the default shm locks are
# shared by every root podman on the machine, and a fresh run directory
# would reset them under the other tests' feet.
write_conf() {
    { cat "$(dirname "$0")/systemd-containers.conf"; echo 'lock_type = "file"'; } >"$dir/containers.conf"
}

p() {
    CONTAINERS_CONF="$dir/containers.conf" podman \
        --root "$dir/root" --runroot "$dir/run" --tmpdir "$dir/tmp" \
        --volumepath "$dir/volumes" --storage-driver vfs "$@"
}

case $cmd in
setup)
    write_conf
    # No registry can be pulled from: a busybox image made here.
    busybox_image p "$dir" localhost/bb:latest
    rm -f "$dir/rootfs.tar"
    ;;
serve)
    rm -f "$dir/podman.sock"
    # A plain command, not the function: $! is podman itself (killed by PID),
    # and no descriptor of ours stays open in a waiting subshell.
    CONTAINERS_CONF="$dir/containers.conf" podman \
        --root "$dir/root" --runroot "$dir/run" --tmpdir "$dir/tmp" \
        --volumepath "$dir/volumes" --storage-driver vfs \
        system service --time=0 "unix://$dir/podman.sock" </dev/null >>"$dir/service.log" 2>&1 &
    pid=$!
    echo "$pid" >"$dir/service.pid"
    i=0
    until [ -S "$dir/podman.sock" ]; do
        i=$((i + 1))
        if [ $i -gt 200 ] || ! kill -0 "$pid" 2>/dev/null; then
            echo "podman system service did not come up; log:" >&2
            cat "$dir/service.log" >&2
            exit 1
        fi
        sleep 0.05
    done
    echo "$pid"
    ;;
podman)
    p "$@"
    ;;
teardown)
    [ -d "$dir" ] || exit 0
    p rm --force --all --time 0 >/dev/null 2>&1 || true
    if [ -f "$dir/service.pid" ]; then
        kill "$(cat "$dir/service.pid")" 2>/dev/null || true
    fi
    # conmon runs `podman container cleanup` after each container exits;
    # let those finish, or they recreate DIR after it is removed.
    i=0
    # ("roo[t]": grep's own command line holds the pattern, not a match.)
    while grep -qs -- "$dir/roo[t]" /proc/[0-9]*/cmdline && [ $i -lt 100 ]; do
        i=$((i + 1))
        sleep 0.05
    done
    # Whatever a killed container left mounted (its /dev/shm).
    grep -o " $dir/[^ ]*" /proc/self/mounts 2>/dev/null | sort -r | while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done
    rm -rf "$dir"
    ;;
*)
    echo "unknown command $cmd" >&2
    exit 2
    ;;
esac
