// The regmesh dashboard: polls /v1/status, /v1/peers, /metrics and
// /v1/diagnose/mesh, and follows /v1/watch, all with the token given
// (kept in localStorage; `#token=...` in the address also sets it).
"use strict";
const $ = (id) => document.getElementById(id);
const HISTORY_MAX = 60, CHANGES_MAX = 50, POLL_MS = 2000;
let token = localStorage.getItem("regmesh-token") || "";
const m = location.hash.match(/token=([^&]+)/);
if (m) { token = decodeURIComponent(m[1]); localStorage.setItem("regmesh-token", token); }
$("token").value = token;
$("auth").addEventListener("submit", (e) => {
  e.preventDefault(); token = $("token").value.trim();
  localStorage.setItem("regmesh-token", token); startWatch();
});
const headers = () => (token ? { Authorization: "Bearer " + token } : {});
async function api(path, text) {
  const r = await fetch(path, { headers: headers() });
  if (!r.ok) throw new Error(path + ": " + r.status + " " + (await r.text()).slice(0, 200));
  return text ? r.text() : r.json();
}
function el(tag, attrs, text) {
  const ns = ["svg", "circle", "line", "text", "g", "polyline"].includes(tag) ? "http://www.w3.org/2000/svg" : null;
  const e = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}
function table(t, head, rows) {
  t.replaceChildren(el("tr", {}), ...rows.map((r) => { const tr = el("tr"); r.forEach((c) => tr.append(el("td", {}, String(c)))); return tr; }));
  head.forEach((h) => t.firstChild.append(el("th", {}, h)));
}
const stateClass = (s) => (s === "OPERATIONAL" ? "ok" : s === "DEGRADED" ? "warn" : "bad");
const color = { ok: "#2e7d32", warn: "#ef6c00", bad: "#c62828" };

