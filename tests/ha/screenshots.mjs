// Screenshots of a real Home Assistant for the README (tests/ha/screenshots.sh
// runs this): the example dashboard (config/homeassistant/dashboard.yaml),
// loaded as a storage dashboard, and a host's device page.
//
//   node screenshots.mjs ENV_FILE DASHBOARD_YAML DEVICE_ID OUT_DIR
//
// Needs playwright-core and js-yaml (npm) and Debian's chromium; the login
// is ha_browser.mjs's.
import { readFileSync } from "node:fs";
import { openHa } from "./ha_browser.mjs";
import { load as loadYaml } from "js-yaml";

const [envFile, dashboardFile, deviceId, outDir] = process.argv.slice(2);
const { url, browser, page, ready } = await openHa(envFile, outDir, { width: 1280, height: 900 });
try {
  // The example dashboard, as a storage dashboard.
  const config = loadYaml(readFileSync(dashboardFile, "utf8"));
  await page.evaluate(async (config) => {
    const hass = document.querySelector("home-assistant").hass;
    const have = await hass.callWS({ type: "lovelace/dashboards/list" });
    if (!have.some((d) => d.url_path === "host2mqtt-hosts")) {
      await hass.callWS({
        type: "lovelace/dashboards/create", url_path: "host2mqtt-hosts", mode: "storage",
        title: "Hosts", icon: "mdi:server", show_in_sidebar: true, require_admin: false,
      });
    }
    await hass.callWS({ type: "lovelace/config/save", url_path: "host2mqtt-hosts", config });
  }, config);

  const shoot = async (path, file, settle) => {
    await page.goto(url + path);
    await ready();
    await page.waitForTimeout(settle);
    await page.screenshot({ path: `${outDir}/${file}` });
    console.log(`${outDir}/${file}: ${url}${path}`);
  };
  await shoot("/host2mqtt-hosts/hosts", "ha-dashboard.png", 5000);
  await shoot(`/config/devices/device/${deviceId}`, "ha-device.png", 5000);
} finally {
  await browser.close();
}
