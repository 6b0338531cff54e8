"""The page's own style sheet and script (kept here so the package needs no data files).

The script reads the JSON block ``#report-data`` (`reports._html`), and on a click on any
point of the front figures selects that trial: it fills the detail panel, moves the
selection ring, and redraws each per-trial figure with ``Plotly.react`` from the trial's
patches (`reports._patch`). ``window.robustdiceReport.select(n)`` does the same from code.
"""

from __future__ import annotations

__all__ = ["PAGE_CSS", "PAGE_JS"]

PAGE_CSS = """
:root { --ink: #1b1f24; --muted: #5b6470; --line: #dde2e8; --accent: #1f63b4; }
* { box-sizing: border-box; }
body { margin: 0; background: #f4f6f8; color: var(--ink);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
header { padding: 16px 24px 8px; }
header h1 { margin: 0 0 4px; font-size: 21px; font-weight: 650; }
header h1 .study { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 17px;
  color: var(--accent); font-weight: 600; margin-left: 6px; }
.meta, .provenance { margin: 2px 0; color: var(--muted); }
.provenance strong { color: var(--ink); }
main { padding: 8px 24px 24px; display: grid; gap: 16px; }
.row { display: grid; gap: 16px; grid-template-columns: repeat(2, minmax(0, 1fr)); }
.row.top { grid-template-columns: minmax(0, 1.75fr) minmax(320px, 1fr); }
.row.one { grid-template-columns: minmax(0, 1fr); }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 6px;
  min-width: 0; }
#detail { padding: 14px 16px; }
#detail h2 { margin: 0 0 8px; font-size: 18px; display: flex; align-items: center; gap: 10px;
  flex-wrap: wrap; }
.badge { font-size: 12px; font-weight: 600; padding: 2px 8px; border-radius: 10px;
  background: #e8eef7; color: var(--accent); }
.badge:empty { display: none; }
.badge.dominated { background: #eef0f2; color: var(--muted); }
.badge.infeasible { background: #fdecea; color: #b3261e; }
#sel-rows { width: 100%; border-collapse: collapse; margin: 4px 0 12px; }
#sel-rows th { text-align: left; font-weight: 500; color: var(--muted); padding: 3px 8px 3px 0;
  width: 55%; }
#sel-rows td { text-align: right; font-variant-numeric: tabular-nums; padding: 3px 0; }
#sel-rows tr + tr { border-top: 1px solid #f0f2f4; }
.cmd-label { margin: 8px 0 4px; font-weight: 600; }
.cmd { display: flex; gap: 8px; align-items: stretch; }
.cmd code { flex: 1; display: block; padding: 8px 10px; background: #0f1720; color: #e6edf3;
  border-radius: 6px; font: 12.5px/1.4 ui-monospace, Menlo, Consolas, monospace;
  white-space: pre-wrap; word-break: break-all; user-select: all; }
button { font: inherit; cursor: pointer; border-radius: 6px; border: 1px solid var(--accent);
  background: var(--accent); color: #fff; padding: 4px 12px; }
button.secondary { background: #fff; color: var(--accent); }
#copy-note { min-height: 1.4em; color: var(--muted); font-size: 12px; margin-top: 4px; }
.goto { display: flex; gap: 6px; align-items: center; margin-top: 12px; color: var(--muted); }
.goto input { width: 6em; padding: 3px 6px; border: 1px solid var(--line); border-radius: 6px;
  font: inherit; }
.hint { color: var(--muted); font-size: 12.5px; margin: 10px 0 0; }
.empty { padding: 40px; text-align: center; color: var(--muted); }
footer { padding: 0 24px 24px; color: var(--muted); font-size: 12.5px; }
footer ul { margin: 4px 0; padding-left: 18px; }
@media (max-width: 1100px) { .row, .row.top { grid-template-columns: minmax(0, 1fr); } }
"""

