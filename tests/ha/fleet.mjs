// Browser side of tests/ha/fleet.sh: loads the dashboard printed by
// `host2mqtt dashboard` into a real Home Assistant (websocket
// lovelace/dashboards/create + lovelace/config/save), renders it in Debian's
// chromium and counts the cards that failed (hui-error-card, hui-warning:
// an unknown card type, a bad option, an entity that does not exist);
// then HA's auto-generated Overview (hosts with an area show there) and a
// host's device page. Screenshots go to OUT_DIR.
//
//   node fleet.mjs ENV_FILE DASHBOARD_YAML DEVICE_ID OUT_DIR HOST_NAME...
//
// Prints one line per check, "ok ..." or "FAIL ...", and exits 1 on a failure.
import { readFileSync } from "node:fs";
import { openHa } from "./ha_browser.mjs";
import { load as loadYaml } from "js-yaml";

const [envFile, dashboardFile, deviceId, outDir, ...hostNames] = process.argv.slice(2);
const { url, browser, page, ready } = await openHa(envFile, outDir, { width: 1400, height: 1000 });
let failed = 0;
const report = (ok, what) => {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
  if (!ok) failed++;
};
try {
  const config = loadYaml(readFileSync(dashboardFile, "utf8"));
  const saved = await page.evaluate(async (config) => {
    const hass = document.querySelector("home-assistant").hass;
    const have = await hass.callWS({ type: "lovelace/dashboards/list" });
    if (!have.some((d) => d.url_path === "host2mqtt-fleet")) {
      await hass.callWS({
        type: "lovelace/dashboards/create", url_path: "host2mqtt-fleet", mode: "storage",
        title: "Fleet", icon: "mdi:server", show_in_sidebar: true, require_admin: false,
      });
    }
    await hass.callWS({ type: "lovelace/config/save", url_path: "host2mqtt-fleet", config });
    const back = await hass.callWS({ type: "lovelace/config", url_path: "host2mqtt-fleet" });
    return back.views[0].sections.length;
  }, config);
  report(saved === hostNames.length, `dashboard saved through the websocket API: ${saved} sections for ${hostNames.length} hosts`);

  const shoot = async (path, file, settle) => {
    await page.goto(url + path);
    await ready();
    await page.waitForTimeout(settle);
    await page.screenshot({ path: `${outDir}/${file}`, fullPage: true });
    console.log(`     ${outDir}/${file}: ${url}${path}`);
  };
  await shoot("/host2mqtt-fleet/hosts", "ha-fleet.png", 8000);
  // Locators pierce shadow roots: every card of the view is counted.
  const errors = await page.locator("hui-error-card").count();
  const warnings = await page.locator("hui-warning").count();
  const gauges = await page.locator("hui-gauge-card").count();
  const histories = await page.locator("hui-history-graph-card").count();
  const headings = await page.locator("hui-heading-card").count();
  const noHistory = await page.getByText("History integration disabled").count();
  report(noHistory === 0, `history graphs draw (${noHistory} "History integration disabled")`);
  const errorText = errors ? await page.locator("hui-error-card").first().innerText() : "";
  report(errors === 0 && warnings === 0, `fleet dashboard: ${errors} error cards, ${warnings} warnings ${errorText}`);
  report(
    headings === hostNames.length && histories === hostNames.length && gauges >= 3 * hostNames.length,
    `fleet dashboard: ${headings} headings, ${gauges} gauges, ${histories} history graphs`,
  );
  for (const name of hostNames) {
    const n = await page.getByText(name, { exact: true }).count();
    report(n > 0, `fleet dashboard shows host ${name}`);
  }

  // HA's default dashboard, generated from the areas (2026.11: a tile per
  // area; the area's page lists its devices' entities).
  await shoot("/lovelace/0", "ha-overview.png", 6000);
  const areaTile = page.getByText("Servers", { exact: true });
  report((await areaTile.count()) > 0, `auto-generated Overview has the area "Servers"`);
  await areaTile.first().click({ force: true }); // the tile container takes the click
  await page.waitForTimeout(5000);
  await page.screenshot({ path: `${outDir}/ha-overview-area.png`, fullPage: true });
  console.log(`     ${outDir}/ha-overview-area.png: ${page.url()}`);
  const cpuShown = await page.getByText(/CPU usage/).count();
  let namesShown = 0;
  for (const name of hostNames) namesShown += (await page.getByText(name, { exact: false }).count()) > 0 ? 1 : 0;
  report(cpuShown > 0 || namesShown === hostNames.length,
    `the area's page lists the hosts (${namesShown} of ${hostNames.length} names, ${cpuShown} "CPU usage")`);

  await shoot(`/config/devices/device/${deviceId}`, "ha-device.png", 5000);
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
