#!/usr/bin/env bash
# Several hosts in a REAL Home Assistant (the harness in ../shared/ha), as a
# user with a fleet sees them:
#
#   * three agents with `area = "Servers"`: each device lands in the area
#     HA made from the discovery's suggested_area, and HA's auto-generated
#     Overview shows the area and the hosts' entities;
#   * `host2mqtt dashboard` finds the three hosts from the retained
#     discovery and prints a dashboard; saved into HA through the websocket
#     API, it renders without one failed card (Debian's chromium);
#   * screenshots: docs/ha-fleet.png, docs/ha-overview.png (and the area's
#     page, ha-overview-area.png), docs/ha-device.png.
#
#   tests/ha/fleet.sh            # as root
#
# Needs chromium (apt-get install -y chromium; pngquant optipng to shrink
# the pictures), node and npm (playwright-core and js-yaml are installed
# into a temporary directory). Absent harness or chromium: SKIP.
# Env: HOST2MQTT_BIN (else target/debug/host2mqtt), HA_HARNESS,
#      HA_HARNESS_DIR, HA_STATE_DIR, HA_PORT, MQTT_PORT, NO_DOCS=1 (no copy to docs/).
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
PROJECT=$(cd "$HERE/../.." && pwd)
HARNESS=${HA_HARNESS:-$PROJECT/../shared/ha}
[ -f "$HARNESS/start.sh" ] || { echo "SKIP: no Home Assistant harness at $(realpath -m "$HARNESS")"; exit 0; }
command -v chromium > /dev/null || { echo "SKIP: no chromium (apt-get install -y chromium)"; exit 0; }
HARNESS=$(cd "$HARNESS" && pwd)
STATE=$(realpath -m "${HA_STATE_DIR:-${HA_HARNESS_DIR:-/tmp/ha}/run}")
export HA_ENV=$STATE/ha.env
WORK=$(mktemp -d /tmp/h2m-fleet.XXXXXX)
T_START=$EPOCHREALTIME
PASS=0 FAIL=0
FAILED=()
PIDS=()
STARTED_HARNESS=0
log() { printf '[fleet %6.1fs] %s\n' "$(awk -v a="$T_START" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')" "$*"; }
indent() { sed 's/^/       /'; }
envval() { sed -n "s/^$1=//p" "$HA_ENV" | tail -n 1; }
cleanup() {
  local rc=$? p
  trap - EXIT INT TERM
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2> /dev/null; wait "$p" 2> /dev/null; done
  ((STARTED_HARNESS)) && "$HARNESS/stop.sh" > /dev/null 2>&1
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
check() {
  local name=$1 out rc
  shift
  out=$("$@" 2>&1)
  rc=$?
  if ((rc == 0)); then PASS=$((PASS + 1)); echo "  ok   $name"; else FAIL=$((FAIL + 1)); FAILED+=("$name"); echo "  FAIL $name"; fi
  [ -n "$out" ] && printf '%s\n' "$out" | indent
  return $rc
}
fatal() { echo "  FAIL $1"; [ -n "${2:-}" ] && printf '%s\n' "$2" | indent; echo "$PASS passed, $((FAIL + 1)) failed"; exit 1; }

[ "$(id -u)" = 0 ] || { echo "must run as root (the harness needs root)"; exit 1; }
BIN=${HOST2MQTT_BIN:-$PROJECT/target/debug/host2mqtt}
[ -n "${HOST2MQTT_BIN:-}" ] || (cd "$PROJECT" && cargo build --quiet) || fatal "cargo build"
log "npm install playwright-core js-yaml"
mkdir -p "$WORK/node"
(cd "$WORK/node" && npm init -y > /dev/null && npm install --no-audit --no-fund --silent playwright-core js-yaml > /dev/null) \
  || fatal "npm install playwright-core js-yaml"
cp "$HERE/fleet.mjs" "$WORK/node/"

"$HARNESS/setup.sh" > "$WORK/setup.log" 2>&1 || fatal "harness setup.sh" "$(tail -n 20 "$WORK/setup.log")"
STARTED_HARNESS=1
# The harness runs HA without default_config, so without recorder and
# history, which the dashboard's history graphs need (every usual install
# has them). start.sh has no hook for more YAML; its last line is the MQTT
# log level, so the two keys ride on it. (Give the in-project harness an
# EXTRA_CONFIG hook and use it here.)
MQTT_LOG_LEVEL=$'info\nrecorder:\n  commit_interval: 1\nhistory:' \
"$HARNESS/start.sh" > "$WORK/start.log" 2>&1 || fatal "harness start.sh" "$(tail -n 30 "$WORK/start.log")"
log "HA $(envval HA_VERSION) ready"
# The frontend sends every page to the rest of the onboarding until it is
# done; finish it through the API (as tests/ha/screenshots.sh does).
python3 - "$HARNESS" "$HA_ENV" << 'EOF' || fatal "onboarding"
import sys
sys.path.insert(0, sys.argv[1])
import ha_harness as H
env = H.load_env(sys.argv[2])
ha = H.HA(env["HA_URL"], env["HA_TOKEN"])
ha.call("POST", "/api/onboarding/core_config", data={})
ha.call("POST", "/api/onboarding/analytics", data={})
tok = ha.call("POST", "/auth/token", auth=False, form={
    "grant_type": "refresh_token", "refresh_token": env["HA_REFRESH_TOKEN"], "client_id": env["HA_CLIENT_ID"]})
ha.token = tok["access_token"]
ha.call("POST", "/api/onboarding/integration",
        data={"client_id": env["HA_CLIENT_ID"], "redirect_uri": env["HA_CLIENT_ID"] + "?auth_callback=1"})
EOF
B=(env PYTHONDONTWRITEBYTECODE=1 python3 "$HERE/blueprints_ha.py" --harness "$HARNESS" --env "$HA_ENV")
X=(env PYTHONDONTWRITEBYTECODE=1 python3 "$HERE/experience_ha.py" --harness "$HARNESS" --env "$HA_ENV")
"${B[@]}" promote-http > /dev/null
"${B[@]}" install "$PROJECT/config/homeassistant/blueprints/automation/host2mqtt" > /dev/null
MQTT_PORT=$(envval MQTT_PORT)

for v in $(compgen -e); do
  case $v in HOST2MQTT__* | HOST2MQTT_CONFIG | JOURNAL_STREAM | NOTIFY_SOCKET | WATCHDOG_*) unset "$v" ;; esac