PAGE_JS = r"""
(function () {
  "use strict";
  var REPORT = JSON.parse(document.getElementById("report-data").textContent);
  var SELECTED = "selected trial";

  function isObject(value) {
    return value !== null && typeof value === "object" && !Array.isArray(value) &&
      !ArrayBuffer.isView(value);
  }
  // Nested objects merge, everything else (arrays, numbers, text) replaces.
  function merge(base, update) {
    var out = Object.assign({}, base);
    Object.keys(update).forEach(function (key) {
      var value = update[key];
      out[key] = isObject(value) && isObject(base[key]) ? merge(base[key], value) : value;
    });
    return out;
  }
  function graph(id) {
    var gd = document.getElementById(id);
    return gd && gd.data ? gd : null;
  }
  function redraw(id, patch) {
    var gd = graph(id);
    if (!gd) return;
    var data = gd.data.map(function (trace, i) {
      var update = patch.traces[String(i)];
      return update ? merge(trace, update) : trace;
    });
    Plotly.react(gd, data, merge(gd.layout, patch.layout));
  }
  // The selection ring's meta lists, per axis, the objective it shows (-1: trial number).
  function moveRings(id, trial, values) {
    var gd = graph(id);
    if (!gd) return;
    var data = gd.data.map(function (trace) {
      if (trace.name !== SELECTED) return trace;
      var update = { customdata: [trial] };
      (trace.meta || []).forEach(function (k, j) {
        update["xyz"[j]] = [k < 0 ? trial : values[k]];
      });
      return merge(trace, update);
    });
    Plotly.react(gd, data, gd.layout);
  }
  function fillPanel(trial, summary) {
    document.getElementById("sel-trial").textContent = "#" + trial;
    var badge = document.getElementById("sel-status");
    badge.textContent = summary.status;
    badge.className = "badge " + summary.status.split(" ").pop().replace(/[^a-z]/g, "");
    var table = document.getElementById("sel-rows");
    table.textContent = "";
    summary.rows.forEach(function (row) {
      var tr = table.insertRow();
      var th = document.createElement("th");
      th.textContent = row[0];
      tr.appendChild(th);
      tr.insertCell().textContent = row[1];
    });
    document.getElementById("deploy-cmd").textContent = summary.deploy_command;
    document.getElementById("copy-note").textContent = "";
  }
  function select(trial) {
    var detail = REPORT.trials[String(trial)];
    if (!detail) return false;
    fillPanel(trial, detail.summary);
    Object.keys(detail.figures).forEach(function (id) { redraw(id, detail.figures[id]); });
    REPORT.front_figures.forEach(function (id) { moveRings(id, trial, detail.values); });
    document.body.setAttribute("data-selected-trial", String(trial));
    return true;
  }
  function onClick(event) {
    var point = event && event.points && event.points[0];
    if (!point) return;
    var trial = Array.isArray(point.customdata) ? point.customdata[0] : point.customdata;
    if (typeof trial === "number" && trial >= 0) select(trial);
  }
  function fallbackCopy(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (err) { ok = false; }
    document.body.removeChild(area);
    return ok;
  }
  function copyCommand() {
    var text = document.getElementById("deploy-cmd").textContent;
    var note = document.getElementById("copy-note");
    function done(ok) {
      note.textContent = ok ? "copied to the clipboard" : "select the command and press Ctrl+C";
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(
        function () { done(true); },
        function () { done(fallbackCopy(text)); }
      );
    } else {
      done(fallbackCopy(text));
    }
  }
  function goTo() {
    var value = parseInt(document.getElementById("goto-trial").value, 10);
    var note = document.getElementById("goto-note");
    note.textContent = select(value) ? "" : "no completed trial #" + value;
  }
  function init() {
    REPORT.front_figures.forEach(function (id) {
      var gd = graph(id);
      if (gd && gd.on) gd.on("plotly_click", onClick);
    });
    document.getElementById("copy-btn").addEventListener("click", copyCommand);
    document.getElementById("goto-btn").addEventListener("click", goTo);
    document.getElementById("goto-trial").addEventListener("keydown", function (e) {
      if (e.key === "Enter") goTo();
    });
    if (REPORT.initial !== null) select(REPORT.initial);
    document.body.setAttribute("data-ready", "true");
  }
  window.robustdiceReport = { select: select };
  if (document.readyState === "complete") init();
  else window.addEventListener("load", init);
})();
"""
