#!/usr/bin/env bash
# Several hosts in a REAL Home Assistant (the harness in tests/ha/harness),
# as a user with a fleet sees them:
#
#   * three agents with `area = "Servers"`: each device lands in the area
#     HA made from the discovery's suggested_area;
#   * `host2mqtt dashboard` finds the three hosts from the retained
#     discovery and prints a dashboard; saved into HA through the websocket
#     API and read back, one section a host, every entity its cards name
#     has a state, history/recorder loaded for its history graphs;
#   * in Debian's chromium (playwright-core): the dashboard renders without
#     one failed card, the auto-generated Overview shows the area and the
#     hosts; screenshots docs/ha-fleet.png, docs/ha-overview.png,
#     docs/ha-overview-area.png, docs/ha-device.png.
#
#   tests/ha/fleet.sh            # as root; about 1.5-2.5 minutes
#
# The browser part needs chromium (tests/run installs it), node and npm
# (playwright-core and js-yaml: lib.sh's node_packages, cached outside the
# clone). It is an OPTIONAL extra: without them it is reported as not run,
# and counted neither as a skip nor as a failure (the websocket checks
# above stand for "the dashboard loads"). FLEET_BROWSER=0 leaves it out.
# Env: HOST2MQTT_BIN (else `cargo build --release`), H2M_HA_DIR, HA_PORT,
#      MQTT_PORT, H2M_NODE_DIR, NO_DOCS=1 (no copy of the pictures to docs/).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TEST_NAME=fleet
# shellcheck source=../lib.sh
source "$HERE/../lib.sh"
PIDS=()
stop_agents() { ((${#PIDS[@]})) && stop_pid "${PIDS[@]}"; }
need_root "must run as root (the harness needs root)"
temp_dir WORK h2m-fleet
on_exit stop_agents
log "work dir $WORK"
h2m_binary "$WORK"

BROWSER=0
BROWSER_WHY=""
if [ "${FLEET_BROWSER:-1}" = 0 ]; then
  BROWSER_WHY="FLEET_BROWSER=0"
elif ! command -v chromium > /dev/null; then
  BROWSER_WHY="no chromium (apt-get install -y chromium)"
elif ! command -v node > /dev/null; then
  BROWSER_WHY="no node"
else
  log "npm packages playwright-core js-yaml (cached in ${H2M_NODE_DIR:-/var/cache/host2mqtt/node})"
  if node_packages "$WORK/node"; then
    cp "$HERE/fleet.mjs" "$HERE/ha_browser.mjs" "$WORK/node/"
    BROWSER=1
  else
    BROWSER_WHY="npm install playwright-core js-yaml failed"
  fi
fi

# The harness runs HA without default_config, so without recorder and
# history, which the dashboard's history graphs need (every usual install
# has them).
export HA_EXTRA_CONFIG=$'recorder:\n  commit_interval: 1\nhistory:'
ha_up "$WORK"
# The frontend sends every page to the rest of the onboarding until it is
# done; finish it through the API (as tests/ha/screenshots.sh does).
ha_finish_onboarding || fatal "onboarding"
B=(env PYTHONDONTWRITEBYTECODE=1 python3 "$HERE/blueprints_ha.py" --env "$HA_ENV")
X=(env PYTHONDONTWRITEBYTECODE=1 python3 "$HERE/experience_ha.py" --env "$HA_ENV")
"${B[@]}" promote-http > /dev/null
"${B[@]}" install "$PROJECT/config/homeassistant/blueprints/automation/host2mqtt" > /dev/null

clear_agent_env
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
# HA's own YAML loader (the chroot's PyYAML) reads the dashboard: the host
# needs no YAML module.
yaml_to_json() {
  "$HA_HARNESS" chroot --bind "$WORK:/h2m-fleet" -- python -c \
    'import json, yaml; json.dump(yaml.safe_load(open("/h2m-fleet/fleet.yaml")), open("/h2m-fleet/fleet.json", "w"))'
}
check "the dashboard's YAML parses (HA's PyYAML)" yaml_to_json
check "the dashboard saved and read back through the websocket API; its cards' entities and integrations there" \
  "${X[@]}" dashboard "$WORK/fleet.json" "${HOSTS[@]}"
if ((BROWSER)); then
  log "chromium: the fleet dashboard, the Overview, nas's device page"
  check "the fleet dashboard rendered in chromium" node "$WORK/node/fleet.mjs" "$HA_ENV" "$WORK/fleet.yaml" "${DEV[nas]}" "$WORK" "${HOSTS[@]}"
else
  echo "  --    OPTIONAL extra not run (counted neither as a skip nor as a failure): the browser check and screenshots: $BROWSER_WHY"
fi
check "HA's log: no error from MQTT, templates or the dashboard" "${B[@]}" log "$HA_LOG" --offset 0 \
  --node nas --node web --node vps

if ((BROWSER)) && [ "${NO_DOCS:-0}" != 1 ]; then
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
