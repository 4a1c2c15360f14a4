"""The dashboard page: projections, their lag and replay throughput over time, rebuild progress,
storage; no external assets."""

DASHBOARD_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{title}} · projectionist</title>
<style>
  body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1d2330; background: #f7f8fa; }
  h1 { font-size: 20px; margin: 0 0 4px; }
  .sub { color: #667; margin-bottom: 16px; }
  table { border-collapse: collapse; width: 100%; background: #fff; }
  th, td { padding: 6px 10px; border-bottom: 1px solid #e3e6ea; text-align: right; }
  th:first-child, td:first-child, td.state { text-align: left; }
  th { background: #eef0f4; font-weight: 600; }
  .live { color: #17803d; } .catching_up { color: #b07800; } .rebuilding { color: #1f63c6; }
  .stalled, .failed { color: #c62828; font-weight: 600; }
  .bar { background: #e3e6ea; height: 8px; width: 120px; display: inline-block; }
  .bar > span { background: #1f63c6; height: 8px; display: block; }
  canvas { background: #fff; border: 1px solid #e3e6ea; margin-top: 16px; width: 100%; }
  #error { color: #c62828; }
  svg { background: #fff; border: 1px solid #e3e6ea; margin-top: 16px; width: 100%; }
  svg text { font: 12px system-ui, sans-serif; fill: #1d2330; }
</style>
</head>
<body>
<h1>{{title}} — projections</h1>
<div class="sub">updated <span id="updated">never</span> <span id="error"></span></div>
<table>
  <thead><tr><th>projection</th><th>version</th><th>state</th><th>position</th><th>head</th>
  <th>lag (events)</th><th>lag (ms)</th><th>dead letters</th><th>rebuild</th><th>time left</th>
  <th>storage</th><th>rows</th><th>replay</th><th>rebuild ETA</th></tr></thead>
  <tbody id="rows"><tr><td colspan="13">loading…</td></tr></tbody>
</table>
<canvas id="plot" width="1100" height="260"></canvas>
<svg id="throughput" viewBox="0 0 1100 220" preserveAspectRatio="none" role="img"
     aria-label="replay throughput"></svg>
<script>
const token = new URLSearchParams(location.search).get("token");
const headers = token ? {"Authorization": "Bearer " + token} : {};
const colors = ["#1f63c6", "#17803d", "#b07800", "#c62828", "#7b1fa2", "#00838f"];

function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function bytes(n) {
  if (n === null || n === undefined) return "-";
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return (i ? n.toPrecision(3) : n) + " " + units[i];
}

function duration(s) {
  if (s === null || s === undefined) return "-";
  if (s < 60) return s.toFixed(s < 10 ? 2 : 1) + " s";
  if (s < 3600) return (s / 60).toFixed(1) + " min";
  if (s < 86400) return (s / 3600).toFixed(1) + " h";
  return (s / 86400).toFixed(1) + " d";
}

function rate(r) {
  return r === null || r === undefined ? "-" : Math.round(r).toLocaleString() + " events/s";
}

function render(rows) {
  const body = document.getElementById("rows");
  body.replaceChildren();
  for (const r of rows) {
    const tr = document.createElement("tr");
    tr.dataset.projection = r.name;
    tr.append(cell(r.name), cell(r.version), cell(r.state, "state " + r.state),
              cell(r.position), cell(r.head), cell(r.lag_events),
              cell(Math.round(r.lag_ms)), cell(r.dead_letters));
    const td = document.createElement("td");
    if (r.progress !== undefined) {
      const bar = document.createElement("span");
      bar.className = "bar";
      const fill = document.createElement("span");
      fill.style.width = Math.round(r.progress * 100) + "%";
      bar.append(fill);
      td.append(bar, " " + Math.round(r.progress * 100) + "%");
    }
    tr.append(td, cell(r.active ? "" : duration(r.remaining_s)), cell(bytes(r.storage_bytes)),
              cell(r.rows === null ? "-" : (r.rows_estimated ? "~" : "") + r.rows.toLocaleString()),
              cell(rate(r.replay_events_per_s)), cell(duration(r.rebuild_eta_s)));
    body.append(tr);
  }
}

function plot(samples) {
  const canvas = document.getElementById("plot");
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height, pad = 40;
  ctx.clearRect(0, 0, w, h);
  ctx.fillStyle = "#1d2330";
  ctx.font = "12px system-ui";
  ctx.fillText("lag (events) over the last minutes", pad, 16);
  if (samples.length < 1) return;
  const names = [...new Set(samples.flatMap(s => Object.keys(s.lag_events)))].sort();
  const t0 = samples[0].t, t1 = Math.max(samples[samples.length - 1].t, t0 + 1);
  const top = Math.max(1, ...samples.flatMap(s => Object.values(s.lag_events)));
  ctx.strokeStyle = "#ccd";
  ctx.beginPath(); ctx.moveTo(pad, pad / 2); ctx.lineTo(pad, h - pad); ctx.lineTo(w - 10, h - pad);
  ctx.stroke();
  ctx.fillText(String(top), 4, pad / 2 + 10);
  ctx.fillText("0", 4, h - pad);
  names.forEach((name, i) => {
    ctx.strokeStyle = colors[i % colors.length];
    ctx.beginPath();
    samples.forEach((s, j) => {
      const x = pad + (s.t - t0) / (t1 - t0) * (w - pad - 10);
      const y = h - pad - (s.lag_events[name] || 0) / top * (h - pad * 1.5);
      j ? ctx.lineTo(x, y) : ctx.moveTo(x, y);
    });
    ctx.stroke();
    ctx.fillStyle = colors[i % colors.length];
    ctx.fillText(name, pad + 10 + i * 160, h - 12);
  });
}

function throughput(samples) {
  // Events applied per second by each build between samples: the replay throughput seen live.
  const svg = document.getElementById("throughput");
  const ns = "http://www.w3.org/2000/svg";
  const w = 1100, h = 220, pad = 40;
  svg.replaceChildren();
  const add = (tag, attrs, text) => {
    const el = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    if (text !== undefined) el.textContent = text;
    svg.append(el);
    return el;
  };
  add("text", {x: pad, y: 16}, "replay throughput (events/s) over the last minutes");
  add("polyline", {points: `${pad},${pad / 2} ${pad},${h - pad} ${w - 10},${h - pad}`,
                   fill: "none", stroke: "#ccd"});
  const recent = samples.filter(s => s.events_per_s);
  if (recent.length < 1) return;
  const names = [...new Set(recent.flatMap(s => Object.keys(s.events_per_s)))].sort();
  const t0 = recent[0].t, t1 = Math.max(recent[recent.length - 1].t, t0 + 1);
  const top = Math.max(1, ...recent.flatMap(s => Object.values(s.events_per_s)));
  add("text", {x: 4, y: pad / 2 + 10}, Math.round(top).toLocaleString());
  add("text", {x: 4, y: h - pad}, "0");
  names.forEach((name, i) => {
    const points = recent.filter(s => name in s.events_per_s).map(s => {
      const x = pad + (s.t - t0) / (t1 - t0) * (w - pad - 10);
      const y = h - pad - s.events_per_s[name] / top * (h - pad * 1.5);
      return x.toFixed(1) + "," + y.toFixed(1);
    });
    add("polyline", {points: points.join(" "), fill: "none",
                     stroke: colors[i % colors.length], "stroke-width": 1.5});
    const legend = {x: pad + 10 + i * 200, y: h - 12, style: "fill: " + colors[i % colors.length]};
    add("text", legend, name);
  });
}

async function refresh() {
  try {
    const [rows, samples] = await Promise.all([
      fetch("projections", {headers}).then(r => r.ok ? r.json() : Promise.reject(r.status)),
      fetch("projections/history", {headers}).then(r => r.ok ? r.json() : []),
    ]);
    render(rows);
    plot(samples);
    throughput(samples);
    document.getElementById("updated").textContent = new Date().toLocaleTimeString();
    document.getElementById("error").textContent = "";
  } catch (e) {
    document.getElementById("error").textContent = "cannot load projections (" + e + ")";
  }
}
refresh();
setInterval(refresh, 1000);
</script>
</body>
</html>
"""
