# Shared by the tests/deploy/*.sh scripts (sourced, not run).
#
# Each script counts checks with `check NAME CMD...` (or `pass`/`fail`),
# prints "N passed, M failed" last and exits non-zero when one failed; a
# missing prerequisite ends it early with `skip REASON` (exit 0, and the
# reason on the last line but one).

DEPLOY_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PROJECT=$(cd "$DEPLOY_DIR/../.." && pwd)
HA_HARNESS=${HA_HARNESS:-$PROJECT/../shared/ha}
HA_HARNESS_DIR=${HA_HARNESS_DIR:-/tmp/ha}
# The image every script builds and runs; not the name users pull.
TEST_IMAGE=${TEST_IMAGE:-localhost/host2mqtt:deploy-test}

PASS=0
FAIL=0
FAILED=()
T_START=$EPOCHREALTIME
CLEANUPS=()

elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
log() { printf '[%s %6.1fs] %s\n' "$SCRIPT_NAME" "$(elapsed "$T_START")" "$*"; }
indent() { sed 's/^/       /'; }

pass() { PASS=$((PASS + 1)); printf '  ok    %s\n' "$1"; }
fail() {
  FAIL=$((FAIL + 1))
  FAILED+=("$1")
  printf '  FAIL  %s\n' "$1"
  if [ -n "${2:-}" ]; then printf '%s\n' "$2" | head -40 | indent; fi
}

# check NAME CMD...: CMD's exit status decides; its output is shown on failure.
check() {
  local name=$1 out rc
  shift
  out=$("$@" 2>&1)
  rc=$?
  if ((rc == 0)); then pass "$name"; else fail "$name" "$out"; fi
  return 0
}

summary() {
  log "total run time $(elapsed "$T_START")s"
  if ((FAIL)); then printf 'failed: %s\n' "${FAILED[@]}"; fi
  echo "$PASS passed, $FAIL failed"
}

