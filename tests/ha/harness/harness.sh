#!/usr/bin/env bash
# A real Home Assistant (2026.11, MQTT integration) and a private Mosquitto,
# for the checks in tests/ha/. Runs as root on Debian; HA needs Python
# >= 3.14.2, so it runs in a chroot of Debian forky made by debootstrap.
#
#   harness.sh setup     install once into $H2M_HA_DIR (idempotent; minutes the first time)
#   harness.sh start     Mosquitto + HA with a fresh config: onboarding, a long-lived
#                        token, the MQTT entry; returns once HA's birth message is seen
#   harness.sh stop      stop what start started (by the PIDs it recorded)
#   harness.sh status    running or not (exit 1 when not)
#   harness.sh probe ARGS...          ha_harness.py against the running HA
#                                     (states, device NAME, devices, wait ENTITY STATE, ws TYPE)
#   harness.sh log [N]   the MQTT lines of HA's log
#   harness.sh chroot [--bind HOST:PATH]... -- CMD...   run CMD in the chroot
#
# Environment:
#   H2M_HA_DIR     the install cache (chroot + venv, ~2 GB)   default /var/cache/host2mqtt/ha
#   HA_PORT        HA's HTTP port on 127.0.0.1                default 18123
#   MQTT_PORT      the broker's port on 127.0.0.1             default 18833
#   H2M_HA_STATE   config, logs, PIDs and ha.env of one running harness
#                  default /run/host2mqtt-ha/$HA_PORT (so two harnesses on
#                  other ports can run at once)
#   HA_VERSION     pip's version spec                         default 2026.11.*
#   HA_SUITE / HA_MIRROR   the chroot's Debian                default forky / http://deb.debian.org/debian
#   DISCOVERY_PREFIX (homeassistant), HA_LOG_LEVEL (info), MQTT_LOG_LEVEL (info)
#   HA_EXTRA_CONFIG  YAML appended to configuration.yaml at start: the text
#                  itself, or @FILE for a file's content (e.g. "recorder:" and
#                  "history:", which the minimal config leaves out)
#
# After start, $H2M_HA_STATE/ha.env holds HA_URL, HA_WS_URL, HA_TOKEN,
# MQTT_HOST, MQTT_PORT, DISCOVERY_PREFIX, HA_VERSION, HA_PID, MOSQUITTO_PID,
# HA_CONFIG, HA_LOG and the start's timings (T_HTTP_S, T_RUNNING_S, T_MQTT_READY_S).
set -euo pipefail
HARNESS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TEST_NAME=ha-harness
# shellcheck source=../../lib.sh
source "$HARNESS/../../lib.sh"
# Not a test: no summary. The cleanups still run (a failed start stops what it began).
trap 'lib_cleanup' EXIT

DIR=$(realpath -m "${H2M_HA_DIR:-/var/cache/host2mqtt/ha}")
ROOT=$DIR/root
VENV=/opt/ha
HA_PORT=${HA_PORT:-18123}
MQTT_PORT=${MQTT_PORT:-18833}
STATE=$(realpath -m "${H2M_HA_STATE:-/run/host2mqtt-ha/$HA_PORT}")
HA_VERSION=${HA_VERSION:-2026.11.*}
SUITE=${HA_SUITE:-forky}
MIRROR=${HA_MIRROR:-http://deb.debian.org/debian}
PREFIX=${DISCOVERY_PREFIX:-homeassistant}
PY=(python3 "$HARNESS/ha_harness.py")

# in_chroot [--bind HOST:PATH]... -- CMD...: exec CMD in the chroot, in a
# private mount namespace (its /proc, /dev, /sys and binds vanish with it, so
# nothing stays mounted on the host). exec all the way: the caller's PID
# becomes CMD's.
in_chroot() {
  local binds=()
  while (($#)); do
    case $1 in
      --bind) binds+=("$2"); shift 2 ;;
      --) shift; break ;;
      *) break ;;
    esac
  done
  [ -x "$ROOT/usr/bin/env" ] || { echo "no chroot at $ROOT: run $0 setup" >&2; exit 1; }
  exec unshare --mount --propagation private bash -ec '
root=$1; binds=$2; shift 2
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount --rbind /sys "$root/sys"
for b in $binds; do mkdir -p "$root${b#*:}"; mount --bind "${b%%:*}" "$root${b#*:}"; done
exec chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TZ=UTC \
  PATH='"$VENV"'/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
  PIP_DISABLE_PIP_VERSION_CHECK=1 "$@"' in-chroot "$ROOT" "${binds[*]:-}" "$@"
}

