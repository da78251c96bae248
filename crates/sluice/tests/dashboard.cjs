// Opens each dashboard page given on the command line in headless Chromium and prints, as one
// JSON object, per page: its HTTP status, its title, any console error, page error or failed
// request, and the rows of its tables with an id (the diff's `regressed` and `fixed`).
//
//   node dashboard.cjs CHROMIUM URL...   (playwright-core resolved through NODE_PATH)
"use strict";
const { chromium } = require("playwright-core");

(async () => {
  const [executablePath, ...urls] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const report = {};
  try {
    for (const url of urls) {
      const page = await browser.newPage();
      const problems = [];
      page.on("console", (m) => { if (m.type() === "error") problems.push("console: " + m.text()); });
      page.on("pageerror", (e) => problems.push("page error: " + e.message));
      page.on("requestfailed", (r) => problems.push("request failed: " + r.url()));
      const response = await page.goto(url, { waitUntil: "load" });
      await page.waitForTimeout(300);
      const tables = await page.$$eval("table[id], p.empty[id]", (nodes) =>
        Object.fromEntries(nodes.map((n) => [n.id, n.tagName === "TABLE"
          ? [...n.querySelectorAll("tbody tr")].map((tr) => tr.querySelector("td").textContent)
          : []])));
      report[url] = { status: response.status(), title: await page.title(), problems, tables };
      await page.close();
    }
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(report));
})().catch((e) => { console.error(e); process.exit(1); });
