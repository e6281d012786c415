#!/usr/bin/env bash
# The container image, run the way units/host2mqtt.container runs it.
#
# 1. Builds the static binary (packaging/build.sh bin) and the image from
#    Containerfile with Podman (FROM scratch: nothing is pulled), and checks
#    it: its size, a numeric non-root USER, nothing in it but the binary and
#    the CA roots.
# 2. Takes the `podman run` options from the ExecStart that the real Quadlet
#    generator (Debian forky's podman, in tests/ha/harness's chroot) makes of
#    units/host2mqtt.container; without that chroot, from a translation of
#    the same file done here (said so in the output). Only what podman 4.3 or
#    this machine cannot have is changed: the name, the image, %t, the
#    broker address, `--cgroups=split` (needs systemd), and in root mode
#    `--userns keep-id` (rootless only).
# 3. Runs the image with those options against a private Mosquitto (with the
#    README's ACL; the agent logs in as its node_id with the password from
#    the Podman secret), as root and rootless (a test user with subuids),
#    and checks what it publishes is the HOST's view: the same entities as
#    `host2mqtt check --json` run natively (the host's mounts, its
#    interfaces, not a veth), the host's boot time, OS and name. And how it
#    runs: not root, read-only root, no capabilities, no new privileges,
#    the host's network and UTS namespaces, no published ports; a probe
#    container with the same options (busybox) shows the secret, the user's
#    sockets and the host's /proc/1/mountinfo are readable and / is not
#    writable. `podman stop` makes the agent publish offline.
# 4. systemd's notify protocol through Podman: NOTIFY_SOCKET (a socket this
#    script listens on) and WATCHDOG_USEC handed to `podman run
#    --sdnotify=container`: READY=1 and WATCHDOG=1 arrive from inside the
#    container, no WATCHDOG=1 while it is SIGSTOPped, again after SIGCONT.
#
#   tests/deploy/container.sh            (as root)
# Env: HOST2MQTT_STATIC_BIN  use this static binary instead of building one
#      DEPLOY_MODES          "root rootless" (default) or one of them
#      DEPLOY_USER           rootless test user (default h2m-deploy; created with subuids)
set -uo pipefail
source "$(dirname "$0")/lib.sh"

deploy_work h2m-container "root podman, a rootless test user"
need newuidmap uidmap
need mosquitto mosquitto
need mosquitto_sub mosquitto-clients
need busybox busybox-static
need python3 python3
need file file

# The Quadlet is a user unit (UserNS=keep-id, User=%U): rootless only by
# default; DEPLOY_MODES=root runs root podman with keep-id dropped.
MODES=${DEPLOY_MODES:-rootless}
RUSER=${DEPLOY_USER:-h2m-deploy}
NODE=$(host_node_id)
PASSWORD="pw-$RANDOM$RANDOM"

