// Promotes a paused rollout from its page in headless Chromium, as an operator would: first
// without logging in (no button; a form post and an API call made from the page are refused
// and the rollout stays paused), then after logging in with the admin token (the Promote
// button sends the rollout on). Prints one JSON object with what was seen.
//
//   node promote.cjs CHROMIUM BASE_URL TOKEN   (playwright-core resolved through NODE_PATH)
"use strict";
const { chromium } = require("playwright-core");

async function api(base, path) {
  const answer = await fetch(base + path);
  return answer.json();
}

async function pausedRollout(base, deadline) {
  while (Date.now() < deadline) {
    try {
      const body = await api(base, "/api/v1/rollouts");
      const run = (body.runs || []).find((r) => r.status === "running");
      if (run) {
        const detail = await api(base, "/api/v1/rollouts/" + run.id);
        const states = (detail.events || []).filter((e) => e.kind === "state");
        const last = states[states.length - 1];
        if (last && last.payload.state.phase === "Paused") return run.id;
      }
    } catch (_) { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error("no paused rollout");
}

(async () => {
  const [executablePath, base, token] = process.argv.slice(2);
  const id = await pausedRollout(base, Date.now() + 60000);
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const problems = [];
  const seen = { id };
  try {
    const page = await browser.newPage();
    page.on("pageerror", (e) => problems.push("page error: " + e.message));
    page.on("console", (m) => {
      // The refused calls below are meant to fail; anything else is a problem.
      if (m.type() === "error" && !/40[13]/.test(m.text())) problems.push("console: " + m.text());
    });
    await page.goto(base + "/rollouts/" + id, { waitUntil: "load" });
    seen.button_without_login = await page.locator("button.promote").count();
    seen.login_link = await page.locator("a[href^='/login']").count();
    // What a script on the page could try without a session: both refused.
    seen.refused = await page.evaluate(async (id) => {
      const form = await fetch("/rollouts/" + id + "/promote", {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: "do=promote&csrf=guess",
      });
      const call = await fetch("/api/v1/rollouts/" + id + "/promote", { method: "POST" });
      return [form.status, call.status];
    }, id);
    await new Promise((r) => setTimeout(r, 500));
    const still = await api(base, "/api/v1/rollouts/" + id);
    seen.status_after_refusal = still.run.status;

    await page.goto(base + "/login?next=/rollouts/" + id, { waitUntil: "load" });
    await page.fill("input[name=token]", token);
    await Promise.all([page.waitForNavigation({ waitUntil: "load" }), page.click("form.login button")]);
    seen.url_after_login = new URL(page.url()).pathname;
    seen.button_after_login = await page.locator("button.promote").count();
    await Promise.all([page.waitForNavigation({ waitUntil: "load" }), page.click("button.promote")]);
    const deadline = Date.now() + 30000;
    let run;
    do {
      await new Promise((r) => setTimeout(r, 200));
      run = (await api(base, "/api/v1/rollouts/" + id)).run;
    } while (run.status === "running" && Date.now() < deadline);
    seen.final_status = run.status;
    // Promoted, then undone from the same page: all traffic back on stable.
    await page.goto(base + "/rollouts/" + id, { waitUntil: "load" });
    seen.undo_button = await page.locator("button.undo").count();
    if (seen.undo_button) {
      await Promise.all([page.waitForNavigation({ waitUntil: "load" }), page.click("button.undo")]);
      const events = (await api(base, "/api/v1/rollouts/" + id)).events || [];
      seen.undo_events = events.filter((e) => e.kind === "undo").length;
    }
    seen.problems = problems;
    console.log(JSON.stringify(seen));
  } finally {
    await browser.close();
  }
})().catch((e) => { console.error(e); process.exit(1); });
