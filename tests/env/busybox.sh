# Sourced by tests/env/podman.sh and tests/env/docker.sh.
# busybox_image CLI DIR NAME: a busybox image imported with CLI (podman or
# docker) as NAME, built in DIR: no registry can be pulled from here.
busybox_image() {
    local cli=$1 dir=$2 name=$3 applet
    mkdir -p "$dir/rootfs/bin"
    cp "$(command -v busybox)" "$dir/rootfs/bin/busybox"
    for applet in $("$dir/rootfs/bin/busybox" --list); do
        [ "$applet" = busybox ] || ln -sf busybox "$dir/rootfs/bin/$applet"
    done
    tar -C "$dir/rootfs" -cf "$dir/rootfs.tar" .
    rm -rf "$dir/rootfs"
    "$cli" import --change 'CMD ["/bin/sh"]' --change 'ENV PATH=/bin' "$dir/rootfs.tar" "$name" > /dev/null
}