# --- 1. binary and image ---------------------------------------------------
static_binary
# The image's CA roots, as packaging/build.sh stages them.
cat /usr/share/ca-certificates/mozilla/*.crt >"$WORK/ca-certificates.crt"
check "the binary is static" bash -c "file -b '$BIN' | grep -qE 'static(-pie)? linked'"

# A build context with just what the Containerfile copies.
CTX=$WORK/ctx
mkdir -p "$CTX/dist/oci/amd64"
cp "$BIN" "$CTX/dist/oci/amd64/host2mqtt"
cp "$WORK/ca-certificates.crt" "$CTX/dist/oci/"
log "podman build -f Containerfile -t $TEST_IMAGE"
if ! out=$(podman build --layers=false -q -f "$PROJECT/Containerfile" -t "$TEST_IMAGE" "$CTX" 2>&1); then
  fail "podman build" "$out"
  exit 1
fi
pass "podman build (FROM scratch, nothing pulled)"
on_exit "podman rmi -f $(podman image inspect --format '{{.Id}}' "$TEST_IMAGE")"

SIZE=$(podman image inspect --format '{{.Size}}' "$TEST_IMAGE")
log "image size: $SIZE bytes ($(awk -v s="$SIZE" 'BEGIN { printf "%.2f MiB", s / 1048576 }')); binary $(stat -c %s "$BIN") bytes"
check "the image is small (< 8 MiB)" test "$SIZE" -lt $((8 * 1048576))
check "the image's USER is numeric and not root (65532:65532)" \
  test "$(podman image inspect --format '{{.Config.User}}' "$TEST_IMAGE")" = "65532:65532"
FILES=$(podman create --name "h2m-deploy-files-$$" "$TEST_IMAGE" >/dev/null && podman export "h2m-deploy-files-$$" | tar -t | sort)
podman rm -f "h2m-deploy-files-$$" >/dev/null 2>&1
# podman adds empty mount points (/dev, /proc, /sys, /etc/hosts, ...) of its own.
EXTRA=$(grep -v '/$' <<<"$FILES" | grep -vxE 'usr/bin/host2mqtt|etc/ssl/certs/ca-certificates.crt|etc/(hosts|hostname|resolv.conf|passwd|group)|run/\.containerenv')
check "the image holds the binary and the CA roots, nothing else (no shell)" test -z "$EXTRA"
[ -n "$EXTRA" ] && printf '%s\n' "$EXTRA" | head | indent
check "the CA roots are in the image" grep -qx 'etc/ssl/certs/ca-certificates.crt' <<<"$FILES"
check "the image runs: --version" bash -c "podman run --rm $TEST_IMAGE --version | grep -q '^host2mqtt '"

# A probe image: busybox on the same empty base, run with the same options.
# (busybox-static's: the image has no libc for a dynamically linked one)
mkdir -p "$WORK/probe/bin"
BUSYBOX=/bin/busybox
file -b "$BUSYBOX" 2>/dev/null | grep -q 'statically linked' || { apt_install busybox-static; }
file -b "$BUSYBOX" 2>/dev/null | grep -q 'statically linked' || skip_all "no static busybox for the probe (apt-get install busybox-static)"
cp "$BUSYBOX" "$WORK/probe/bin/busybox"
printf 'FROM scratch\nCOPY bin/busybox /bin/busybox\nUSER 65532:65532\n' >"$WORK/probe/Containerfile"
podman build --layers=false -q -t localhost/h2m-deploy-probe:latest "$WORK/probe" >/dev/null 2>&1 ||
  fail "probe image builds"
on_exit "podman rmi -f $(podman image inspect --format '{{.Id}}' localhost/h2m-deploy-probe:latest 2>/dev/null)"

# --- 2. the Quadlet's options ----------------------------------------------
mkdir -p "$WORK/units"
cp "$PROJECT/units/host2mqtt.container" "$WORK/units/"
chmod -R a+rX "$WORK/units"
if why=$(ensure_quadlet); then
  GEN=$(generated_unit "$(quadlet_dryrun "$WORK/units")" host2mqtt)
  mapfile -t ARGS < <(exec_start "$GEN")
  check "the Quadlet generator made an ExecStart" test "${ARGS[0]:-}" = /usr/bin/podman
  ARGS=("${ARGS[@]:2}") # drop "/usr/bin/podman run"
  log "options from the Quadlet generator's ExecStart"
else
  log "no Quadlet generator ($why): translating units/host2mqtt.container here instead"
  ARGS=(--name host2mqtt --replace --rm --cgroups=split)
  while IFS='=' read -r key value; do
    case $key in
      Volume) ARGS+=(-v "$value") ;;
      Environment) ARGS+=(--env "$value") ;;
      Secret) ARGS+=(--secret "$value") ;;
      Network) ARGS+=(--network "$value") ;;
      PodmanArgs) read -ra more <<<"$value"; ARGS+=("${more[@]}") ;;
      UserNS) ARGS+=(--userns "$value") ;;
      ReadOnly) [ "$value" = true ] && ARGS+=(--read-only) ;;
      NoNewPrivileges) [ "$value" = true ] && ARGS+=(--security-opt=no-new-privileges) ;;
      DropCapability) ARGS+=(--cap-drop "$value") ;;
      SecurityLabelDisable) [ "$value" = true ] && ARGS+=(--security-opt label=disable) ;;
      Notify) [ "$value" = true ] && ARGS+=(--sdnotify=container -d) ;;
      AutoUpdate) ARGS+=(--label "io.containers.autoupdate=$value") ;;
      Image) IMAGE_WORD=$value ;;
    esac
  done < <(sed -n '/^\[Container\]/,/^\[/p' "$PROJECT/units/host2mqtt.container" | grep -E '^[A-Za-z]+=')
  ARGS+=("$IMAGE_WORD")
fi
printf '%s\n' "${ARGS[*]}" | fold -w 100 | indent
UNIT_IMAGE=${ARGS[-1]}
SECRET_SPEC=$(for a in "${ARGS[@]}"; do [[ $a == *type=mount* ]] && echo "$a"; done)
SECRET_NAME=${SECRET_SPEC%%,*}
SECRET_TARGET=$(sed -n 's/.*target=\([^,]*\).*/\1/p' <<<"$SECRET_SPEC")
check "the unit mounts the password as a Podman secret" test -n "$SECRET_NAME"
check "mqtt.password_file points at the secret" bash -c "printf '%s\n' \"\$@\" | grep -qx 'HOST2MQTT__MQTT__PASSWORD_FILE=$SECRET_TARGET'" _ "${ARGS[@]}"

