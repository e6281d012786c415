# Shared by the bench scripts (sourced, not run): a private Mosquitto, the
# agent config every bench runs with, and the process accounting they read.
# A bench that runs the agent against the host reports the root filesystem
# and the first non-loopback interface only: on a shared machine other
# jobs' mounts and veths come and go, and each one changes the entity set
# (a new discovery) mid-window.

# A free TCP port on loopback.
bench_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# bench_workdir NAME [keep]: a fresh directory /tmp/h2m-NAME.XXXXXX as
# $work, and an empty $pids; on exit every process in $pids is killed
# and the directory removed, unless "keep" (the bench names it in its
# output, for a closer look).
bench_workdir() {
    work=$(mktemp -d "/tmp/h2m-$1.XXXXXX")
    pids=()
    BENCH_KEEP_WORK=${2:-}
    trap bench_cleanup EXIT
}
bench_cleanup() {
    local p
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    [ "$BENCH_KEEP_WORK" = keep ] || rm -rf "$work"
}

# bench_mosquitto DIR: starts a private Mosquitto (no persistence, anonymous,
# loopback, log in DIR) and waits until it accepts. Sets BENCH_PORT and
# BENCH_MOSQUITTO_PID; the caller kills it.
bench_mosquitto() {
    local dir=$1 i
    chmod 777 "$dir" # mosquitto drops to its own user and writes its log here
    BENCH_PORT=$(bench_free_port)
    printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest file %s/mosquitto.log\n' \
        "$BENCH_PORT" "$dir" >"$dir/mosquitto.conf"
    chmod 644 "$dir/mosquitto.conf"
    mosquitto -c "$dir/mosquitto.conf" &
    BENCH_MOSQUITTO_PID=$!
    for i in $(seq 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$BENCH_PORT") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "mosquitto did not come up on $BENCH_PORT" >&2
    return 1
}

# The first non-loopback interface.
bench_iface() {
    awk -F: 'NR > 2 && $1 !~ /lo$/ {gsub(/ /, "", $1); print $1; exit}' /proc/net/dev
}

# bench_agent_conf FILE NODE INTERVAL PORT [TOML]: the agent's config for a
# bench: the default config but for the root filesystem and the first
# interface only, the broker on loopback PORT, and TOML appended (whole
# tables, e.g. "[containers]\nsocket = ...").
bench_agent_conf() {
    cat >"$1" <<CONF
interval = "$3"
node_id = "$2"
[mqtt]
host = "127.0.0.1"
port = $4
[collectors.disk]
mount_points_include = ["/"]
[collectors.network]
interfaces_include = ["$(bench_iface)"]
${5:-}
CONF
}

# Nanoseconds on a CPU of every thread of PID ($1), from its schedstat.
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {print s + 0}'; }
# Bytes written (wchar) by PID.
wchar() { awk '/^wchar/ {print $2}' /proc/"$1"/io; }
# RSS, PSS and USS of PID, in KiB (USS = Private_Clean + Private_Dirty).
mem() {
    local rss
    rss=$(awk '/^VmRSS/ {print $2}' /proc/"$1"/status)
    awk -v rss="$rss" '/^Pss:/ {p=$2} /^Private_(Clean|Dirty):/ {u+=$2} END {print rss, p, u}' /proc/"$1"/smaps_rollup
}
