#include "server/ranges_page.h"

namespace conclave::server {

// One page, no outside files: it fetches /ranges.json every two seconds and
// draws the members, a timeline of the recent splits, merges and moves,
// and the ranges. Keys arrive base64-encoded (protobuf's JSON for bytes) and
// node ids as decimal strings; both are shown as the CLI shows them.
const std::string_view kRangesPage = R"html(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Conclave ranges</title>
<style>
body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; margin: 0 0 .2em; }
h2 { font-size: 1.05em; margin: 1.4em 0 .4em; }
#status { color: #666; }
table { border-collapse: collapse; }
th, td { padding: .2em .7em; text-align: left; border-bottom: 1px solid #ddd; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.bar { display: inline-block; height: .8em; background: #4a7bd0; vertical-align: middle; }
.bar.leaders { background: #e08a2c; }
.state-up { color: #1a7f37; } .state-down { color: #c62828; } .state-late { color: #b26a00; }
.split { fill: #4a7bd0; } .merge { fill: #1a7f37; } .move { fill: #e08a2c; }
.legend span { margin-right: 1.2em; }
.legend i { display: inline-block; width: .8em; height: .8em; border-radius: 50%; margin-right: .3em; }
code { font-size: .95em; }
</style>
</head>
<body>
<h1>Conclave: ranges and members</h1>
<div id="status">loading...</div>

<h2>Members</h2>
<table id="nodes"><thead><tr><th>node</th><th>state</th><th>labels</th><th>replicas</th>
<th>leaders</th><th>bytes</th><th>req/s</th><th></th></tr></thead><tbody></tbody></table>

<h2>Splits, merges and moves (last 10 minutes)</h2>
<div class="legend"><span><i style="background:#4a7bd0"></i>split</span>
<span><i style="background:#1a7f37"></i>merge</span><span><i style="background:#e08a2c"></i>move</span></div>
<svg id="timeline" width="900" height="90" role="img" aria-label="timeline"></svg>
<table id="events"><thead><tr><th>when</th><th>what</th><th>range</th><th>detail</th><th>by</th>
</tr></thead><tbody></tbody></table>

<h2>Ranges <span id="range-count"></span></h2>
<table id="ranges"><thead><tr><th>range</th><th>start</th><th>end</th><th>replicas</th>
<th>leader</th><th>size</th><th>req/s</th><th>generation</th><th>state</th></tr></thead>
<tbody></tbody></table>

<script>
"use strict";
const hex = (id) => id ? BigInt(id).toString(16) : "none";
function key(b64) {
  if (!b64) return "";
  const raw = atob(b64);
  let out = "";
  for (const ch of raw) {
    const c = ch.charCodeAt(0);
    out += c >= 0x20 && c < 0x7f && c !== 0x5c ? ch : "\\x" + c.toString(16).padStart(2, "0");
  }
  return out;
}
function bytes(n) {
  n = Number(n || 0);
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i + 1 < units.length) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + units[i];
}
function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}
function fill(id, items, draw) {
  const body = document.querySelector("#" + id + " tbody");
  body.replaceChildren();
  for (const it of items) draw(body.insertRow(), it);
}
function describe(e) {
  if (e.kind === "split") return "at " + key(e.key) + ": range " + e.other_range_id + " starts there";
  if (e.kind === "merge") return "took range " + e.other_range_id + " in (from " + key(e.key) + ")";
  if (e.kind === "move") return "node " + hex(e.from_node) + " \u2192 " +
      (e.to_node ? "node " + hex(e.to_node) : "removed");
  return "";
}
function timeline(events, now) {
  const svg = document.getElementById("timeline");
  const w = svg.width.baseVal.value, h = svg.height.baseVal.value, span = 600e9;
  const ns = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  const axis = document.createElementNS(ns, "line");
  Object.entries({x1: 10, x2: w - 10, y1: h - 20, y2: h - 20, stroke: "#999"})
      .forEach(([k, v]) => axis.setAttribute(k, v));
  svg.appendChild(axis);
  for (let m = 0; m <= 10; m += 2) {
    const t = document.createElementNS(ns, "text");
    t.setAttribute("x", Math.max(24, w - 10 - (w - 20) * m / 10));
    t.setAttribute("text-anchor", m ? "middle" : "end");
    t.setAttribute("y", h - 4);
    t.setAttribute("font-size", "11");
    t.textContent = m ? "-" + m + " min" : "now";
    svg.appendChild(t);
  }
  const rows = {split: 0, merge: 1, move: 2};
  for (const e of events) {
    const age = now - Number(e.wall_nanos);
    if (age < 0 || age > span) continue;
    const c = document.createElementNS(ns, "circle");
    c.setAttribute("cx", w - 10 - (w - 20) * age / span);
    c.setAttribute("cy", 14 + 18 * (rows[e.kind] ?? 0));
    c.setAttribute("r", 5);
    c.setAttribute("class", e.kind);
    const title = document.createElementNS(ns, "title");
    title.textContent = e.kind + " range " + e.range_id + ": " + describe(e);
    c.appendChild(title);
    svg.appendChild(c);
  }
}
function draw(v) {
  const now = Number(v.wall_nanos);
  document.getElementById("status").textContent = "as member " + hex(v.node_id) + " sees it, " +
      new Date(now / 1e6).toLocaleTimeString() + "; refreshed every 2 s";
  const nodes = v.nodes || [];
  const most = Math.max(1, ...nodes.map((n) => Number(n.ranges || 0)));
  fill("nodes", nodes, (row, n) => {
    cell(row, hex(n.node_id));
    cell(row, n.state + (n.draining ? ", draining" : ""), "state-" + n.state);
    cell(row, (n.labels || []).map((l) => l.key + "=" + l.value).join(",") || "-");
    cell(row, n.ranges || 0, "num");
    cell(row, n.leaders || 0, "num");
    cell(row, bytes(n.bytes), "num");
    cell(row, Math.round(n.requests_per_second || 0), "num");
    const bars = cell(row, "");
    for (const [cls, k] of [["bar", "ranges"], ["bar leaders", "leaders"]]) {
      const b = document.createElement("span");
      b.className = cls;
      b.style.width = (120 * Number(n[k] || 0) / most) + "px";
      b.title = k;
      bars.appendChild(b);
    }
  });
  const events = v.events || [];
  timeline(events, now);
  fill("events", events.slice(-20).reverse(), (row, e) => {
    cell(row, new Date(Number(e.wall_nanos) / 1e6).toLocaleTimeString());
    cell(row, e.kind, e.kind);
    cell(row, e.range_id, "num");
    cell(row, describe(e));
    cell(row, hex(e.node_id));
  });
  const ranges = v.ranges || [];
  document.getElementById("range-count").textContent = "(" + (v.range_count || 0) + ")" +
      (ranges.length < Number(v.range_count || 0) ? ", the first " + ranges.length : "");
  fill("ranges", ranges, (row, r) => {
    cell(row, r.range_id, "num");
    cell(row, r.start ? key(r.start) : "(start)");
    cell(row, r.end ? key(r.end) : "(end)");
    cell(row, (r.replicas || []).map((p) => hex(p.node_id) + (p.learner ? " (learner)" : ""))
        .join(", "));
    cell(row, hex(r.leader_node));
    cell(row, bytes(r.bytes), "num");
    cell(row, Math.round(r.requests_per_second || 0), "num");
    cell(row, r.generation || 0, "num");
    cell(row, r.frozen_into ? "merging into " + r.frozen_into : (r.sticky ? "sticky" : ""));
  });
}
// The next refresh two seconds after this one's answer (never two at once).
async function refresh() {
  try {
    const resp = await fetch("/ranges.json", {cache: "no-store", signal: AbortSignal.timeout(15000)});
    if (!resp.ok) throw new Error(resp.status + " " + (await resp.text()));
    draw(await resp.json());
  } catch (err) {
    document.getElementById("status").textContent = "cannot read /ranges.json: " + err.message;
  }
  setTimeout(refresh, 2000);
}
refresh();
</script>
</body>
</html>
)html";

}  // namespace conclave::server
