// The dashboard page: applies the run's items (see testbed/dashboard/feed.py) to one state
// and draws it every RENDER_MS; live from /api/stream, or replayed from /api/timeline.
"use strict";

const WINDOW_S = 120;          // the charts show the last two minutes
const RENDER_MS = 150;         // about 7 frames a second
const MAX_EVENTS = 400;        // rows kept in the event list
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf"];

const D = window.dashboard = {
  info: null, mode: null, t0: null, now: null, frames: 0, items: 0, latencies: [], readyMs: null, chartsMs: null,
  map: null,
  state: null, eventCount: 0,
};

const $ = (id) => document.getElementById(id);

function freshState() {
  return {users: {}, services: {}, inflight: {}, rssi: {}, handovers: {}, e2e: {}, open: {}, outages: {},
          cpu: {}, mem: {}, decisions: {}, manual: false, paused: {}, events: []};
}

function series() { return {x: [], y: []}; }

function trim(s, from) {
  let k = 0;
  while (k < s.x.length && s.x[k] < from) k++;
  if (k > 0) { s.x.splice(0, k); s.y.splice(0, k); }
}

function fmt(v, digits = 2) { return v === null || v === undefined ? "-" : Number(v).toFixed(digits); }

// -- applying items ---------------------------------------------------------------------------
function apply(item, listEvents = true) {
  const S = D.state;
  if (D.t0 === null && item.t !== null) D.t0 = item.t;
  if (item.t !== null && (D.now === null || item.t > D.now) && D.mode === "live") D.now = item.t;
  D.items++;
  switch (item.k) {
    case "pos": {
      S.users[item.u] = {x: item.x, y: item.y, ap: item.ap, t: item.t};
      const per = S.rssi[item.u] = S.rssi[item.u] || {};
      for (const [ap, v] of Object.entries(item.rssi || {})) {
        const s = per[ap] = per[ap] || series();
        s.x.push(item.t); s.y.push(v);
      }
      break;
    }
    case "req": {
      const key = item.u + "|" + item.s;
      const e = S.e2e[key] = S.e2e[key] || {user: item.u, service: item.s, proc: series(), total: series(), fail: series()};
      if (item.ok) {
        e.proc.x.push(item.t); e.proc.y.push(item.proc);
        e.total.x.push(item.t); e.total.y.push(item.e2e);
        if (S.open[key] !== undefined) {
          (S.outages[item.u] = S.outages[item.u] || []).push([S.open[key], item.t]);
          delete S.open[key];
        }
      } else {
        e.fail.x.push(item.t); e.fail.y.push(0);
        if (S.open[key] === undefined) S.open[key] = item.t;
      }
      break;
    }
    case "srv": {
      (S.cpu[item.s] = S.cpu[item.s] || series()).x.push(item.t);
      S.cpu[item.s].y.push(100 * item.cpu);
      (S.mem[item.s] = S.mem[item.s] || series()).x.push(item.t);
      S.mem[item.s].y.push(item.mem);
      break;
    }
    case "ev": applyEvent(item, listEvents); break;
  }
}

