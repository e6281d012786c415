#!/usr/bin/env bash
# Takes the README's pictures from a real Home Assistant (the harness in
# tests/ha/harness): docs/ha-dashboard.png (config/homeassistant/dashboard.yaml
# with two hosts, `nas` and `vps`) and docs/ha-device.png (the device page
# of `nas`, with automations made from the blueprints). Not a test; run it
# by hand when the entities or the dashboard change:
#
#   tests/ha/screenshots.sh            # as root; writes docs/*.png
#
# Needs: apt-get install -y chromium pngquant optipng; node and npm (it
# installs playwright-core and js-yaml into a temporary directory).
# Env: HOST2MQTT_BIN (else target/release/host2mqtt), H2M_HA_DIR.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
TEST_NAME=screenshots
# shellcheck source=../lib.sh
source "$HERE/../lib.sh"
need_root
temp_dir WORK h2m-screenshots
MNT=""
umount_data() { if [ -n "$MNT" ]; then umount "$MNT"; [ "$MNT" != /mnt/data ] || rmdir "$MNT"; fi; }
on_exit umount_data
command -v chromium > /dev/null || { echo "no chromium: apt-get install -y chromium" >&2; exit 1; }
log "npm packages playwright-core js-yaml (cached in ${H2M_NODE_DIR:-/var/cache/host2mqtt/node})"
node_packages "$WORK/node" || fatal "npm install playwright-core js-yaml"
cp "$HERE/screenshots.mjs" "$HERE/ha_browser.mjs" "$WORK/node/"
cp "${HOST2MQTT_BIN:-$PROJECT/target/release/host2mqtt}" "$WORK/host2mqtt"
ha_up "$WORK"
# The harness onboards only the user; the frontend sends every page to the
# rest of the onboarding until it is done. Finish it through the API (its
# core_config step sets up met, radio_browser and friends, which fail
# without the internet: harmless here).
ha_finish_onboarding
PORT=$MQTT_PORT
B=(python3 "$HERE/blueprints_ha.py" --env "$HA_ENV")
"${B[@]}" promote-http > /dev/null
"${B[@]}" install "$PROJECT/config/homeassistant/blueprints/automation/host2mqtt" > /dev/null

# nas: a second disk (a tmpfs at /mnt/data, made for the picture, half full) and container
# updates from the captured podman output; vps: the plain agent.
DATA=/mnt/data
[ -e "$DATA" ] && DATA=$WORK/data
mkdir -p "$DATA"
mount -t tmpfs -o size=64m h2m-screenshots "$DATA" && MNT=$DATA
dd if=/dev/zero of="$DATA/fill" bs=1M count=29 status=none
cp "$PROJECT/tests/fixtures/autoupdate/4.3.1-pending.json" "$WORK/autoupdate.json"
echo "" > "$WORK/empty.toml"
agent() {
  env -i PATH="$PATH" HOST2MQTT__INTERVAL=5s HOST2MQTT__MQTT__HOST=127.0.0.1 HOST2MQTT__MQTT__PORT="$PORT" \
    HOST2MQTT__SYSTEMD__SYSTEM__ENABLED=false "$@" "$WORK/host2mqtt" --config "$WORK/empty.toml" run \
    >> "$WORK/agents.log" 2>&1 &
  track $!
}
agent HOST2MQTT__NODE_ID=nas HOST2MQTT__DEVICE_NAME=nas \
  HOST2MQTT__COLLECTORS__DISK__MOUNT_POINTS_INCLUDE="/,$DATA" HOST2MQTT__COLLECTORS__DISK__FS_TYPES_EXCLUDE="" \
  HOST2MQTT__CONTAINERS__UPDATES__SOURCE=file HOST2MQTT__CONTAINERS__UPDATES__FILE="$WORK/autoupdate.json" \
  HOST2MQTT__CONTAINERS__UPDATES__FIRST_CHECK_AFTER=1s
agent HOST2MQTT__NODE_ID=vps HOST2MQTT__DEVICE_NAME=vps HOST2MQTT__CONTAINERS__ENABLED=false
NAS=$("${B[@]}" device nas)
VPS=$("${B[@]}" device vps)
log "devices: nas $NAS, vps $VPS"
# Automations from the blueprints, so the device page lists them.
"${B[@]}" create host_offline host2mqtt/host_offline.yaml "{\"hosts\":[\"$NAS\",\"$VPS\"]}" --alias "Hosts not reporting" > /dev/null
"${B[@]}" create disk_filling host2mqtt/disk_filling.yaml "{\"hosts\":[\"$NAS\",\"$VPS\"]}" --alias "Disk filling up" > /dev/null
"${B[@]}" create cpu_memory host2mqtt/cpu_memory_pressure.yaml "{\"hosts\":[\"$NAS\",\"$VPS\"]}" --alias "CPU or memory pressure" > /dev/null
sleep 15 # a few cycles: rates and loads have values

log "chromium: dashboard and device page"
mkdir -p "$PROJECT/docs"
node "$WORK/node/screenshots.mjs" "$HA_ENV" "$PROJECT/config/homeassistant/dashboard.yaml" "$NAS" "$WORK" \
  || { cp "$WORK"/*.png /tmp/ 2> /dev/null; exit 1; }
for f in ha-dashboard.png ha-device.png; do
  pngquant --force --quality 70-90 --speed 1 --output "$PROJECT/docs/$f" "$WORK/$f"
  optipng -quiet -o2 "$PROJECT/docs/$f"
  log "docs/$f: $(stat -c %s "$PROJECT/docs/$f") bytes"
done
