// Shared by the browser checks (fleet.mjs, screenshots.mjs): Debian's
// chromium logged in to the harness's Home Assistant. HA's frontend is
// logged in by putting the harness's tokens into localStorage
// (`hassTokens`) before the page loads.
import { readFileSync } from "node:fs";
import { chromium } from "playwright-core";

// The harness's ha.env as an object.
export function loadEnv(envFile) {
  return Object.fromEntries(
    readFileSync(envFile, "utf8")
      .split("\n")
      .filter((l) => l.includes("=") && !l.startsWith("#"))
      .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  );
}

// Opens HA's front page logged in, and waits until the frontend is
// connected. Returns { env, url, browser, page, ready }; `ready()` waits
// again after a navigation (a screenshot of the page in outDir when not).
export async function openHa(envFile, outDir, viewport) {
  const env = loadEnv(envFile);
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
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run",
    ],
  });
  const ctx = await browser.newContext({ viewport, deviceScaleFactor: 1 });
  await ctx.addInitScript((t) => {
    window.localStorage.setItem("hassTokens", JSON.stringify(t));
    window.localStorage.setItem("selectedLanguage", JSON.stringify("en"));
  }, hassTokens);
  const page = await ctx.newPage();
  const ready = async () => {
    try {
      await page.waitForFunction(() => document.querySelector("home-assistant")?.hass?.connected === true, null, {
        timeout: 90000,
      });
    } catch (e) {
      await page.screenshot({ path: `${outDir}/not-ready.png` });
      throw new Error(`the frontend did not connect (at ${page.url()}; see ${outDir}/not-ready.png): ${e}`);
    }
  };
  try {
    await page.goto(url + "/");
    await ready();
  } catch (e) {
    await browser.close();
    throw e;
  }
  return { env, url, browser, page, ready };
}