function applyEvent(e, listEvents) {
  const S = D.state;
  let text = null, cls = "";
  switch (e.kind) {
    case "controller.deployed":
      S.services[e.service] = e.server;
      text = `${e.service} deployed on ${e.server} (${e.planner})`;
      break;
    case "migration.order":
      if (e.phase === "prepare" || e.phase === "all") {
        if (!Object.values(S.inflight).some((m) => m.migration === e.migration)) {
          S.inflight[e.migration] = {migration: e.migration, service: e.service, source: S.services[e.service], dest: e.dest};
          text = `migration ${e.service} → ${e.dest} (${e.mode}) ordered`; cls = "k-migration";
        }
      }
      break;
    case "migration.pre_done":
      text = `pre-migration of ${e.service} done: ` + phaseText(e.phases, ["pre_checkpoint", "pre_transfer", "pre_migration"]);
      cls = "k-migration";
      break;
    case "service.restored": text = `${e.service} restored on ${e.server}`; cls = "k-migration"; break;
    case "controller.migration": {
      delete S.inflight[e.migration];
      if (e.ok) S.services[e.service] = e.dest;
      const est = (S.decisions[e.decision] || {}).estimates || {};
      const measured = (e.phases || {}).migration;
      const bytes = e.bytes || {};
      text = `migration ${e.service} ${e.source} → ${e.dest} (${e.mode}) ${e.ok ? "ok" : "FAILED " + (e.error || "")}: ` +
        `downtime phase ${fmt(measured)} s` + (est.downtime_s !== undefined ? ` (estimated ${fmt(est.downtime_s)} s)` : "") +
        `, total ${fmt(sumPhases(e.phases))} s, bytes ${bytes.before_downtime ?? "-"} before / ${bytes.during_downtime ?? "-"} during`;
      cls = e.ok ? "k-migration" : "k-fail";
      break;
    }
    case "controller.decision": {
      S.decisions[e.decision] = e;
      const acts = (e.actions || []).map((a) => a.type === "Migrate" ? `migrate ${a.service} → ${a.dest}` :
        a.type === "Handover" ? `hand ${a.user} over to ${a.target}` : a.type).join(", ");
      const est = Object.entries(e.estimates || {}).filter(([k, v]) => typeof v === "number")
        .map(([k, v]) => `${k} ${fmt(v, 3)}`).join(", ");
      text = `decision #${e.decision} ${e.planner} on ${e.trigger}: ${acts}` + (est ? ` [estimates: ${est}]` : "");
      cls = "k-decision";
      break;
    }
    case "controller.operator": {
      const detail = Object.entries(e).filter(([k]) => !["k", "t", "kind", "decision", "action"].includes(k))
        .map(([k, v]) => `${k}=${v}`).join(" ");
      text = `operator #${e.decision}: ${e.action} ${detail}`; cls = "k-operator";
      break;
    }
    case "controller.manual": S.manual = !!e.on; text = `planner ${e.on ? "off (manual)" : "on"}`; cls = "k-operator"; break;
    case "user.paused": S.paused[e.user] = true; text = `${e.user} paused`; cls = "k-operator"; break;
    case "user.resumed": S.paused[e.user] = false; text = `${e.user} resumed`; cls = "k-operator"; break;
    case "handover.start":
      (S.handovers[e.user] = S.handovers[e.user] || []).push(e.t);
      text = `${e.user} handover ${e.source} → ${e.target} (${e.reason})`; cls = "k-handover";
      break;
    case "handover.end": text = `${e.user} on ${e.to} after ${fmt(e.end - e.start)} s`; cls = "k-handover"; break;
    case "radio.lost": text = `${e.user} lost the radio (${e.cause})`; cls = "k-fail"; break;
    case "radio.regained": text = `${e.user} regained the radio`; cls = "k-handover"; break;
    case "migration.failed": text = `migration of ${e.service} failed: ${e.error || ""}`; cls = "k-fail"; break;
    case "run.controller_lost": text = `the controller exited (${e.exit})`; cls = "k-fail"; break;
  }
  if (text && listEvents) {
    S.events.push({t: e.t, text, cls});
    if (S.events.length > MAX_EVENTS) S.events.splice(0, S.events.length - MAX_EVENTS);
  }
}

function phaseText(phases, names) {
  return names.filter((n) => phases && phases[n] !== undefined).map((n) => `${n} ${fmt(phases[n])} s`).join(", ");
}

function sumPhases(phases) {
  if (!phases) return null;
  return (phases.prepare || 0) + (phases.pre_migration || 0) + (phases.migration || 0);
}

// -- drawing --------------------------------------------------------------------------------
const rel = (xs) => xs.map((t) => t - D.t0);

