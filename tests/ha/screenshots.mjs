// Screenshots of a real Home Assistant for the README (tests/ha/screenshots.sh
// runs this): the example dashboard (config/homeassistant/dashboard.yaml),
// loaded as a storage dashboard, and a host's device page.
//
//   node screenshots.mjs ENV_FILE DASHBOARD_YAML DEVICE_ID OUT_DIR
//
// Needs playwright-core and js-yaml (npm) and Debian's chromium. HA's
// frontend is logged in by putting the harness's tokens into localStorage
// (`hassTokens`) before the page loads.
import { readFileSync } from "node:fs";
import { chromium } from "playwright-core";
import { load as loadYaml } from "js-yaml";

const [envFile, dashboardFile, deviceId, outDir] = process.argv.slice(2);
const env = Object.fromEntries(
  readFileSync(envFile, "utf8")
    .split("\n")
    .filter((l) => l.includes("=") && !l.startsWith("#"))
    .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
);
const url = env.HA_URL;

// A fresh access token from the harness's refresh token.
const form = new URLSearchParams({
  grant_type: "refresh_token",
  refresh_token: env.HA_REFRESH_TOKEN,
  client_id: env.HA_CLIENT_ID,
});
const tok = await (await fetch(`${url}/auth/token`, { method: "POST", body: form })).json();
if (!tok.access_token) throw new Error(`no access token: ${JSON.stringify(tok)}`);
const hassTokens = {
  hassUrl: url,
  clientId: env.HA_CLIENT_ID,
  access_token: tok.access_token,
  refresh_token: env.HA_REFRESH_TOKEN,
  expires_in: tok.expires_in,
  expires: Date.now() + tok.expires_in * 1000,
  token_type: "Bearer",
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
  ],
});
try {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 }, deviceScaleFactor: 1 });
  await ctx.addInitScript((t) => {
    window.localStorage.setItem("hassTokens", JSON.stringify(t));
    window.localStorage.setItem("selectedLanguage", JSON.stringify("en"));
  }, hassTokens);
  const page = await ctx.newPage();
  const ready = async () => {
    try {
      await page.waitForFunction(() => document.querySelector("home-assistant")?.hass?.connected === true, null, {
        timeout: 60000,
      });
    } catch (e) {
      await page.screenshot({ path: `${outDir}/not-ready.png` });
      throw new Error(`the frontend did not connect (at ${page.url()}; see ${outDir}/not-ready.png): ${e}`);
    }
  };
  await page.goto(url + "/");
  await ready();

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
