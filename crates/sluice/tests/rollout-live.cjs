// Watches a rollout's page in headless Chromium while the rollout runs: records each change
// of the shown weight (with the browser's clock) across the page's reloads, then waits for the
// rollout to end. Prints one JSON object: the rollout's run id, the changes, the final status,
// whether a rollback is listed, and any console error, page error or failed request.
//
//   node rollout-live.cjs CHROMIUM BASE_URL   (playwright-core resolved through NODE_PATH)
"use strict";
const { chromium } = require("playwright-core");

async function running(base, deadline) {
  while (Date.now() < deadline) {
    try {
      const answer = await fetch(base + "/api/v1/rollouts");
      const body = await answer.json();
      const run = (body.runs || []).find((r) => r.status === "running");
      if (run) return run.id;
    } catch (_) { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("no running rollout");
}

(async () => {
  const [executablePath, base] = process.argv.slice(2);
  const id = await running(base, Date.now() + 120000);
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const changes = [];
  const problems = [];
  try {
    const page = await browser.newPage();
    page.on("console", (m) => { if (m.type() === "error") problems.push("console: " + m.text()); });
    page.on("pageerror", (e) => problems.push("page error: " + e.message));
    page.on("requestfailed", (r) => {
      // The event stream is closed on purpose when the page reloads.
      if (!r.url().includes("/stream")) problems.push("request failed: " + r.url());
    });
    await page.exposeBinding("reportWeight", (_, at, weight) => changes.push({ at, weight }));
    await page.addInitScript(() => {
      document.addEventListener("DOMContentLoaded", () => {
        const weight = document.getElementById("weight");
        if (!weight) return;
        new MutationObserver(() => window.reportWeight(Date.now(), weight.textContent))
          .observe(weight, { childList: true, characterData: true, subtree: true });
      });
    });
    await page.goto(base + "/rollouts/" + id, { waitUntil: "load" });
    // The page reloads itself when the rollout ends; then its status is no longer running.
    await page.waitForFunction(() => {
      const status = document.getElementById("status");
      return status && !status.textContent.includes("running");
    }, null, { timeout: 120000, polling: 200 });
    const text = await page.textContent("main");
    console.log(JSON.stringify({
      id, changes, problems,
      status: await page.textContent("#status"),
      rollback_listed: text.includes("Rollbacks") && !/Rollbacks\s*None yet/.test(text),
    }));
  } finally {
    await browser.close();
  }
})().catch((e) => { console.error(e); process.exit(1); });
