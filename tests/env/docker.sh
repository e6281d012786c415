#!/bin/sh
# A private Docker Engine (Debian's docker.io, dockerd 20.10) for the
# container tests: its own data root, exec root, pidfile, containerd and API
# socket, all under DIR, so it neither touches nor sees another dockerd.
#
#   tests/env/docker.sh start DIR            # dockerd on DIR/docker.sock + image h2m-bb:latest; prints its PID
#   tests/env/docker.sh docker DIR ARGS...   # the docker CLI against it
#   tests/env/docker.sh compose DIR ARGS...  # docker-compose against it
#   tests/env/docker.sh stop DIR             # removes its containers, stops it, deletes DIR
#
# Needs root and: apt-get install -y docker.io docker-compose busybox-static
# Keep DIR short (e.g. /tmp/h2md.XXXXXX): containerd's sockets live below it.
set -eu
. "$(dirname "$0")/busybox.sh"
cmd=${1:?usage: docker.sh start|docker|compose|stop DIR [ARGS...]}
dir=${2:?usage: docker.sh $cmd DIR}
shift 2
sock="$dir/docker.sock"
export DOCKER_HOST="unix://$sock"
# Debian's CLI matches its daemon; a newer one elsewhere in PATH also works.
cli=docker
[ -x /usr/bin/docker ] && cli=/usr/bin/docker

case $cmd in
start)
    mkdir -p "$dir/data" "$dir/exec" "$dir/rootfs/bin"
    # No iptables, no bridge: the tests' containers use --network none, and
    # the machine's firewall and interfaces stay as they are. vfs: overlay
    # on overlay fails in some sandboxes, vfs works everywhere.
    dockerd --data-root "$dir/data" --exec-root "$dir/exec" --pidfile "$dir/docker.pid" \
        -H "unix://$sock" --iptables=false --ip6tables=false --bridge=none \
        --storage-driver vfs >"$dir/dockerd.log" 2>&1 &
    pid=$!
    i=0
    until "$cli" version >/dev/null 2>&1; do
        i=$((i + 1))
        if [ $i -gt 300 ] || ! kill -0 $pid 2>/dev/null; then
            echo "dockerd did not start:" >&2
            tail -20 "$dir/dockerd.log" >&2
            exit 1
        fi
        sleep 0.1
    done
    # No registry can be pulled from: a busybox image made here.
    busybox_image "$cli" "$dir" h2m-bb:latest
    rm -f "$dir/rootfs.tar"
    echo $pid
    ;;
docker)
    exec "$cli" "$@"
    ;;
compose)
    exec docker-compose "$@"
    ;;
stop)
    ids=$("$cli" ps -aq 2>/dev/null || true)
    [ -z "$ids" ] || "$cli" rm -f $ids >/dev/null 2>&1 || true
    if [ -f "$dir/docker.pid" ]; then
        pid=$(cat "$dir/docker.pid")
        kill "$pid" 2>/dev/null || true
        i=0
        while kill -0 "$pid" 2>/dev/null && [ $i -lt 200 ]; do
            sleep 0.1
            i=$((i + 1))
        done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -rf "$dir"
    ;;
*)
    echo "unknown command $cmd" >&2
    exit 2
    ;;
esac