done
# Only /: the other mounts of a shared test machine make noise in the pictures.
printf 'area = "Servers"\ninterval = "5s"\n[mqtt]\nhost = "127.0.0.1"\nport = %s\n[collectors.disk]\nmount_points_include = ["/"]\n[containers]\nenabled = false\n[systemd.system]\nenabled = false\n' \
  "$MQTT_PORT" > "$WORK/h.toml"
HOSTS=(nas web vps)
for n in "${HOSTS[@]}"; do
  env HOST2MQTT__NODE_ID="$n" HOST2MQTT__DEVICE_NAME="$n" "$BIN" --config "$WORK/h.toml" run >> "$WORK/$n.log" 2>&1 &
  PIDS+=($!)
done
declare -A DEV=()
for n in "${HOSTS[@]}"; do
  DEV[$n]=$("${B[@]}" device "$n" --timeout 30 2>&1) || fatal "device $n" "${DEV[$n]}"
  check "$n is in the area \"Servers\" (suggested_area)" "${X[@]}" area "$n" Servers
done
"${B[@]}" create offline host2mqtt/host_offline.yaml \
  "{\"hosts\":[\"${DEV[nas]}\",\"${DEV[web]}\",\"${DEV[vps]}\"],\"interval\":5}" --alias "Hosts not reporting" > /dev/null
"${B[@]}" create disk host2mqtt/disk_filling.yaml "{\"hosts\":[\"${DEV[nas]}\"]}" --alias "Disk filling up" > /dev/null
check "Related on nas's device page lists its automations" "${X[@]}" related "${DEV[nas]}" disk
sleep 20 # a few cycles: rates, loads and the history have values

check "host2mqtt dashboard finds the 3 hosts in the retained discovery" \
  bash -c "'$BIN' --config '$WORK/h.toml' dashboard --wait 3s > '$WORK/fleet.yaml' 2> '$WORK/dashboard.err'; rc=\$?; cat '$WORK/dashboard.err'; [ \$rc = 0 ] && grep -q 'hosts: nas, vps, web' '$WORK/dashboard.err'"
log "chromium: the fleet dashboard, the Overview, nas's device page"
check "the fleet dashboard in the real HA" node "$WORK/node/fleet.mjs" "$HA_ENV" "$WORK/fleet.yaml" "${DEV[nas]}" "$WORK" "${HOSTS[@]}"
check "HA's log: no error from MQTT, templates or the dashboard" "${B[@]}" log "$(envval HA_LOG)" --offset 0 \
  --node nas --node web --node vps

if [ "${NO_DOCS:-0}" != 1 ]; then
  mkdir -p "$PROJECT/docs"
  for f in ha-fleet.png ha-overview.png ha-overview-area.png ha-device.png; do
    [ -f "$WORK/$f" ] || continue
    if command -v pngquant > /dev/null; then
      pngquant --force --quality 70-90 --speed 1 --output "$PROJECT/docs/$f" "$WORK/$f"
      command -v optipng > /dev/null && optipng -quiet -o2 "$PROJECT/docs/$f"
    else
      cp "$WORK/$f" "$PROJECT/docs/$f"
    fi
    log "docs/$f: $(stat -c %s "$PROJECT/docs/$f") bytes"
  done
fi
echo "$PASS passed, $FAIL failed"
((FAIL == 0))
