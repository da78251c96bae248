// Keeps a rollout's page live: new events from its stream update the weight, the phase, the
// chart and the events table; the page reloads once the rollout has ended.
"use strict";
(function () {
  const live = document.querySelector(".live[data-stream]");
  if (!live || !window.EventSource) return;
  const after = live.dataset.after || "0";
  const source = new EventSource(live.dataset.stream + "?after=" + encodeURIComponent(after));
  const chart = document.getElementById("chart");
  const weights = (chart && chart.dataset.weights ? chart.dataset.weights.split(",") : [])
    .filter((w) => w !== "").map(Number);
  function draw() {
    const line = chart && chart.querySelector("polyline");
    if (!line) return;
    const width = 480, height = 80;
    const step = weights.length > 1 ? width / (weights.length - 1) : 0;
    line.setAttribute("points", weights.map((w, i) =>
      (i * step).toFixed(1) + "," + (height - Math.min(Math.max(w / 100, 0), 1) * height).toFixed(1)).join(" "));
  }
  function cell(row, text) {
    const td = document.createElement("td");
    td.textContent = text;
    row.appendChild(td);
  }
  function show(event) {
    let stored;
    try { stored = JSON.parse(event.data); } catch (_) { return; }
    let what = stored.kind;
    if (stored.kind === "state" && stored.payload && stored.payload.state) {
      const state = stored.payload.state;
      document.getElementById("weight").textContent = state.weight + " %";
      document.getElementById("phase").textContent = String(state.phase).toLowerCase();
      document.getElementById("message").textContent = state.message || "";
      weights.push(state.weight);
      draw();
      what = "weight " + state.weight + " % — " + (state.message || "");
    }
    const row = document.createElement("tr");
    cell(row, new Date(stored.at_ms).toISOString().replace("T", " ").slice(0, 19));
    cell(row, stored.kind);
    cell(row, what);
    document.getElementById("events").appendChild(row);
  }
  for (const kind of ["state", "measurement", "command", "rollback", "promoted", "reasserted", "instance", "undo", "runbook"]) {
    source.addEventListener(kind, show);
  }
  source.addEventListener("end", () => { source.close(); window.location.reload(); });
})();