# The rootless test user's XDG_RUNTIME_DIR (made here; kept between runs).
rootless_rt() {
  local d=/tmp/h2m-deploy-xdg-$(id -u "$RUSER")
  mkdir -p "$d/podman" && chown -R "$RUSER:" "$d" && chmod 700 "$d"
  echo "$d"
}

# as_user RUNTIME_DIR: the words that run a command as the rootless test
# user (setpriv execs it: a PID we get is the command's own).
as_user() {
  echo setpriv --reuid="$RUSER" --regid="$RUSER" --init-groups env "XDG_RUNTIME_DIR=$1" \
    "CONTAINERS_CONF=$CONTAINERS_CONF" "HOME=$(getent passwd "$RUSER" | cut -d: -f6)"
}

# adapt MODE RUNTIME_DIR NAME: the unit's options for this machine.
adapt() {
  local mode=$1 rt=$2 name=$3 a skip_next=0
  OPTS=()
  for a in "${ARGS[@]:0:${#ARGS[@]}-1}"; do
    if ((skip_next)); then skip_next=0; OPTS+=("$name"); continue; fi
    case $a in
      --name) OPTS+=("$a"); skip_next=1; continue ;;
      --cgroups=split) continue ;; # needs systemd as cgroup manager
      keep-id*) if [ "$mode" = root ]; then unset 'OPTS[-1]'; continue; fi ;; # "--userns" before it
    esac
    a=${a//%t/$rt}
    a=${a//%h/$(getent passwd "$RUSER" | cut -d: -f6)}
    if [ "$mode" = root ]; then a=${a//%U/0}; a=${a//%G/0}; else a=${a//%U/$(id -u "$RUSER")}; a=${a//%G/$(id -g "$RUSER")}; fi
    a=${a/#HOST2MQTT__MQTT__HOST=*/HOST2MQTT__MQTT__HOST=127.0.0.1}
    a=${a/#HOST2MQTT__MQTT__USERNAME=*/HOST2MQTT__MQTT__USERNAME=$NODE}
    OPTS+=("$a")
  done
  OPTS+=(--env "HOST2MQTT__MQTT__PORT=$PORT" --env HOST2MQTT__INTERVAL=2s --env HOST2MQTT__MQTT__RECONNECT_MAX=2s)
}

# --- 3. against a broker ---------------------------------------------------
PORT=$(free_port)
mkdir -p "$WORK/broker"
readme_broker "$WORK/broker" "$PORT" homeassistant:ha-secret "$NODE:$PASSWORD" ||
  { fail "mosquitto starts" "$(cat "$WORK/broker/mosquitto.log")"; exit 1; }
BLOG=$WORK/broker/mosquitto.log
log "mosquitto with the README's ACL on 127.0.0.1:$PORT; the agent logs in as '$NODE'"

# What the host looks like to the same binary run natively: taken before
# the container runs and again right after it published (native_view), so
# a mount or interface that other work on this machine adds or removes
# meanwhile is told from a difference in the container's view.
native_view() { # native_view FILE
  "$BIN" check --json >"$1" 2>"$WORK/native.err" || fail "native check --json" "$(cat "$WORK/native.err")"
}
native_view "$WORK/native.json"

subscribe() { # subscribe FILE: HA's view of this node's topics, in the background
  mosquitto_sub -h 127.0.0.1 -p "$PORT" -u homeassistant -P ha-secret -q 1 -F '%t|%p' \
    -t "homeassistant/device/$NODE/config" -t "host2mqtt/$NODE/#" >"$1" 2>&1 &
  SUB_PID=$!
  on_exit "stop_pid $SUB_PID"
  sleep 0.3
}
seen() { # seen FILE REGEX SECONDS
  local i
  for i in $(seq 1 $(($3 * 10))); do
    grep -qE "$2" "$1" && return 0
    sleep 0.1
  done
  echo "nothing matching $2 in:"
  cut -c1-150 "$1" | tail -5
  return 1
}

# The container's published view against the native one (python, stdlib).
compare_view() { # compare_view CAPTURE NATIVE_AFTER -> prints problems, exit 1 if any
  python3 - "$WORK/native.json" "$1" "$NODE" "$2" <<'EOF'
import json, socket, sys
native_msgs, capture, node, native_after = sys.argv[1:5]
native = {m["topic"]: m["payload"] for m in json.load(open(native_msgs))}
after = {m["topic"]: m["payload"] for m in json.load(open(native_after))}
seen = {}
for line in open(capture):
    topic, _, payload = line.rstrip("\n").partition("|")
    try:
        seen[topic] = json.loads(payload)
    except ValueError:
        seen[topic] = payload
# The host collectors' entities (cpu, load, memory, pressure, disk, diskio,
# network, system); others (containers, systemd units) depend on sockets
# the two runs see differently.
HOST_PREFIXES = ("cpu_", "load_", "memory_", "swap_", "pressure_", "disk_", "diskio_", "net_")
HOST_KEYS = {"boot_time", "processes", "os", "kernel", "reboot_required"}
def host_only(keys): return {k for k in keys if k.startswith(HOST_PREFIXES) or k in HOST_KEYS}
disc_t, state_t = f"homeassistant/device/{node}/config", f"host2mqtt/{node}/state"
problems = []
if disc_t not in seen or state_t not in seen:
    sys.exit(f"missing {disc_t} or {state_t} in what the container published")
nd, cd, ad = native[disc_t], seen[disc_t], after[disc_t]
# The state with the retained info (steady values: boot time, OS, kernel) merged in.
info_t = f"host2mqtt/{node}/info"
ns = {**(native.get(info_t) or {}), **native[state_t]}
cs = {**(seen.get(info_t) or {}), **seen[state_t]}
# Compared: what is stable. Not a disk, block device or interface that
# appeared or went between the two native views, nor a mount under the
# scratch places other tests mount things in (/tmp, /var/tmp, /run).
unstable = set(nd["cmps"]) ^ set(ad["cmps"])
def scratch(cmps, k):
    name = cmps[k].get("name", "")
    return k.startswith("disk_") and name.startswith(("Disk /tmp/", "Disk /var/tmp/", "Disk /run/"))
def stable(cmps): return {k for k in host_only(cmps) if k not in unstable and not scratch(cmps, k)}
n_keys, c_keys = stable(nd["cmps"]), stable(cd["cmps"])
ignored = sorted(k for k in host_only(nd["cmps"]) | host_only(cd["cmps"]) | host_only(ad["cmps"]) if k not in n_keys | c_keys)
if ignored:
    print("  not compared (changed meanwhile, or under a scratch place):", ignored)
host_name = open("/proc/sys/kernel/hostname").read().strip()
def keys(prefix, ks): return sorted(k for k in ks if k.startswith(prefix))
print("  native disks:   ", keys("disk_", n_keys))
print("  container disks:", keys("disk_", c_keys))
print("  native nets:    ", keys("net_", n_keys))
print("  container nets: ", keys("net_", c_keys))
if n_keys != c_keys:
    problems.append(f"entities differ: only native {sorted(n_keys - c_keys)}, only container {sorted(c_keys - n_keys)}")
if not any(k.startswith("disk_root_") for k in c_keys):
    problems.append("no disk_root_* (the host's /)")
nets = keys("net_", c_keys)
if not nets or any(k.startswith(("net_veth", "net_podman", "net_cni")) for k in nets):
    problems.append(f"interfaces are not the host's: {nets}")
for k in ("boot_time", "os", "kernel", "memory_total"):
    if ns.get(k) != cs.get(k):
        problems.append(f"state {k}: native {ns.get(k)!r}, container {cs.get(k)!r}")
dev_n, dev_c = nd.get("dev", nd.get("device", {})), cd.get("dev", cd.get("device", {}))
if dev_n != dev_c:
    problems.append(f"device block differs: native {dev_n}, container {dev_c}")
if dev_c.get("name") != host_name:
    problems.append(f"device name {dev_c.get('name')!r} is not the host name {host_name!r}")
print(f"  device {dev_c.get('name')!r}, boot_time {cs.get('boot_time')}, {len(c_keys)} host entities")
for p in problems: print("  " + p)
sys.exit(1 if problems else 0)
EOF
}

# run_mode MODE: the agent container as root or rootless, checked from outside.
run_mode() {
  local mode=$1 as=() rt name=h2m-deploy-$1-$$ pid capture=$WORK/capture-$1 probe uid gid
  if [ "$mode" = rootless ]; then
    if ! id "$RUSER" >/dev/null 2>&1; then
      log "creating the rootless test user $RUSER (useradd gives it subuids)"
      useradd --create-home --shell /usr/sbin/nologin "$RUSER" || { fail "useradd $RUSER"; return; }
    fi
    grep -q "^$RUSER:" /etc/subuid || { fail "$RUSER has subuids in /etc/subuid"; return; }
    # A runtime directory that outlives this run: rootless podman records
    # the first one it used in its database and keeps using it.
    rt=$(rootless_rt)
    as=($(as_user "$rt"))
    uid=$(id -u "$RUSER") gid=$(id -g "$RUSER")
    if [[ $(cd / && "${as[@]}" podman info --format '{{.Store.RunRoot}}' 2>/dev/null) != "$rt"/* ]]; then
      log "[$mode] resetting $RUSER's podman storage (it was set up with another runtime directory)"
      (cd / && "${as[@]}" podman system reset -f >/dev/null 2>&1)
    fi
    # Rootless podman's pause process (it holds the user namespace) and the
    # API service (re-executed inside that namespace) outlive the commands
    # that started them: found by their pid file and their unique socket path.
    on_exit "stop_pid \$(cat $rt/libpod/tmp/pause.pid 2>/dev/null)"
    on_exit "stop_pid \$(pgrep -u $RUSER -f 'podman system service --time=0 unix://$rt/podman/podman.sock')"
    on_exit "rm -f $rt/podman/podman.sock $rt/bus $rt/notify.sock"
    # The user's Podman API socket and session bus, real ones.
    rm -f "$rt/podman/podman.sock" "$rt/bus"
    "${as[@]}" podman system service --time=0 "unix://$rt/podman/podman.sock" >/dev/null 2>&1 &
    if command -v dbus-daemon >/dev/null; then
      "${as[@]}" dbus-daemon --session --nofork --address="unix:path=$rt/bus" >/dev/null 2>&1 &
      on_exit "stop_pid $!"
    else
      "${as[@]}" python3 -c "import socket,time; s=socket.socket(socket.AF_UNIX); s.bind('$rt/bus'); s.listen(); time.sleep(600)" &
      on_exit "stop_pid $!"
    fi
    for _ in $(seq 50); do [ -S "$rt/podman/podman.sock" ] && [ -S "$rt/bus" ] && break; sleep 0.1; done
    (cd / && podman save -q -o "$WORK/image.tar" "$TEST_IMAGE" && podman save -q -o "$WORK/probe.tar" localhost/h2m-deploy-probe:latest) && chmod 644 "$WORK"/*.tar
    (cd / && "${as[@]}" podman load -q -i "$WORK/image.tar" >/dev/null && "${as[@]}" podman load -q -i "$WORK/probe.tar" >/dev/null) ||
      { fail "[$mode] image loaded into $RUSER's storage"; return; }
    on_exit "cd / && ${as[*]} podman rmi -f $TEST_IMAGE localhost/h2m-deploy-probe:latest"
  else
    rt=$WORK/rt-$mode
    mkdir -p "$rt/podman"
    python3 -c "import socket; [socket.socket(socket.AF_UNIX).bind(p) for p in ('$rt/podman/podman.sock', '$rt/bus')]"
    uid=0 gid=0
  fi
  local secret=$SECRET_NAME
  [ "$mode" = root ] && secret=h2m-deploy-test-pw-$$ # root's store is shared with others
  (cd / && "${as[@]}" podman secret rm "$secret" >/dev/null 2>&1
    printf '%s\n' "$PASSWORD" | "${as[@]}" podman secret create "$secret" - >/dev/null) || { fail "[$mode] podman secret create"; return; }
  on_exit "cd / && ${as[*]} podman secret rm $secret"

  adapt "$mode" "$rt" "$name"
  for i in "${!OPTS[@]}"; do OPTS[i]=${OPTS[i]/#$SECRET_NAME,/$secret,}; done
  log "[$mode] podman run ... $TEST_IMAGE (as $([ "$mode" = rootless ] && echo "$RUSER" || echo root))"
  : >"$capture"
  subscribe "$capture"
  if ! out=$(cd / && "${as[@]}" podman run "${OPTS[@]}" "$TEST_IMAGE" 2>&1); then
    fail "[$mode] podman run with the unit's options" "$out"
    return
  fi
  on_exit "cd / && ${as[*]} podman rm -f -t 0 $name"
  pass "[$mode] podman run with the unit's options"
  check "[$mode] the agent publishes its state" seen "$capture" "^host2mqtt/$NODE/state\\|\\{\"cpu" 15
  seen "$capture" "^host2mqtt/$NODE/state\\|\\{\"cpu_usage\":[0-9]" 6 >/dev/null # a second state, with rates
  check "[$mode] it logged in with the secret's password; the ACL denied nothing" \
    bash -c "grep -q \"u'$NODE'\" '$BLOG' && ! grep -q 'Denied .* host2mqtt-$NODE ' '$BLOG'"
  local view
  native_view "$WORK/native-after-$mode.json"
  view=$(compare_view "$capture" "$WORK/native-after-$mode.json" 2>&1)
  local rc=$?
  if ((rc == 0)); then pass "[$mode] it publishes the host's view: same entities as native check (mounts, interfaces), boot time, OS, name"; else fail "[$mode] it publishes the host's view" "$view"; fi
  printf '%s\n' "$view" | grep -E '^  (native|container|device|not compared)' | indent

  pid=$(cd / && "${as[@]}" podman inspect --format '{{.State.Pid}}' "$name")
  local st=/proc/$pid/status
  check "[$mode] process runs as uid $uid, not root" bash -c "awk '/^Uid:/ { exit !(\$2 == $uid && \$3 == $uid) }' $st"
  check "[$mode] no capabilities (CapEff/CapPrm/CapBnd 0)" bash -c "awk '/^Cap(Eff|Prm|Bnd):/ && \$2 != \"0000000000000000\" { bad = 1 } END { exit bad }' $st"
  check "[$mode] no new privileges, seccomp on" bash -c "grep -q '^NoNewPrivs:[[:space:]]*1' $st && grep -q '^Seccomp:[[:space:]]*2' $st"
  check "[$mode] its / is mounted read-only" bash -c "awk '\$5 == \"/\" { split(\$6, o, \",\"); for (i in o) if (o[i] == \"ro\") ok = 1 } END { exit !ok }' /proc/$pid/mountinfo"
  check "[$mode] the host's network namespace (eth0, the tailnet)" test "$(readlink "/proc/$pid/ns/net")" = "$(readlink /proc/$$/ns/net)"
  check "[$mode] the host's UTS namespace (its host name)" test "$(readlink "/proc/$pid/ns/uts")" = "$(readlink /proc/$$/ns/uts)"
  local insp
  insp=$(cd / && "${as[@]}" podman inspect --format '{{.HostConfig.ReadonlyRootfs}} {{.HostConfig.NetworkMode}} {{len .HostConfig.PortBindings}} {{.Config.User}} {{.HostConfig.CapDrop}}' "$name")
  check "[$mode] podman inspect: read-only, host network, no ports, user $uid:$gid ($insp)" bash -c "[[ '$insp' == 'true host 0 $uid:$gid '* ]]"
  log "[$mode] podman top: $(cd / && "${as[@]}" podman top "$name" user huser args | tail -1 | tr -s ' ')"

  # The probe: same options, busybox instead of the agent.
  local popts=() skip_env=0
  for a in "${OPTS[@]}"; do
    case $a in --name) skip_env=1; continue ;; -d | --replace) continue ;; --sdnotify=*) continue ;; esac
    ((skip_env)) && { skip_env=0; continue; }
    popts+=("$a")
  done
  probe=$(cd / && "${as[@]}" podman run --rm --entrypoint /bin/busybox "${popts[@]}" localhost/h2m-deploy-probe:latest sh -c '
    B=/bin/busybox
    echo "uid=$($B id -u)"
    $B touch /probe 2>/dev/null && echo "rootfs=writable" || echo "rootfs=read-only"
    $B touch /host/root/tmp/h2m-probe 2>/dev/null && echo "hostroot=writable" || echo "hostroot=read-only"
    echo "secret=$($B cat '"$SECRET_TARGET"' 2>&1)"
    [ -r /host/proc/1/mountinfo ] && $B head -1 /host/proc/1/mountinfo >/dev/null && echo "mountinfo1=readable" || echo "mountinfo1=unreadable"
    [ -w /host/root'"$rt"'/podman/podman.sock ] && echo "podman_sock=usable" || echo "podman_sock=denied"
    [ -w /host/root'"$rt"'/bus ] && echo "bus=usable" || echo "bus=denied"
    echo "hostname=$($B hostname)"
  ' 2>&1)
  printf "%s\n" "$(printf "%s\n" "$probe" | tr "\n" " " | sed "s/$PASSWORD/<the password>/")" | indent
  check "[$mode] probe: uid $uid inside (the user's own)" grep -qx "uid=$uid" <<<"$probe"
  check "[$mode] probe: / and the host's / are read-only" bash -c "grep -qx 'rootfs=read-only' <<<\"\$1\" && grep -qx 'hostroot=read-only' <<<\"\$1\"" _ "$probe"
  check "[$mode] probe: the secret is readable at $SECRET_TARGET" grep -qx "secret=$PASSWORD" <<<"$probe"
  check "[$mode] probe: the host's /proc/1/mountinfo is readable (no fallback to self)" grep -qx 'mountinfo1=readable' <<<"$probe"
  check "[$mode] probe: the host name is the host's" grep -qx "hostname=$(cat /proc/sys/kernel/hostname)" <<<"$probe"
  if [ "$mode" = rootless ]; then
    check "[$mode] probe: the user's Podman socket and bus are usable under the host's / (same uid inside)" \
      bash -c "grep -qx 'podman_sock=usable' <<<\"\$1\" && grep -qx 'bus=usable' <<<\"\$1\"" _ "$probe"
  fi

  : >"$capture"
  (cd / && "${as[@]}" podman stop -t 10 "$name" >/dev/null 2>&1)
  check "[$mode] podman stop: the agent publishes offline" seen "$capture" "^host2mqtt/$NODE/availability\\|offline$" 5
  stop_pid "$SUB_PID"
}

for m in $MODES; do run_mode "$m"; done

# --- 4. systemd notify through podman --sdnotify=container -------------------
notify_mode() { # notify_mode MODE
  local mode=$1 as=() rt name=h2m-deploy-notify-$1-$$ pid
  rt=$WORK/rt-$mode
  [ "$mode" = rootless ] && rt=$(rootless_rt) && as=($(as_user "$rt"))
  local sock=$rt/notify.sock log=$WORK/notify-$mode.log
  rm -f "$sock"
  python3 - "$sock" "$log" <<'EOF' &
import os, socket, sys, time
path, log = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
os.chmod(path, 0o777)
start = time.monotonic()
with open(log, "w", buffering=1) as out:
    while time.monotonic() - start < 60:
        data = s.recv(4096).decode(errors="replace")
        for line in data.splitlines():
            out.write(f"{time.monotonic() - start:.2f} {line}\n")
EOF
  local lpid=$!
  on_exit "stop_pid $lpid"
  for _ in $(seq 30); do [ -S "$sock" ] && break; sleep 0.1; done
  [ "$mode" = rootless ] && chown "$RUSER:" "$sock"
  local secret=$SECRET_NAME
  [ "$mode" = root ] && secret=h2m-deploy-test-pw-$$
  adapt "$mode" "$rt" "$name"
  for i in "${!OPTS[@]}"; do OPTS[i]=${OPTS[i]/#$SECRET_NAME,/$secret,}; done
  printf '%s\n' "$PASSWORD" | (cd / && "${as[@]}" podman secret create "$secret" - >/dev/null 2>&1)
  log "[$mode] podman run --sdnotify=container with NOTIFY_SOCKET=$sock WATCHDOG_USEC=1000000"
  if ! out=$(cd / && "${as[@]}" env NOTIFY_SOCKET="$sock" WATCHDOG_USEC=1000000 podman run "${OPTS[@]}" "$TEST_IMAGE" 2>&1); then
    fail "[$mode] podman run for the notify check" "$out"
    return
  fi
  on_exit "cd / && ${as[*]} podman rm -f -t 0 $name"
  check "[$mode] READY=1 arrives from inside the container" seen "$log" ' READY=1$' 10
  sleep 3
  local pets
  pets=$(grep -c ' WATCHDOG=1$' "$log")
  check "[$mode] WATCHDOG=1 at half of WATCHDOG_USEC ($pets in the first ~3 s; --env=WATCHDOG_USEC)" test "$pets" -ge 4
  pid=$(cd / && "${as[@]}" podman inspect --format '{{.State.Pid}}' "$name")
  kill -STOP "$pid"
  sleep 0.2
  local before after
  before=$(grep -c ' WATCHDOG=1$' "$log")
  sleep 2
  after=$(grep -c ' WATCHDOG=1$' "$log")
  kill -CONT "$pid"
  check "[$mode] no WATCHDOG=1 while the agent is stopped" test "$before" -eq "$after"
  sleep 1.5
  check "[$mode] WATCHDOG=1 again after SIGCONT" test "$(grep -c ' WATCHDOG=1$' "$log")" -gt "$after"
  (cd / && "${as[@]}" podman stop -t 10 "$name" >/dev/null 2>&1)
  sleep 0.5
  log "[$mode] what reached the socket: $(awk '{ print $2 }' "$log" | sed 's/^MAINPID=[0-9]*$/MAINPID=N/' | sort | uniq -c | awk '{ printf "%s x%s, ", $2, $1 }')"
}
for m in $MODES; do notify_mode "$m"; done

exit 0