function viewBox() {
  const pts = [];
  for (const n of Object.values(D.info.nodes)) if (n.position && n.role !== "cloud") pts.push(n.position);
  for (const u of Object.values(D.state.users)) pts.push([u.x, u.y]);
  const r = D.info.coverage_m || 50;
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
  const x0 = Math.min(...xs) - r * 0.6, x1 = Math.max(...xs) + r * 0.6;
  const y0 = Math.min(...ys) - r * 0.6, y1 = Math.max(...ys) + r * 0.6;
  return {x0, x1, y0, y1};
}

function clamp(p, box) {
  const inside = p[0] >= box.x0 && p[0] <= box.x1 && p[1] >= box.y0 && p[1] <= box.y1;
  return {p: [Math.min(box.x1, Math.max(box.x0, p[0])), Math.min(box.y1, Math.max(box.y0, p[1]))], inside};
}

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

// The map is drawn as SVG by this page itself (no library): it is up before plotly.js is.
// D.map holds what it shows (users and services where they are drawn), for the tests.
function drawMap() {
  const info = D.info, S = D.state, box = viewBox();
  const host = $("map"), width = host.clientWidth || 500, height = host.clientHeight || 420;
  const scale = Math.min((width - 20) / (box.x1 - box.x0), (height - 20) / (box.y1 - box.y0));
  const cx = (box.x0 + box.x1) / 2, cy = (box.y0 + box.y1) / 2;
  const px = (x) => width / 2 + (x - cx) * scale, py = (y) => height / 2 - (y - cy) * scale;
  const root = svg("svg", {width, height, viewBox: `0 0 ${width} ${height}`});
  root.appendChild(svg("defs", {})).appendChild(svg("marker", {id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5,
    markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse"})).appendChild(svg("path", {d: "M0,0 L10,5 L0,10 z", fill: "#e65100"}));
  const where = {}, model = {users: {}, services: {}};
  for (const [name, n] of Object.entries(info.nodes)) {
    if (!n.position || !["edge", "cloud", "ap"].includes(n.role)) continue;
    const c = clamp(n.position, box);
    where[name] = c.p;
    if (n.role === "ap") root.appendChild(svg("circle", {cx: px(c.p[0]), cy: py(c.p[1]), r: info.coverage_m * scale,
      fill: "rgba(106,27,154,0.04)", stroke: "rgba(106,27,154,0.4)", "stroke-dasharray": "3 3"}));
  }
  for (const [name, n] of Object.entries(info.nodes)) {
    if (!where[name]) continue;
    const [x, y] = [px(where[name][0]), py(where[name][1])], inside = clamp(n.position, box).inside;
    const label = inside ? name : `${name} (${n.position.join(", ")} m)`;
    if (n.role === "ap") {
      root.appendChild(svg("path", {d: `M${x},${y - 9} L${x + 8},${y + 6} L${x - 8},${y + 6} z`, fill: "#6a1b9a"}));
      root.appendChild(svg("text", {x, y: y + 20, "text-anchor": "middle", class: "label"}, label));
    } else {
      root.appendChild(svg("rect", {x: x - 8, y: y - 8, width: 16, height: 16, fill: n.role === "cloud" ? "#90a4ae" : "#37474f"}));
      root.appendChild(svg("text", {x, y: y - 12, "text-anchor": "middle", class: "label"}, label));
    }
  }
  for (const [u, p] of Object.entries(S.users)) {
    if (p.ap && where[p.ap]) root.appendChild(svg("line", {x1: px(p.x), y1: py(p.y), x2: px(where[p.ap][0]), y2: py(where[p.ap][1]),
      stroke: "#6a1b9a", "stroke-dasharray": "2 3"}));
  }
  info.services.forEach((service, i) => {
    const server = S.services[service.service], u = S.users[service.user];
    if (!server || !where[server]) return;
    const at = [where[server][0] + (3 * (i % 3) + 3) / scale * 4, where[server][1] + (3 * Math.floor(i / 3) + 4) / scale * 4];
    const color = PALETTE[i % PALETTE.length];
    if (u) root.appendChild(svg("line", {x1: px(u.x), y1: py(u.y), x2: px(at[0]), y2: py(at[1]), stroke: color, "stroke-width": 1.5}));
    const [x, y] = [px(at[0]), py(at[1])];
    const mark = root.appendChild(svg("path", {d: `M${x},${y - 7} L${x + 7},${y} L${x},${y + 7} L${x - 7},${y} z`, fill: color,
      "data-service": service.service, "data-server": server}));
    mark.appendChild(svg("title", {}, `${service.service} on ${server}`));
    model.services[service.service] = [server, at[0], at[1]];
  });
  for (const m of Object.values(S.inflight)) {
    if (!where[m.source] || !where[m.dest]) continue;
    root.appendChild(svg("line", {x1: px(where[m.source][0]), y1: py(where[m.source][1]) + 12, x2: px(where[m.dest][0]),
      y2: py(where[m.dest][1]) + 12, stroke: "#e65100", "stroke-width": 3, "stroke-dasharray": "6 4", "marker-end": "url(#arrow)",
      class: "moving"})).appendChild(svg("title", {}, `moving ${m.service}`));
  }
  for (const [u, p] of Object.entries(S.users)) {
    root.appendChild(svg("circle", {cx: px(p.x), cy: py(p.y), r: 7, fill: "#d32f2f", "data-user": u}));
    root.appendChild(svg("text", {x: px(p.x) + 9, y: py(p.y) - 9, class: "label"}, u + (S.paused[u] ? " (paused)" : "")));
    model.users[u] = [p.x, p.y];
  }
  const legend = svg("text", {x: 8, y: height - 8, class: "legend"},
    `■ servers  ▲ base stations (coverage ${info.coverage_m} m)  ◆ services  ● users  — scale: ${fmt(50 / scale, 0)} m per 50 px`);
  root.appendChild(legend);
  host.replaceChildren(root);
  D.map = model;
}

function timeAxis() { const now = D.now - D.t0; return {range: [Math.max(0, now - WINDOW_S), Math.max(now, 10)], title: {text: "t (s)"}}; }

function ensureUserPlots() {
  const box = $("users");
  if (box.dataset.users === D.info.users.join(",")) return;
  box.dataset.users = D.info.users.join(",");
  box.innerHTML = "";
  for (const u of D.info.users) {
    box.insertAdjacentHTML("beforeend", `<h2>${u}: RSSI of every base station</h2><div id="rssi-${u}" class="plot"></div>` +
      `<h2>${u}: E2E delay (processing + transmission), downtime shaded</h2><div id="e2e-${u}" class="plot"></div>`);
  }
}

function drawUsers() {
  ensureUserPlots();
  const S = D.state, axis = timeAxis();
  const aps = Object.keys(D.info.nodes).filter((n) => D.info.nodes[n].role === "ap");
  for (const u of D.info.users) {
    const per = S.rssi[u] || {};
    const traces = aps.filter((ap) => per[ap]).map((ap, i) => ({name: ap, type: "scatter", mode: "lines",
      x: rel(per[ap].x), y: per[ap].y, line: {color: PALETTE[aps.indexOf(ap) % PALETTE.length], width: 1.5}}));
    const shapes = [{type: "line", xref: "paper", x0: 0, x1: 1, y0: D.info.sensitivity_dbm, y1: D.info.sensitivity_dbm,
                     line: {color: "#c62828", dash: "dash", width: 1}}];
    for (const t of S.handovers[u] || []) shapes.push({type: "line", yref: "paper", x0: t - D.t0, x1: t - D.t0, y0: 0, y1: 1,
                                                      line: {color: "#6a1b9a", width: 1, dash: "dot"}});
    Plotly.react(`rssi-${u}`, traces, {margin: {l: 50, r: 10, t: 5, b: 35}, xaxis: axis,
      yaxis: {title: {text: "dBm"}}, shapes, uirevision: "r",
      annotations: [{xref: "paper", x: 0, y: D.info.sensitivity_dbm, text: `sensitivity ${D.info.sensitivity_dbm} dBm, hysteresis ${D.info.hysteresis_db} dB`,
                     showarrow: false, yanchor: "bottom", xanchor: "left", font: {size: 10, color: "#c62828"}}]},
      {displayModeBar: false, responsive: true});
    const traces2 = [], shapes2 = [];
    for (const e of Object.values(S.e2e).filter((e) => e.user === u)) {
      traces2.push({name: `${e.service} processing`, type: "scatter", mode: "lines", x: rel(e.proc.x), y: e.proc.y,
                    fill: "tozeroy", line: {width: 1, color: "#2e7d32"}});
      traces2.push({name: `${e.service} E2E`, type: "scatter", mode: "lines", x: rel(e.total.x), y: e.total.y,
                    fill: "tonexty", line: {width: 1, color: "#1565c0"}});
      traces2.push({name: `${e.service} failed`, type: "scatter", mode: "markers", x: rel(e.fail.x), y: e.fail.y,
                    marker: {symbol: "x", color: "#c62828", size: 6}});
    }
    const intervals = (S.outages[u] || []).slice();
    for (const [key, start] of Object.entries(S.open)) if (key.startsWith(u + "|")) intervals.push([start, D.now]);
    for (const [a, b] of intervals) shapes2.push({type: "rect", yref: "paper", x0: a - D.t0, x1: b - D.t0, y0: 0, y1: 1,
                                                  fillcolor: "rgba(198,40,40,0.18)", line: {width: 0}});
    Plotly.react(`e2e-${u}`, traces2, {margin: {l: 50, r: 10, t: 5, b: 35}, xaxis: axis, yaxis: {title: {text: "ms"}, rangemode: "tozero"},
      shapes: shapes2, uirevision: "e", legend: {font: {size: 10}}}, {displayModeBar: false, responsive: true});
  }
}

function drawServers() {
  const S = D.state, axis = timeAxis(), limit = 100 * D.info.cpu_threshold;
  const servers = Object.keys(D.info.nodes).filter((n) => ["edge", "cloud"].includes(D.info.nodes[n].role));
  const cpu = servers.filter((s) => S.cpu[s]).map((s, i) => ({name: s, type: "scatter", mode: "lines+markers",
    x: rel(S.cpu[s].x), y: S.cpu[s].y, line: {color: "#90a4ae", width: 1},
    marker: {size: 5, color: S.cpu[s].y.map((v) => v > limit ? "#c62828" : "#2e7d32")}}));
  Plotly.react("cpu", cpu, {margin: {l: 50, r: 10, t: 5, b: 35}, xaxis: axis, yaxis: {title: {text: "CPU %"}, rangemode: "tozero"},
    shapes: [{type: "line", xref: "paper", x0: 0, x1: 1, y0: limit, y1: limit, line: {color: "#c62828", dash: "dash", width: 1}}],
    annotations: [{xref: "paper", x: 0, y: limit, text: `threshold ${limit} % (${D.info.cpu_threshold_from})`, showarrow: false,
                   xanchor: "left", yanchor: "bottom", font: {size: 10, color: "#c62828"}}], uirevision: "c"},
    {displayModeBar: false, responsive: true});
  const mem = servers.filter((s) => S.mem[s]).map((s) => ({name: s, type: "scatter", mode: "lines", x: rel(S.mem[s].x), y: S.mem[s].y}));
  Plotly.react("mem", mem, {margin: {l: 50, r: 10, t: 5, b: 35}, xaxis: axis, yaxis: {title: {text: "MiB"}, rangemode: "tozero"},
    uirevision: "m"}, {displayModeBar: false, responsive: true});
}

function drawEvents() {
  const S = D.state, box = $("events");
  if (box.dataset.count === String(S.events.length) && box.dataset.last === String(S.events.length && S.events[S.events.length - 1].t)) return;
  const atBottom = box.scrollTop + box.clientHeight >= box.scrollHeight - 5;
  box.innerHTML = S.events.map((e) => `<div class="${e.cls}" data-t="${e.t}">${fmt(e.t - D.t0, 1).padStart(7)}  ${escape(e.text)}</div>`).join("");
  box.dataset.count = String(S.events.length);
  box.dataset.last = String(S.events.length && S.events[S.events.length - 1].t);
  if (atBottom) box.scrollTop = box.scrollHeight;
}

function escape(text) { return String(text).replace(/[&<>]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;"}[c])); }

function forget() {
  // live and replay alike: nothing older than the charts' window (plus a margin) is kept
  const S = D.state, from = D.now - WINDOW_S - 10;
  for (const per of Object.values(S.rssi)) for (const s of Object.values(per)) trim(s, from);
  for (const e of Object.values(S.e2e)) { trim(e.proc, from); trim(e.total, from); trim(e.fail, from); }
  for (const s of Object.values(S.cpu)) trim(s, from);
  for (const s of Object.values(S.mem)) trim(s, from);
  for (const [u, list] of Object.entries(S.outages)) S.outages[u] = list.filter(([, b]) => b >= from);
  for (const [u, list] of Object.entries(S.handovers)) S.handovers[u] = list.filter((t) => t >= from);
}

function render() {
  if (!D.info || D.now === null) return;
  forget();
  $("clock").textContent = fmt(D.now - D.t0, 1);
  drawMap(); drawEvents();
  if (window.Plotly) {
    drawUsers(); drawServers();
    if (D.chartsMs === null) D.chartsMs = performance.now();
  }
  $("planner-state").textContent = D.state.manual ? "planner is OFF (manual)" : `planner ${D.info.planner} is on`;
  D.frames++;
  if (D.readyMs === null) {
    D.readyMs = performance.now();
    loadCharts();
  }
}

function loadCharts() {
  // plotly.js (4.6 MB) takes about a second to compile in a fresh browser: the map, the
  // events and the controls are up before it, the charts join when it is
  const script = document.createElement("script");
  script.src = "/static/vendor/plotly.min.js";
  script.onload = () => render();
  document.head.appendChild(script);
}

// -- set-up -----------------------------------------------------------------------------------
function showInfo(info) {
  D.info = info;
  $("run").textContent = info.run;
  $("trial").textContent = `${info.trial} (${info.planner})`;
  $("mode").textContent = info.mode.toUpperCase();
  $("mode").className = "badge " + info.mode;
  $("config").textContent = info.config;
  $("environment").textContent = JSON.stringify(info.environment, null, 2);
  const fill = (id, values, selected) => { $(id).innerHTML = values.map((v) => `<option${v === selected ? " selected" : ""}>${v}</option>`).join(""); };
  const nodes = Object.keys(info.nodes);
  fill("c-service", info.services.map((s) => s.service));
  fill("c-server", nodes.filter((n) => ["edge", "cloud"].includes(info.nodes[n].role)));
  fill("c-mode", info.modes, info.default_mode);
  fill("c-user", info.users);
  fill("c-ap", nodes.filter((n) => info.nodes[n].role === "ap"));
  $("controls").hidden = !info.control;
}

async function order(body) {
  const reply = $("reply");
  try {
    const response = await fetch("/api/control", {method: "POST", body: JSON.stringify(body),
      headers: {"Content-Type": "application/json", "X-Token": $("token").value}});
    const result = await response.json();
    reply.className = "reply" + (response.ok ? "" : " refused");
    reply.textContent = response.ok ? `accepted: decision #${result.decision}` : `${response.status}: ${result.error}`;
  } catch (err) {
    reply.className = "reply refused"; reply.textContent = String(err);
  }
}

function wireControls() {
  $("migrate").onclick = () => order({action: "migrate", service: $("c-service").value, dest: $("c-server").value, mode: $("c-mode").value});
  $("handover").onclick = () => order({action: "handover", user: $("c-user").value, ap: $("c-ap").value});
  $("pause").onclick = () => order({action: "pause", user: $("c-user").value});
  $("resume").onclick = () => order({action: "resume", user: $("c-user").value});
  $("manual-on").onclick = () => order({action: "manual", on: true});
  $("manual-off").onclick = () => order({action: "manual", on: false});
  const token = new URLSearchParams(location.search).get("token");
  if (token) $("token").value = token;
}

function live() {
  D.mode = "live";
  const source = new EventSource("/api/stream");
  source.onmessage = (message) => {
    const batch = JSON.parse(message.data), arrived = Date.now() / 1000;
    if (batch.info && (!D.info || batch.info.trial !== D.info.trial)) {
      D.state = freshState(); D.t0 = null; D.now = null;
      showInfo(batch.info);
    }
    if (!D.state) D.state = freshState();
    let newest = null;
    for (const item of batch.items) {
      if (item.k === "trial") continue;
      apply(item);
      if (item.t !== null) newest = item.t;
    }
    if (newest !== null && batch.sent - newest < 1.0) {     // a fresh batch, not the catch-up of the first one
      D.latencies.push(arrived - newest);
      if (D.latencies.length > 1000) D.latencies.shift();
    }
    $("status").textContent = `${D.items} items`;
    if (D.frames === 0) render();          // the first drawing does not wait for the next frame
  };
  source.onerror = () => { $("status").textContent = "the run has ended or the server is gone"; };
}

async function replay() {
  D.mode = "replay";
  const data = await (await fetch("/api/timeline")).json();
  const items = data.items.filter((i) => i.t !== null);
  showInfo(data.info);
  $("replay").hidden = false;
  const first = items.length ? items[0].t : 0, last = items.length ? items[items.length - 1].t : 0;
  const slider = $("slider");
  slider.max = String(last - first);
  $("span").textContent = `${fmt(last - first, 1)} s`;
  let index = 0, playing = false, previous = null;
  D.t0 = first;
  D.state = freshState();
  const seek = (t) => {               // rebuild the state at t: events from the start, series from the window
    D.state = freshState(); D.items = 0; index = 0;
    const from = t - WINDOW_S - 10;
    while (index < items.length && items[index].t <= t) {
      const item = items[index++];
      if (item.k === "ev" || item.t >= from) apply(item);
    }
    D.now = t; D.t0 = first;
  };
  const advance = (t) => {
    while (index < items.length && items[index].t <= t) apply(items[index++]);
    D.now = t;
  };
  seek(first);
  render();
  slider.oninput = () => { seek(first + Number(slider.value)); render(); };
  $("play").onclick = () => { playing = !playing; previous = null; $("play").textContent = playing ? "pause" : "play"; };
  D.replay = {seek: (s) => { seek(first + s); render(); }, play: (speed) => { $("speed").value = String(speed); playing = true; previous = null; },
              pause: () => { playing = false; }, index: () => index};
  setInterval(() => {
    if (!playing) return;
    const wall = performance.now() / 1000;
    if (previous !== null) {
      const t = Math.min(last, D.now + (wall - previous) * Number($("speed").value));
      advance(t);
      slider.value = String(t - first);
      if (t >= last) { playing = false; $("play").textContent = "play"; }
    }
    previous = wall;
  }, 50);
}

async function main() {
  wireControls();
  const {mode} = await (await fetch("/api/mode")).json();
  if (mode === "live") live(); else await replay();
  setInterval(render, RENDER_MS);
}

main();