# The host's CA bundle holds the egress proxy's CA that PyPI traffic needs;
# HA's own runtime installs (uv) use it too. Refreshed on every setup/start.
refresh_chroot_files() {
  cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/.ca.new"
  mv "$ROOT/etc/ssl/certs/.ca.new" "$ROOT/etc/ssl/certs/ca-certificates.crt"
  cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
}

ha_config() { # ha_config PORT LOG_LEVEL: a minimal configuration.yaml (no default_config)
  cat <<EOF
homeassistant:
  name: host2mqtt-test
  unit_system: metric
  time_zone: UTC
  latitude: 0
  longitude: 0
  elevation: 0
  country: DE
  currency: EUR
  language: en
http:
  server_host: 127.0.0.1
  server_port: $1
logger:
  default: $2
  logs:
    homeassistant.components.mqtt: ${MQTT_LOG_LEVEL:-info}
EOF
}

setup() {
  mkdir -p "$DIR"
  exec 9>"$DIR/.setup.lock"
  flock 9 # one setup at a time per cache
  local t
  for pc in debootstrap:debootstrap mosquitto:mosquitto mosquitto_pub:mosquitto-clients unshare:util-linux; do
    command -v "${pc%%:*}" >/dev/null || [ -x "/usr/sbin/${pc%%:*}" ] || {
      log "apt-get install ${pc#*:}"
      apt_install "${pc#*:}"
    }
  done

  if [ ! -f "$ROOT/.h2m-debootstrap" ]; then
    log "debootstrap $SUITE into $ROOT (log: $DIR/debootstrap.log)"
    t=$EPOCHREALTIME
    rm -rf "$ROOT"
    local script=/usr/share/debootstrap/scripts/$SUITE
    # Bookworm's debootstrap knows no forky: testing bootstraps like sid.
    [ -e "$script" ] || script=/usr/share/debootstrap/scripts/sid
    debootstrap --variant=minbase \
      --include=python3,python3-venv,python3-dev,g++,ca-certificates,libturbojpeg0 \
      "$SUITE" "$ROOT" "$MIRROR" "$script" >"$DIR/debootstrap.log" 2>&1 || {
      tail -n 20 "$DIR/debootstrap.log"
      return 1
    }
    # A testing mirror snapshot can be past its Release file's Valid-Until.
    echo 'Acquire::Check-Valid-Until "false";' >"$ROOT/etc/apt/apt.conf.d/99h2m-no-valid-until"
    touch "$ROOT/.h2m-debootstrap"
    log "debootstrap took $(elapsed "$t")s"
  fi
  refresh_chroot_files
  local pyver
  pyver=$( (in_chroot -- python3 -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])'))
  if ! printf '3.14.2\n%s\n' "$pyver" | sort -V -C; then
    echo "the chroot's Python is $pyver; Home Assistant 2026.11 needs >= 3.14.2 (HA_SUITE=$SUITE)" >&2
    return 1
  fi

  if [ "$(cat "$ROOT$VENV/.h2m-version" 2>/dev/null)" != "$HA_VERSION" ]; then
    log "pip install homeassistant==$HA_VERSION paho-mqtt (Python $pyver; log: $DIR/pip.log)"
    t=$EPOCHREALTIME
    # paho-mqtt is what the MQTT integration's manifest requires (2.1.0 in 2026.11).
    (in_chroot -- sh -ec "
      [ -x $VENV/bin/python ] || python3 -m venv $VENV
      $VENV/bin/pip install -q --upgrade pip
      $VENV/bin/pip install -q 'homeassistant==$HA_VERSION'
      # (read from the manifest: importing the integration would need them already)
      req=\$($VENV/bin/python -c 'import json, pathlib, homeassistant.components as c; print(\" \".join(json.loads((pathlib.Path(c.__path__[0]) / \"mqtt\" / \"manifest.json\").read_text())[\"requirements\"]))')
      echo \"the mqtt integration requires: \$req\"
      $VENV/bin/pip install -q \$req
    ") >"$DIR/pip.log" 2>&1 || {
      tail -n 30 "$DIR/pip.log"
      return 1
    }
    echo "$HA_VERSION" >"$ROOT$VENV/.h2m-version"
    rm -f "$ROOT$VENV/.h2m-warmed-up"
    log "pip install took $(elapsed "$t")s"
  fi

  if [ ! -f "$ROOT$VENV/.h2m-warmed-up" ]; then
    # HA installs the requirements of the integrations it always loads
    # (frontend, assist_pipeline, ...) at its first start; after this one,
    # starts need no network.
    log "warm-up start of HA (installs its runtime requirements; log: $DIR/warmup.log)"
    t=$EPOCHREALTIME
    local w=$DIR/warmup-config port pid
    port=$(free_port)
    rm -rf "$w"
    mkdir -p "$w"
    ha_config "$port" info >"$w/configuration.yaml"
    (in_chroot --bind "$w:/config" -- hass -c /config) >"$DIR/warmup.log" 2>&1 </dev/null &
    pid=$!
    track "$pid"
    warmed() { grep -q "Starting Home Assistant" "$DIR/warmup.log" || ! alive "$pid"; }
    wait_until 1200 warmed || true
    STOP_GRACE_S=60 stop_pid "$pid"
    grep -E "Attempting install of|Unable to install|Setup failed" "$DIR/warmup.log" | cut -c1-200 | indent || true
    grep -q "Starting Home Assistant" "$DIR/warmup.log" || {
      log "the warm-up start failed"
      tail -n 20 "$DIR/warmup.log"
      return 1
    }
    touch "$ROOT$VENV/.h2m-warmed-up"
    log "warm-up took $(elapsed "$t")s"
  fi
  log "Home Assistant $( (in_chroot -- python -c 'from homeassistant.const import __version__; print(__version__)')) installed in $DIR"
}

