# The shell library of the project's shell tests (sourced, never run):
# tests/ha/*.sh, tests/env/*.sh, tests/deploy/*.sh, tests/run.
#
#   source "$(dirname "$0")/../lib.sh"     # sets PROJECT, TEST_NAME, T_START
#
# Counting:   check NAME CMD...   pass NAME   fail NAME [DETAIL]
#             skip NAME REASON    (loud; with CI=true a skip counts as a failure)
#             skip_all REASON     (the whole script: prints the summary, exits 0; 1 under CI)
#             fatal NAME [DETAIL] (a failure that ends the run)
#             summary             ("N passed, M failed, K skipped", printed last by the EXIT trap)
# Output:     log MSG (with the seconds since the start), indent, elapsed START
# Processes:  track PID (killed at exit), stop_pid PID... (TERM, then KILL after 2 s),
#             alive PID, wait_until TIMEOUT_S CMD..., wait_port PORT [TIMEOUT_S]
# Things:     temp_dir VAR PREFIX (removed at exit), on_exit 'CMD' (run at exit, last first),
#             free_port, start_broker DIR [PORT] (a private Mosquitto; $BROKER_USERS,
#             $BROKER_ACL: logins and an ACL), need_root,
#             apt_install PKG..., need CMD PKG...
# Browser:    node_packages DIR (playwright-core + js-yaml, cached in $H2M_NODE_DIR)
# HA:         ha_up WORK (the harness of tests/ha/harness, started on free ports and
#             stopped at exit), ha_env KEY, h2m_binary WORK (sets BIN)
#
# The EXIT trap runs the cleanups, prints the summary and exits 1 when a check
# failed. A script that sets its own EXIT trap must call lib_finish from it.

PROJECT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TEST_NAME=${TEST_NAME:-$(basename "$(dirname "$0")")/$(basename "$0" .sh)}
T_START=$EPOCHREALTIME
PASS=0
FAIL=0
SKIP=0
FAILED=()
SKIPPED=()
CLEANUPS=()
TRACKED=()
LIB_SUMMARY_DONE=0

elapsed() { awk -v a="${1:-$T_START}" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
log() { printf '[%s %6.1fs] %s\n' "$TEST_NAME" "$(elapsed "$T_START")" "$*"; }
indent() { sed 's/^/       /'; }
in_ci() { [ "${CI:-}" = true ]; }

pass() {
  PASS=$((PASS + 1))
  printf '  ok    %s\n' "$1"
}
fail() {
  FAIL=$((FAIL + 1))
  FAILED+=("$1")
  printf '  FAIL  %s\n' "$1"
  if [ -n "${2:-}" ]; then printf '%s\n' "$2" | head -n 60 | indent; fi
}

# check NAME CMD...: CMD's exit status decides. Its output is shown (indented)
# either way; the status is returned, so a caller can stop after a failure.
check() {
  local name=$1 out rc
  shift
  out=$("$@" 2>&1)
  rc=$?
  if ((rc == 0)); then pass "$name"; else fail "$name"; fi
  if [ -n "$out" ]; then printf '%s\n' "$out" | indent; fi
  return $rc
}

# skip NAME REASON: a check that could not run. Never silent: printed loudly,
# listed in the summary. Under CI (CI=true) a missing component is a failure.
skip() {
  if in_ci; then
    fail "$1" "CI=true, so this is a failure and not a skip: $2"
    return
  fi
  SKIP=$((SKIP + 1))
  SKIPPED+=("$1: $2")
  printf '  SKIPPED  %s: %s\n' "$1" "$2"
}

# skip_all REASON: nothing of this script can run.
skip_all() {
  skip "$TEST_NAME" "$1"
  exit 0
}

# fatal NAME [DETAIL]: a failure that ends the run.
fatal() {
  fail "$1" "${2:-}"
  exit 1
}

summary() {
  ((LIB_SUMMARY_DONE)) && return 0
  LIB_SUMMARY_DONE=1
  log "total run time $(elapsed "$T_START")s"
  if ((FAIL)); then printf 'failed: %s\n' "${FAILED[@]}"; fi
  if ((SKIP)); then printf '\n!!! SKIPPED: %s\n' "${SKIPPED[@]}"; fi
  echo "$PASS passed, $FAIL failed, $SKIP skipped"
}

# alive PID: running (a zombie, exited but not yet waited for, is not).
alive() {
  local st
  st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ $st != Z* ]]
}