# stop_pid PID...: SIGTERM, then SIGKILL what is still there after 2 s; reaped.
stop_pid() {
  local p i
  (($#)) || return 0 # (`wait` with no PID would wait for every child)
  kill "$@" 2>/dev/null
  for i in $(seq 20); do
    for p in "$@"; do kill -0 "$p" 2>/dev/null && break; done
    kill -0 "$p" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$@" 2>/dev/null
  wait "$@" 2>/dev/null
  return 0
}

# Cleanups run last-registered first, on any exit.
on_exit() { CLEANUPS+=("$1"); }
run_cleanups() {
  local i
  for ((i = ${#CLEANUPS[@]} - 1; i >= 0; i--)); do eval "${CLEANUPS[i]}" >/dev/null 2>&1 || true; done
}
finish() {
  local rc=$?
  trap - EXIT INT TERM
  run_cleanups
  if [ -z "${SKIPPED:-}" ]; then
    summary
    ((FAIL == 0)) || rc=1
  fi
  exit "$rc"
}
trap finish EXIT
trap 'echo; log "interrupted"; exit 130' INT TERM

skip() {
  SKIPPED=1
  echo "SKIP ($SCRIPT_NAME): $*"
  echo "0 passed, 0 failed (skipped)"
  exit 0
}

# apt-get install, waiting while another apt/dpkg holds the lock.
apt_install() {
  local i
  command -v apt-get >/dev/null || return 1
  for i in $(seq 1 40); do
    if DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null 2>&1; then
      return 0
    fi
    # A fresh machine may lack the package lists.
    ((i == 1)) && DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null 2>&1
    sleep 5
  done
  return 1
}

# need CMD PACKAGE...: installs PACKAGEs when CMD is missing; skips when it can't.
need() {
  local cmd=$1
  shift
  command -v "$cmd" >/dev/null && return 0
  log "installing $* (for $cmd)"
  apt_install "$@" && command -v "$cmd" >/dev/null && return 0
  skip "$cmd is missing and apt-get install $* failed"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_port() { # wait_port PORT [TRIES of 0.1 s]
  local i
  for i in $(seq 1 "${2:-100}"); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# A podman that works on this machine kind (REAL-COMPONENTS.md): runc,
# cgroupfs, a file events log, ulimits it may set. Readable by the rootless
# test user too.
podman_conf() { # podman_conf DIR -> prints the path
  local f=$1/containers.conf
  cat >"$f" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
  chmod 644 "$f"
  echo "$f"
}

# The node_id host2mqtt derives from this host's name.
host_node_id() { tr -c 'A-Za-z0-9_\n-' '_' </proc/sys/kernel/hostname; }

# Mosquitto with users and the README's ACL. start_broker DIR PORT USERS...
# where each USER is name:password; $BROKER_EXTRA: more config lines. Sets BROKER_PID; the log is DIR/mosquitto.log.
start_broker() {
  local dir=$1 port=$2 u
  shift 2
  : >"$dir/passwd"
  for u in "$@"; do mosquitto_passwd -b "$dir/passwd" "${u%%:*}" "${u#*:}"; done
  cp "$DEPLOY_DIR/mosquitto.acl" "$dir/acl"
  cat >"$dir/mosquitto.conf" <<EOF
per_listener_settings false
persistence false
log_dest file $dir/mosquitto.log
log_type all
connection_messages true
listener $port 127.0.0.1
allow_anonymous false
password_file $dir/passwd
acl_file $dir/acl
${BROKER_EXTRA:-}
EOF
  chmod 644 "$dir"/*
  chmod 777 "$dir"
  mosquitto -c "$dir/mosquitto.conf" >/dev/null 2>&1 &
  BROKER_PID=$!
  on_exit "stop_pid $BROKER_PID"
  wait_port "$port"
}

# The Quadlet generator from Debian forky's podman, in the HA harness's
# chroot (made here when missing; idempotent). Returns non-zero with a
# reason on stdout when it can't be had.
QUADLET=/usr/libexec/podman/quadlet
ensure_quadlet() {
  if [ ! -f "$HA_HARNESS/setup.sh" ] || [ ! -x "$HA_HARNESS/chroot-run.sh" ]; then
    echo "no chroot harness at $(realpath -m "$HA_HARNESS")"
    return 1
  fi
  if [ ! -x "$HA_HARNESS_DIR/root/usr/bin/env" ]; then
    log "making the forky chroot: $HA_HARNESS/setup.sh (minutes, first time only)" >&2
    HA_HARNESS_DIR=$HA_HARNESS_DIR "$HA_HARNESS/setup.sh" >"$WORK/setup.log" 2>&1 || {
      tail -5 "$WORK/setup.log"
      return 1
    }
  fi
  if [ ! -x "$HA_HARNESS_DIR/root$QUADLET" ]; then
    log "installing podman (for quadlet) in the forky chroot" >&2
    local i
    for i in 1 2 3 4 5 6; do
      HA_HARNESS_DIR=$HA_HARNESS_DIR "$HA_HARNESS/chroot-run.sh" -- sh -c \
        'apt-get -o Acquire::Check-Valid-Until=false update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends podman' \
        >"$WORK/chroot-apt.log" 2>&1 && break
      sleep 5
    done
    [ -x "$HA_HARNESS_DIR/root$QUADLET" ] || {
      tail -5 "$WORK/chroot-apt.log"
      return 1
    }
  fi
}

# quadlet_dryrun DIR: the generator's whole output for the units in DIR.
quadlet_dryrun() {
  HA_HARNESS_DIR=$HA_HARNESS_DIR "$HA_HARNESS/chroot-run.sh" --bind "$1:/tmp/quadlet-units" -- \
    sh -c "QUADLET_UNIT_DIRS=/tmp/quadlet-units $QUADLET -dryrun -user 2>&1"
}

# generated_unit OUTPUT NAME: the text of NAME.service in a dry run's output.
generated_unit() {
  awk -v want="---$2.service---" '$0 == want { on = 1; next } /^---.*---$/ { on = 0 } on' <<<"$1"
}

# exec_start UNIT_TEXT: ExecStart's words, one per line (no quoting in ours).
exec_start() {
  sed -n 's/^ExecStart=//p' <<<"$1" | tr ' ' '\n' | sed '/^$/d'
}
