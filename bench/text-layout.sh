#!/usr/bin/env bash
# Regenerates link/hot.ld and link/warm.ld, the lists of functions that
# link/layout.ld gathers (issue 13): "hot" runs in the steady cycle,
# "warm" runs only at start-up and in the first BENCH_WARMUP cycles.
#
#   bench/text-layout.sh              # builds the profiling binary, then runs it
#   bench/text-layout.sh BINARY       # a non-stripped build of the same code
#   git diff --stat link/             # review, commit with the code change
#
# Needs valgrind, mosquitto, mosquitto-clients, the x86_64 musl target and
# musl-gcc. The agent runs under callgrind against a private Mosquitto at a
# 1 s interval with the default config (what issue 13 measures: every
# mount and interface), except the first OS update check 3 s after start
# (not 2 min), so that its code is listed as warm (src/residency.rs drops
# it after each check). callgrind dumps at the first state message, after
# BENCH_WARMUP (25) and after BENCH_CYCLES (60) more. A function that ran
# in the last dump is hot; one that ran only before it is warm.
#
# The profiling build is the shipped one (static musl, release profile)
# with rustix on its libc backend (`--cfg rustix_use_libc`): valgrind does
# not map the whole vDSO, and rustix's own vDSO parser faults on it. Names
# are written without their hashes (legacy `17h<hash>E` -> `17h*`, v0 crate
# hashes -> `Cs*_`, a local copy's `.<n>` -> `*`), so a list stays valid
# across builds and targets; a name
# that no longer exists matches nothing and costs nothing. A C name (musl)
# is also written with "__" in front: callgrind may report a weak alias
# (fstatat) where the section carries the strong name (.text.__fstatat).
# Code the profiling build does not have (rustix's vDSO and raw-syscall
# backend) is in link/layout.ld's patterns, which are the backbone: these
# lists catch the rest (generic std/core/alloc instances, musl functions).
set -euo pipefail
cd "$(dirname "$0")/.."
WARMUP=${BENCH_WARMUP:-25}
CYCLES=${BENCH_CYCLES:-60}
for t in valgrind callgrind_control mosquitto mosquitto_sub; do
    command -v $t >/dev/null || { echo "needs $t (valgrind, mosquitto, mosquitto-clients)"; exit 1; }
done

BIN=${1:-}
if [ -z "$BIN" ]; then
    export CC_x86_64_unknown_linux_musl=${CC_x86_64_unknown_linux_musl:-musl-gcc}
    CARGO_TARGET_DIR=target/text-prof RUSTFLAGS="--cfg rustix_use_libc" \
        CARGO_PROFILE_RELEASE_STRIP=false \
        cargo build --release --locked --quiet --target x86_64-unknown-linux-musl
    BIN=target/text-prof/x86_64-unknown-linux-musl/release/host2mqtt
fi

work=$(mktemp -d /tmp/h2m-layout.XXXXXX)
chmod 777 "$work"  # mosquitto drops to its own user and writes its log here
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest file %s/mosquitto.log\n' \
    "$port" "$work" > "$work/mosquitto.conf"
chmod 644 "$work/mosquitto.conf"
mosquitto -c "$work/mosquitto.conf" & pids+=($!)
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done

cat > "$work/agent.toml" <<CONF
interval = "1s"
node_id = "bench_layout"
[mqtt]
host = "127.0.0.1"
port = $port
[os_updates]
first_check_after = "3s"
CONF

mosquitto_sub -h 127.0.0.1 -p "$port" -t host2mqtt/bench_layout/state -F '%U' > "$work/states" & pids+=($!)
HOST2MQTT_LOG=warn valgrind --tool=callgrind --demangle=no --callgrind-out-file="$work/cg.out" \
    "$BIN" --config "$work/agent.toml" run 2> "$work/valgrind.log" &
vg=$!
pids+=($vg)
states() { wc -l < "$work/states"; }
wait_states() {
    while [ "$(states)" -lt "$1" ]; do
        kill -0 "$vg" 2>/dev/null || { tail -20 "$work/valgrind.log"; exit 1; }
        sleep 0.05
    done
}
wait_states 1
callgrind_control -d start "$vg" > /dev/null
wait_states "$WARMUP"
callgrind_control -d warmup "$vg" > /dev/null
wait_states $((WARMUP + CYCLES))
sleep 0.3
callgrind_control -d steady "$vg" > /dev/null
kill "$vg"; wait "$vg" 2>/dev/null || true

# Function names of one dump (callgrind compresses a name to "(id)" after
# its first use, in fn= and cfn= lines alike), as input-section patterns.
names() {
    awk '/^c?fn=\(/ {
            id = $0; sub(/^c?fn=/, "", id); name = id; sub(/\).*/, ")", id)
            sub(/^\([0-9]+\) ?/, "", name)
            if (name != "") seen[id] = name
            if ($0 ~ /^fn=/ && (id in seen)) print seen[id]
         }' "$1" |
    grep -v -e '^0x' -e '^\?' -e '[ ()]' |
    sed -E -e 's/\.[0-9]+$//' -e 's/17h[0-9a-f]{16}E$/17h*/' -e 's/^(_R.*)$/\1*/' -e 's/Cs[0-9A-Za-z]+_/Cs*_/g' \
        -e 's/^/.text.*/' -e 's/^\.text\.\*([^_].*)/.text.\1\n.text.__\1/' |
    sort -u
}
ls "$work"/cg.out.* > /dev/null
names "$work/cg.out.3" > "$work/hot"
{ names "$work/cg.out.1"; names "$work/cg.out.2"; } | sort -u | comm -23 - "$work/hot" > "$work/warm"

emit() { # emit KIND FILE
    printf '/* Generated by bench/text-layout.sh from %s (%s): do not edit.\n' \
        "$(git rev-parse --short HEAD 2>/dev/null || echo '?')" "$(date -u +%Y-%m-%d)"
    printf ' * %s patterns; link/layout.ld INCLUDEs this in its .text.%s. */\n' "$(wc -l < "$2")" "$1"
    awk '{ printf "*(%s)\n", $0 }' "$2"
}
emit hot "$work/hot" > link/hot.ld
emit warm "$work/warm" > link/warm.ld
echo "link/hot.ld: $(wc -l < "$work/hot") patterns; link/warm.ld: $(wc -l < "$work/warm")"
