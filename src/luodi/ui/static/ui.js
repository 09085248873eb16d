// luodi ui: the only script. Running runs poll a small JSON endpoint and update their status and curves in place.
// No framework, no network beyond this server, no inline script (the page's CSP forbids it).
"use strict";

const POLL_MS = 3000;

function svgNode(markup) {
  // Charts come from this server as SVG markup; parse them as SVG, never as HTML.
  if (!markup) return null;
  const parsed = new DOMParser().parseFromString(markup, "image/svg+xml").documentElement;
  return parsed.nodeName === "svg" ? document.importNode(parsed, true) : null;
}

function setStatus(cell, status) {
  cell.textContent = status;
  cell.className = "status status-" + status;
}

async function getJSON(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
  if (!response.ok) throw new Error(url + ": " + response.status);
  return response.json();
}

function watchRunsTable() {
  const rows = () => Array.from(document.querySelectorAll("#runs-table tr[data-status='running']"));
  if (rows().length === 0) return;
  const tick = async () => {
    const watched = rows();
    if (watched.length === 0) return;
    const ids = watched.map((row) => row.dataset.run);
    try {
      const data = await getJSON("/api/runs?ids=" + encodeURIComponent(ids.join(",")));
      for (const run of data.runs) {
        const row = document.querySelector("#runs-table tr[data-run='" + CSS.escape(run.id) + "']");
        if (!row) continue;
        row.dataset.status = run.status;
        setStatus(row.querySelector("td.status"), run.status);
        const spark = svgNode(run.sparkline);
        if (spark) row.querySelector("td.curve").replaceChildren(spark);
      }
    } catch (error) { console.warn(error.message); }
    setTimeout(tick, POLL_MS);
  };
  setTimeout(tick, POLL_MS);
}

function watchRun() {
  const meta = document.getElementById("run-meta");
  if (!meta || meta.dataset.status !== "running") return;
  const tick = async () => {
    try {
      const run = await getJSON("/api/runs/" + encodeURIComponent(meta.dataset.run));
      meta.dataset.status = run.status;
      setStatus(document.getElementById("run-status"), run.status);
      document.getElementById("run-updated").textContent = run.updated_at;
      const charts = run.charts.map(svgNode).filter(Boolean);
      if (charts.length) document.getElementById("run-charts").replaceChildren(...charts);
      if (run.status !== "running") { window.location.reload(); return; }
    } catch (error) { console.warn(error.message); }
    setTimeout(tick, POLL_MS);
  };
  setTimeout(tick, POLL_MS);
}

function checkCompare() {
  const form = document.getElementById("compare-form");
  if (!form) return;
  form.addEventListener("submit", (event) => {
    const checked = form.querySelectorAll("input[name='run']:checked").length;
    if (checked < 2) { event.preventDefault(); alert("Check two or more runs to compare."); }
  });
}

document.addEventListener("DOMContentLoaded", () => { watchRunsTable(); watchRun(); checkCompare(); });