running() { # running NAME: its recorded PID runs NAME
  local f=$STATE/$1.pid
  [ -f "$f" ] && alive "$(cat "$f")" && grep -q "$1" "/proc/$(cat "$f")/cmdline" 2>/dev/null
}

status() {
  local p rc=1
  for p in hass mosquitto; do
    if running "$p"; then
      echo "$p running (pid $(cat "$STATE/$p.pid"))"
      rc=0
    fi
  done
  ((rc)) && echo "not running (state $STATE)"
  return $rc
}

stop() {
  local p pid
  for p in hass mosquitto; do
    if running "$p"; then
      pid=$(cat "$STATE/$p.pid")
      log "stopping $p (pid $pid)"
      # HA saves its state on SIGTERM (about 2 s); stop_pid waits only for children.
      kill -TERM "$pid"
      wait_until 60 eval "! alive $pid" || kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$STATE/$p.pid"
  done
}

start() {
  [ -f "$ROOT$VENV/.h2m-warmed-up" ] || { echo "not installed in $DIR: run $0 setup" >&2; return 1; }
  if status >/dev/null; then
    echo "already running (state $STATE): $0 stop first" >&2
    return 1
  fi
  local port
  for port in "$HA_PORT" "$MQTT_PORT"; do
    if port_open "$port"; then echo "port $port is in use (set HA_PORT/MQTT_PORT)" >&2; return 1; fi
  done
  rm -rf "$STATE/config" "$STATE/ha.env"
  mkdir -p "$STATE/config"
  chmod 700 "$STATE"
  refresh_chroot_files

  start_broker "$STATE" "$MQTT_PORT" || { echo "mosquitto did not start" >&2; return 1; }
  log "mosquitto pid $BROKER_PID on 127.0.0.1:$MQTT_PORT"

  ha_config "$HA_PORT" "${HA_LOG_LEVEL:-info}" >"$STATE/config/configuration.yaml"
  case ${HA_EXTRA_CONFIG:-} in
    "") ;;
    @*) cat "${HA_EXTRA_CONFIG#@}" >>"$STATE/config/configuration.yaml" || return 1 ;;
    *) printf '%s\n' "$HA_EXTRA_CONFIG" >>"$STATE/config/configuration.yaml" ;;
  esac
  # HA's birth message (homeassistant/status = online) comes once its
  # discovery subscriptions are in place, after its 5 s discovery cooldown:
  # then a publisher's discovery is seen.
  mosquitto_sub -h 127.0.0.1 -p "$MQTT_PORT" -i "h2m-harness-birth-$HA_PORT" -t "$PREFIX/status" -C 1 -W 600 \
    >"$STATE/birth.out" 2>&1 </dev/null &
  local sub=$! t0=$EPOCHREALTIME
  track "$sub"
  (in_chroot --bind "$STATE/config:/config" -- hass -c /config) >"$STATE/hass.out" 2>&1 </dev/null &
  local hpid=$!
  track "$hpid"
  echo "$hpid" >"$STATE/hass.pid"
  log "hass pid $hpid on 127.0.0.1:$HA_PORT, log $STATE/config/home-assistant.log"

  local url=http://127.0.0.1:$HA_PORT t_http t_run ver onb
  t_http=$("${PY[@]}" wait-http --url "$url" --timeout 600) || { tail -n 20 "$STATE/hass.out"; return 1; }
  onb=$("${PY[@]}" onboard --url "$url") || return 1
  local token
  token=$(sed -n 's/^HA_TOKEN=//p' <<<"$onb")
  read -r t_run ver < <("${PY[@]}" wait-running --url "$url" --token "$token" --timeout 600) || return 1
  log "HA $ver running $(elapsed "$t0")s after launch; adding the MQTT entry"
  local entry
  entry=$("${PY[@]}" add-mqtt --url "$url" --token "$token" --port "$MQTT_PORT" --prefix "$PREFIX") || return 1
  wait "$sub" || { echo "no birth message on $PREFIX/status" >&2; return 1; }
  local t_ready rss
  t_ready=$(elapsed "$t0")
  rss=$(awk '/VmRSS/ { print $2 }' "/proc/$hpid/status")
  {
    echo "HA_URL=$url"
    echo "HA_WS_URL=ws://127.0.0.1:$HA_PORT/api/websocket"
    printf '%s\n' "$onb" "$entry"
    echo "MQTT_HOST=127.0.0.1"
    echo "MQTT_PORT=$MQTT_PORT"
    echo "DISCOVERY_PREFIX=$PREFIX"
    echo "HA_VERSION=$ver"
    echo "HA_PID=$hpid"
    echo "MOSQUITTO_PID=$BROKER_PID"
    echo "HA_CONFIG=$STATE/config"
    echo "HA_LOG=$STATE/config/home-assistant.log"
    echo "MOSQUITTO_LOG=$STATE/mosquitto.log"
    echo "T_HTTP_S=$t_http"
    echo "T_RUNNING_S=$t_run"
    echo "T_MQTT_READY_S=$t_ready"
    echo "HA_RSS_KB_AT_READY=$rss"
  } >"$STATE/ha.env.new"
  chmod 600 "$STATE/ha.env.new"
  mv "$STATE/ha.env.new" "$STATE/ha.env"
  TRACKED=() # from here on they outlive this script; `stop` ends them
  log "MQTT ready $t_ready s after launch (birth: $(cat "$STATE/birth.out")); HA RSS $((rss / 1024)) MiB; env $STATE/ha.env"
}

case ${1:-} in
  setup) setup ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) echo "$STATE/ha.env" ;;
  probe) shift; exec "${PY[@]}" --env "$STATE/ha.env" "$@" ;;
  log)
    grep -E '\[homeassistant\.components\.mqtt|\[homeassistant\.components\.[a-z_]+\.mqtt\]|Error (while )?(setting up|adding) .*mqtt' \
      "$STATE/config/home-assistant.log" | tail -n "${2:-50}"
    ;;
  chroot) shift; in_chroot "$@" ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 2
    ;;
esac