function drawGraph(rep) {
  const g = $("graph"); g.replaceChildren();
  const names = rep.centers.map((c) => c.center);
  const pos = {}; const n = names.length, cx = 210, cy = 160, r = n > 1 ? 115 : 0;
  names.forEach((c, i) => { const a = (2 * Math.PI * i) / n - Math.PI / 2; pos[c] = [cx + r * Math.cos(a), cy + r * Math.sin(a)]; });
  for (const [from, l] of rep.links) {
    const a = pos[from], b = pos[l.peer]; if (!a || !b) continue;
    // Each direction drawn on its own side of the centre line.
    const dx = b[0] - a[0], dy = b[1] - a[1], len = Math.hypot(dx, dy) || 1, ox = (-dy / len) * 4, oy = (dx / len) * 4;
    const cls = stateClass(l.state);
    g.append(el("line", { x1: a[0] + ox, y1: a[1] + oy, x2: b[0] + ox, y2: b[1] + oy, stroke: color[cls], "stroke-width": 3,
      "data-link": from + "-" + l.peer, "data-state": l.state }));
    const behind = l.records_behind == null ? "?" : l.records_behind;
    g.append(el("text", { x: a[0] + dx * 0.3 + ox * 3, y: a[1] + dy * 0.3 + oy * 3, fill: color[cls] },
      (l.digest_match === false ? "≠ " : "") + behind));
  }
  for (const c of rep.centers) {
    const [x, y] = pos[c.center];
    const grp = el("g", { "data-center": c.center, "data-answered": String(c.answered) });
    grp.append(el("circle", { cx: x, cy: y, r: 24, fill: c.answered ? "#e3f2fd" : "#eee", stroke: "#1d2330",
      "stroke-dasharray": c.answered ? "" : "4 3" }));
    grp.append(el("text", { x, y: y + 4, "text-anchor": "middle" }, c.center));
    grp.append(el("text", { x, y: y + 40, "text-anchor": "middle", fill: "#555" }, c.state || "?"));
    g.append(grp);
  }
}
function drawLag(rep) {
  const origins = [...new Set(Object.values(rep.lag).flatMap((r) => Object.keys(r)))].sort();
  table($("lag"), ["center \\ origin", ...origins], Object.entries(rep.lag).map(([c, row]) => [c, ...origins.map((o) => row[o] ?? "-")]));
  $("disagree").replaceChildren(...(rep.disagreements.length ? rep.disagreements.map((d) =>
    el("li", {}, `${d.a} – ${d.b}: at fault ${d.fault || "unclear"}; ${d.why}`)) : [el("li", {}, "none")]));
}
function drawPeers(p) {
  $("center").textContent = p.id; $("state").textContent = p.state;
  const wm = p.anti_entropy ? p.anti_entropy.watermarks : {};
  table($("peers"), ["peer", "state", "interval ms", "last beat", "behind", "digests", "floods sent"], p.peers.map((x) =>
    [x.id, x.state, x.announced_interval_ms ?? "?", x.last_heard || "never", x.records_behind ?? "?",
      x.digest_match == null ? "?" : x.digest_match ? "match" : "differ", x.floods_sent]));
  $("peers").dataset.watermarks = JSON.stringify(wm);
}
function counters(metrics, p) {
  const sum = (name) => metrics.split("\n").filter((l) => l.startsWith(name)).reduce((s, l) => s + Number(l.split(" ").pop()), 0);
  const f = (p && p.floods) || {}, ae = (p && p.anti_entropy) || {};
  return { "changes": sum("regmesh_changes_total"), "floods received": f.received || 0, "floods initiated": f.initiated || 0,
    "floods relayed": f.relayed || 0, "pulled records": ae.pulled_records || 0, "http responses": sum("regmesh_http_responses_total") };
}
const history = [];
function drawRates(c) {
  history.push({ t: Date.now(), c }); if (history.length > HISTORY_MAX) history.shift();
  const box = $("rates"); box.replaceChildren();
  for (const k of Object.keys(c)) {
    const rates = history.slice(1).map((h, i) => Math.max(0, (h.c[k] - history[i].c[k]) / ((h.t - history[i].t) / 1000)));
    const max = Math.max(1, ...rates);
    const svg = el("svg", { width: 240, height: 30 });
    svg.append(el("polyline", { fill: "none", stroke: "#1565c0", "stroke-width": 1.5,
      points: rates.map((r, i) => `${(i * 240) / (HISTORY_MAX - 1)},${28 - (r / max) * 26}`).join(" ") }));
    const row = el("div", { class: "spark" }); row.append(el("span", {}, k), svg, el("b", {}, (rates.at(-1) || 0).toFixed(1)));
    box.append(row);
  }
}
// Histograms of /metrics (regmesh_peer_call_seconds by peer and call,
// regmesh_propagation_seconds by origin): all-time quantiles, and p90 over
// the last poll window, kept as a history for a sparkline per series.
function histograms(metrics, name) {
  const out = {};
  for (const l of metrics.split("\n")) {
    const m = l.match(new RegExp("^" + name + '_bucket\\{(.*),le="([^"]+)"\\} (\\S+)$'));
    if (!m) continue;
    (out[m[1]] ||= []).push([m[2] === "+Inf" ? Infinity : Number(m[2]), Number(m[3])]);
  }
  return out;
}
function quantile(buckets, q) {
  const total = buckets.length ? buckets.at(-1)[1] : 0;
  if (!total) return null;
  const b = buckets.find(([, c]) => c >= q * total);
  return b ? b[0] : Infinity;
}
const ms = (s) => (s == null ? "–" : s === Infinity ? "above the top bucket" : "≤ " + (s < 1 ? Number((s * 1000).toFixed(1)) + " ms" : s + " s"));
const labelsOf = (key) => Object.fromEntries([...key.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
const lastHist = {}, p90History = {};
function windowed(name, key, buckets) {
  const prev = lastHist[name + key]; lastHist[name + key] = buckets;
  const delta = prev ? buckets.map(([le, c], i) => [le, c - (prev[i] ? prev[i][1] : 0)]) : [];
  const p = quantile(delta, 0.9);
  const h = (p90History[name + key] ||= []); h.push(p == null ? 0 : Math.min(p, 10)); if (h.length > HISTORY_MAX) h.shift();
  return [p, h];
}
function spark(h) {
  const max = Math.max(0.001, ...h), svg = el("svg", { width: 120, height: 20 });
  svg.append(el("polyline", { fill: "none", stroke: "#c62828", "stroke-width": 1.5,
    points: h.map((v, i) => `${(i * 120) / (HISTORY_MAX - 1)},${18 - (v / max) * 16}`).join(" ") }));
  return svg;
}
function histTable(t, head, rows) {
  table(t, head, rows.map((r) => r.slice(0, -1)));
  [...t.querySelectorAll("tr")].slice(1).forEach((tr, i) => { const td = el("td"); td.append(spark(rows[i].at(-1))); tr.append(td); });
  t.firstChild.append(el("th", {}, "p90 over time"));
}
function drawLatency(metrics) {
  const calls = histograms(metrics, "regmesh_peer_call_seconds");
  const failures = {};
  for (const l of metrics.split("\n")) { const m = l.match(/^regmesh_peer_call_failures_total\{(.*)\} (\S+)$/); if (m) failures[m[1]] = Number(m[2]); }
  histTable($("latency"), ["peer", "call", "calls", "failed", "p50", "p90", "p90 now"], Object.entries(calls).map(([k, b]) => {
    const l = labelsOf(k), [now, h] = windowed("call", k, b);
    return [l.peer, l.call, b.at(-1)[1], failures[k] || 0, ms(quantile(b, 0.5)), ms(quantile(b, 0.9)), ms(now), h];
  }));
  const prop = histograms(metrics, "regmesh_propagation_seconds");
  histTable($("propagation"), ["origin", "records", "p50", "p90", "p90 now"], Object.entries(prop).map(([k, b]) => {
    const [now, h] = windowed("prop", k, b);
    return [labelsOf(k).origin, b.at(-1)[1], ms(quantile(b, 0.5)), ms(quantile(b, 0.9)), ms(now), h];
  }));
}
function drawCounts(s, rep) {
  const rows = [];
  for (const [kind, n] of Object.entries(s.records)) rows.push([kind, "all", n]);
  const mine = rep.records && rep.records[s.id];
  if (mine) for (const [kind, byOrigin] of Object.entries(mine)) for (const [o, n] of Object.entries(byOrigin)) rows.push([kind, o, n]);
  rows.push(["tombstones", "all", s.tombstones]);
  table($("counts"), ["kind", "origin", "live records"], rows);
}
async function poll() {
  try {
    const [s, p, metrics, rep] = await Promise.all([api("/v1/status"), api("/v1/peers"), api("/metrics", true), api("/v1/diagnose/mesh")]);
    drawPeers(p); drawGraph(rep); drawLag(rep); drawRates(counters(metrics, p)); drawLatency(metrics); drawCounts(s, rep);
    $("error").textContent = "";
  } catch (e) { $("error").textContent = String(e.message || e); }
}
let watching = null;
async function startWatch() {
  if (watching) watching.abort();
  const ctl = new AbortController(); watching = ctl;
  try {
    const r = await fetch("/v1/watch", { headers: headers(), signal: ctl.signal });
    if (!r.ok) throw new Error("/v1/watch: " + r.status);
    const rd = r.body.getReader(), dec = new TextDecoder(); let buf = "";
    for (;;) {
      const { value, done } = await rd.read(); if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, i); buf = buf.slice(i + 2);
        const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("");
        if (!data) continue;
        const ev = JSON.parse(data);
        const li = el("li", { "data-id": ev.id }, `${new Date().toLocaleTimeString()} ${ev.type} ${ev.kind}/${ev.id} from ${ev.origin} v${ev.version}`);
        $("changes").prepend(li);
        while ($("changes").children.length > CHANGES_MAX) $("changes").lastChild.remove();
      }
    }
  } catch (e) { if (e.name !== "AbortError") $("error").textContent = String(e.message || e); }
  if (watching === ctl) setTimeout(startWatch, POLL_MS);
}
poll(); setInterval(poll, POLL_MS); startWatch();