# stop_pid PID...: SIGCONT+SIGTERM, SIGKILL what is still there after 2 s
# (STOP_GRACE_S), then reaped. Only ever PIDs this script started.
stop_pid() {
  local p i left
  (($#)) || return 0 # (`wait` with no PID would wait for every child)
  kill -CONT "$@" 2>/dev/null
  kill -TERM "$@" 2>/dev/null
  for i in $(seq $((${STOP_GRACE_S:-2} * 10))); do
    left=0
    for p in "$@"; do alive "$p" && left=1; done
    ((left)) || break
    sleep 0.1
  done
  for p in "$@"; do alive "$p" && kill -KILL "$p" 2>/dev/null; done
  wait "$@" 2>/dev/null
  return 0
}

# track PID: a process this script started; stopped at exit if still running.
track() { TRACKED+=("$1"); }

# on_exit 'CMD': run at exit (last registered first), output discarded.
on_exit() { CLEANUPS+=("$1"); }

# temp_dir VAR PREFIX: VAR = a new directory /tmp/PREFIX.XXXXXX, removed at exit.
temp_dir() {
  local d
  d=$(mktemp -d "/tmp/$2.XXXXXX") || return 1
  on_exit "rm -rf '$d'"
  printf -v "$1" '%s' "$d"
}

# mine PID: a child of this shell (a PID it waited for may since be someone else's).
mine() { [ "$(ps -o ppid= -p "$1" 2>/dev/null | tr -d ' ')" = "$$" ]; }

lib_cleanup() {
  local i p left=()
  for p in "${TRACKED[@]}"; do mine "$p" && left+=("$p"); done
  ((${#left[@]})) && stop_pid "${left[@]}"
  TRACKED=()
  for ((i = ${#CLEANUPS[@]} - 1; i >= 0; i--)); do eval "${CLEANUPS[i]}" >/dev/null 2>&1 || true; done
  CLEANUPS=()
}

# lib_finish: the EXIT trap (cleanups, summary, exit 1 on any failure).
lib_finish() {
  local rc=$?
  trap - EXIT INT TERM
  lib_cleanup
  summary
  ((FAIL == 0)) || ((rc)) || rc=1
  if ((rc == 0)) && ((SKIP)) && in_ci; then rc=1; fi
  exit "$rc"
}
trap lib_finish EXIT
trap 'echo; log "interrupted"; exit 130' INT TERM

# wait_until TIMEOUT_S CMD...: polls CMD every 0.1 s until it succeeds.
wait_until() {
  local deadline
  deadline=$(awk -v n="$EPOCHREALTIME" -v t="$1" 'BEGIN { printf "%.3f", n + t }')
  shift
  while :; do
    "$@" && return 0
    awk -v n="$EPOCHREALTIME" -v d="$deadline" 'BEGIN { exit !(n >= d) }' && return 1
    sleep 0.1
  done
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { wait_until "${2:-10}" port_open "$1"; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

need_root() { [ "$(id -u)" = 0 ] || fatal "running as root" "${1:-this test must run as root}"; }

# start_broker DIR [PORT]: a private Mosquitto on 127.0.0.1 (no
# persistence), its conf/log/pid in DIR. Anonymous, unless $BROKER_USERS
# ("name:password ...") gives its only logins; $BROKER_ACL: an acl_file;
# $BROKER_CONF: more config lines. Sets BROKER_PORT and BROKER_PID;
# tracked; returns once it answers.
start_broker() {
  local dir=$1 auth="allow_anonymous true" u
  BROKER_PORT=${2:-$(free_port)}
  mkdir -p "$dir"
  if [ -n "${BROKER_USERS:-}" ]; then
    : >"$dir/passwd"
    for u in $BROKER_USERS; do mosquitto_passwd -b "$dir/passwd" "${u%%:*}" "${u#*:}" || return 1; done
    auth="allow_anonymous false
password_file $dir/passwd"
  fi
  [ -z "${BROKER_ACL:-}" ] || auth+="
acl_file $BROKER_ACL"
  cat >"$dir/mosquitto.conf" <<EOF
listener $BROKER_PORT 127.0.0.1
# Stays root: its files may sit below a directory only root may enter.
user root
$auth
persistence false
log_dest file $dir/mosquitto.log
log_type error
log_type warning
log_type notice
log_type information
connection_messages true
log_timestamp_format %Y-%m-%dT%H:%M:%S
${BROKER_CONF:-}
EOF
  setsid "$(command -v mosquitto || echo /usr/sbin/mosquitto)" -c "$dir/mosquitto.conf" >"$dir/mosquitto.out" 2>&1 </dev/null &
  BROKER_PID=$!
  echo "$BROKER_PID" >"$dir/mosquitto.pid"
  track "$BROKER_PID"
  wait_port "$BROKER_PORT" 10 || {
    cat "$dir/mosquitto.out" "$dir/mosquitto.log" >&2
    return 1
  }
}

# apt_install PKG...: apt-get install, waiting while someone else holds the lock.
apt_install() {
  local i
  command -v apt-get >/dev/null || return 1
  for i in $(seq 1 40); do
    if DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "$@" >/dev/null 2>&1; then
      return 0
    fi
    # A fresh machine may lack the package lists.
    ((i == 1)) && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null 2>&1
    sleep 5
  done
  return 1
}

# need CMD PACKAGE...: installs PACKAGEs when CMD is missing; skip_all when it can't.
need() {
  local cmd=$1
  shift
  command -v "$cmd" >/dev/null && return 0
  log "installing $* (for $cmd)"
  apt_install "$@" && command -v "$cmd" >/dev/null && return 0
  skip_all "$cmd is missing and apt-get install $* failed"
}

# node_packages DIR: the npm packages of the browser checks (playwright-core,
# js-yaml), installed once into $H2M_NODE_DIR (default
# /var/cache/host2mqtt/node, outside the clone) and linked as
# DIR/node_modules, so that a script copied into DIR finds them. Returns 1
# when npm cannot install them.
node_packages() {
  local cache=${H2M_NODE_DIR:-/var/cache/host2mqtt/node} p missing=0
  command -v npm >/dev/null || return 1
  mkdir -p "$cache" "$1" || return 1
  for p in playwright-core js-yaml; do [ -f "$cache/node_modules/$p/package.json" ] || missing=1; done
  if ((missing)); then
    (
      flock 9
      cd "$cache" || exit 1
      [ -f package.json ] || npm init -y >/dev/null
      npm install --no-audit --no-fund --silent playwright-core js-yaml >/dev/null
    ) 9>"$cache/.lock" || return 1
  fi
  ln -sfn "$cache/node_modules" "$1/node_modules"
}

# --- Home Assistant: the harness in tests/ha/harness --------------------------
HA_HARNESS=$PROJECT/tests/ha/harness/harness.sh

# ha_env KEY: a value of the running harness's ha.env.
ha_env() { sed -n "s/^$1=//p" "$HA_ENV" | tail -n 1; }

# ha_up WORK: installs the harness when needed (minutes, once per
# $H2M_HA_DIR), then starts a fresh HA + Mosquitto on free ports with its
# state in WORK/ha, stopped at exit. HA_REUSE=1: use the one running on
# $HA_PORT instead (left running). Sets HA_ENV, MQTT_PORT, PREFIX, HA_LOG.
ha_up() {
  local work=$1 t
  log "harness setup (idempotent; the first run takes minutes and needs the Debian mirror and PyPI)"
  t=$EPOCHREALTIME
  "$HA_HARNESS" setup >"$work/setup.log" 2>&1 || fatal "harness setup" "$(tail -n 30 "$work/setup.log")"
  log "harness installed ($(elapsed "$t")s)"
  if [ "${HA_REUSE:-0}" = 1 ]; then
    export HA_PORT=${HA_PORT:-18123}
    "$HA_HARNESS" status >/dev/null || fatal "harness" "HA_REUSE=1, but no harness runs for HA_PORT=$HA_PORT"
    log "HA_REUSE=1: using the harness on port $HA_PORT (left running)"
  else
    export HA_PORT=${HA_PORT:-$(free_port)}
    export MQTT_PORT=${MQTT_PORT:-$(free_port)}
    [ "$HA_PORT" != "$MQTT_PORT" ] || MQTT_PORT=$(free_port)
    export H2M_HA_STATE=$work/ha
    t=$EPOCHREALTIME
    on_exit "'$HA_HARNESS' stop"
    "$HA_HARNESS" start >"$work/start.log" 2>&1 || fatal "harness start" "$(tail -n 30 "$work/start.log")"
    log "HA $(HA_ENV=$work/ha/ha.env ha_env HA_VERSION) ready in $(elapsed "$t")s (HA 127.0.0.1:$HA_PORT, MQTT :$MQTT_PORT)"
  fi
  HA_ENV=$("$HA_HARNESS" env)
  export HA_ENV
  [ -f "$HA_ENV" ] || fatal "harness" "no $HA_ENV"
  MQTT_PORT=$(ha_env MQTT_PORT)
  PREFIX=$(ha_env DISCOVERY_PREFIX)
  HA_LOG=$(ha_env HA_LOG)
}

# h2m_binary WORK: BIN = a private copy (a rebuild meanwhile must not swap it
# under us) of $HOST2MQTT_BIN, or of a fresh `cargo build --release`.
h2m_binary() {
  local src=${HOST2MQTT_BIN:-} t
  if [ -n "$src" ]; then
    [ -x "$src" ] || fatal "binary" "HOST2MQTT_BIN=$src is not executable"
  else
    log "cargo build --release"
    t=$EPOCHREALTIME
    (cd "$PROJECT" && cargo build --release --bin host2mqtt >"$1/cargo.log" 2>&1) ||
      fatal "cargo build --release" "$(tail -n 40 "$1/cargo.log")"
    src=${CARGO_TARGET_DIR:-$PROJECT/target}/release/host2mqtt
    log "built in $(elapsed "$t")s"
  fi
  BIN=$1/host2mqtt
  cp "$src" "$BIN"
}

# ha_finish_onboarding: the steps start leaves open (the core_config step
# sets up met, radio_browser and friends, which fail without the internet:
# harmless here). The frontend sends every page to the onboarding until
# they are done, so browser checks call this after ha_up.
ha_finish_onboarding() {
  python3 - "$PROJECT/tests/ha/harness" "$HA_ENV" << 'PY'
import sys
sys.path.insert(0, sys.argv[1])
import ha_harness as H
env = H.load_env(sys.argv[2])
ha = H.HA(env["HA_URL"], env["HA_TOKEN"])
ha.call("POST", "/api/onboarding/core_config", data={})
ha.call("POST", "/api/onboarding/analytics", data={})
# this step wants a login's token, not the long-lived one
tok = ha.call("POST", "/auth/token", auth=False, form={
    "grant_type": "refresh_token", "refresh_token": env["HA_REFRESH_TOKEN"], "client_id": env["HA_CLIENT_ID"]})
ha.token = tok["access_token"]
ha.call("POST", "/api/onboarding/integration",
        data={"client_id": env["HA_CLIENT_ID"], "redirect_uri": env["HA_CLIENT_ID"] + "?auth_callback=1"})
PY
}

# clear_agent_env: the caller's own agent settings must not leak into the
# agents a test starts.
clear_agent_env() {
  local v
  for v in $(compgen -e); do
    case $v in HOST2MQTT__* | HOST2MQTT_CONFIG | JOURNAL_STREAM | NOTIFY_SOCKET | WATCHDOG_*) unset "$v" ;; esac
  done
}
