// app.js - the emads live dashboard. Plain browser JavaScript, no
// libraries, no build step. Data (docs/API.md):
//   GET /api/spend         the current period's accounts: per agent, per key, global
//   GET /api/tasks         recent tasks; GET /api/tasks/ID one task's steps
//   GET /api/events        server-sent events relayed from the bus
// Events drive the page: a step event updates that task's steps at once,
// spend.commit and task events schedule a refresh of the spend or task
// list (at most one request in flight per kind), alert.* go to the alert
// list. A slow poll (every 10 s; ?poll=SECONDS, 0 = none) covers events
// missed while disconnected.
// Every text that came from the server is set with textContent.
"use strict";

const POLL_S = Number(new URLSearchParams(location.search).get("poll") ?? 10);
const POLL_MS = Number.isFinite(POLL_S) && POLL_S >= 0 ? POLL_S * 1000 : 10000;
const MAX_TASKS = 12;
const MAX_ALERTS = 50;
const MAX_POINTS = 720;
const ENDED = ["done", "failed", "budget_exhausted", "cancelled"];

const $ = (id) => document.getElementById(id);
const state = { tasks: new Map(), order: [], points: [], busy: {}, again: {} };

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function usd(uusd) {
  if (uusd === undefined || uusd === null) return "-";
  if (uusd < 0) return "unlimited";
  return "$" + (uusd / 1e6).toFixed(uusd >= 1e6 ? 2 : 4);
}

function ms(v) {
  if (v === undefined || v === null) return "-";
  if (v < 1000) return v + "ms";
  if (v < 60000) return (v / 1000).toFixed(1) + "s";
  return Math.floor(v / 60000) + "m" + String(Math.floor((v % 60000) / 1000)).padStart(2, "0") + "s";
}

function hhmmss(t) {
  return new Date(t).toLocaleTimeString([], { hour12: false });
}

async function getJSON(url) {
  const r = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" });
  if (!r.ok) throw new Error(url + ": HTTP " + r.status);
  return r.json();
}

// Run fn for kind at most once at a time; a call while busy runs it once more after.
function refresh(kind, fn) {
  if (state.busy[kind]) {
    state.again[kind] = true;
    return;
  }
  state.busy[kind] = true;
  fn().catch((e) => console.warn(e)).finally(() => {
    state.busy[kind] = false;
    if (state.again[kind]) {
      state.again[kind] = false;
      refresh(kind, fn);
    }
  });
}

// ---- spend -----------------------------------------------------------------

function meter(used, limit) {
  const m = el("div", "meter");
  const bar = el("div");
  const frac = limit > 0 ? Math.min(1, used / limit) : 0;
  bar.style.width = (frac * 100).toFixed(1) + "%";
  if (frac >= 0.95) m.classList.add("crit");
  else if (frac >= 0.8) m.classList.add("warn");
  m.append(bar, el("span", null, usd(used) + " / " + (limit < 0 ? "-" : usd(limit)) + (limit > 0 ? "  (" + (frac * 100).toFixed(0) + "%)" : "")));
  return m;
}

function dimCell(used, limit) {
  return el("td", "num", limit >= 0 ? used + " / " + limit : String(used));
}

async function loadSpend() {
  const d = await getJSON("/api/spend");
  const body = $("spend").tBodies[0];
  body.replaceChildren();
  // the current period's accounts: per agent, then per gateway key
  const keys = (d.keys || []).map((k) => Object.assign({}, k, { name: "key:" + k.name }));
  const rows = (d.agents || []).concat(keys);
  for (const a of rows) {
    const tr = el("tr");
    tr.dataset.agent = a.name;
    const c = el("td");
    c.append(meter(a.used.cost_uusd, a.limit.cost_uusd));
    tr.append(el("td", null, a.name), c, dimCell(a.used.tokens, a.limit.tokens),
              dimCell(a.used.tool_calls, a.limit.tool_calls), el("td", "num", usd(a.held.cost_uusd)),
              el("td", null, (a.period || "") + (a.budget === false ? " (no period budget)" : "")));
    body.append(tr);
  }
  const g = d.global;
  $("global").textContent = g
    ? "Global account this period: " + usd(g.used.cost_uusd) + " used, " + usd(g.held.cost_uusd) +
      " held, limit " + usd(g.limit.cost_uusd) + "."
    : "No global account configured.";
  const total = g ? g.used.cost_uusd : rows.reduce((s, a) => s + a.used.cost_uusd, 0);
  state.points.push([Date.now(), total]);
  if (state.points.length > MAX_POINTS) state.points.shift();
  drawChart();
  $("updated").textContent = "updated " + hhmmss(Date.now());
}

function drawChart() {
  const cv = $("chart");
  const dpr = window.devicePixelRatio || 1;
  const w = cv.clientWidth || 640, h = cv.clientHeight || 180;
  if (cv.width !== Math.round(w * dpr)) { cv.width = Math.round(w * dpr); cv.height = Math.round(h * dpr); }
  const g = cv.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  const pts = state.points;
  const pad = { l: 64, r: 10, t: 10, b: 22 };
  g.font = "11px system-ui, sans-serif";
  g.fillStyle = "#667085";
  g.strokeStyle = "#d9dee7";
  g.strokeRect(pad.l, pad.t, w - pad.l - pad.r, h - pad.t - pad.b);
  if (pts.length === 0) return;
  const t0 = pts[0][0], t1 = Math.max(pts[pts.length - 1][0], t0 + 1000);
  const vmin = Math.min(...pts.map((p) => p[1])), vmax = Math.max(...pts.map((p) => p[1]), vmin + 1);
  const x = (t) => pad.l + ((t - t0) / (t1 - t0)) * (w - pad.l - pad.r);
  const y = (v) => h - pad.b - ((v - vmin) / (vmax - vmin)) * (h - pad.t - pad.b);
  g.fillText(usd(vmax), 4, pad.t + 9);
  g.fillText(usd(vmin), 4, h - pad.b);
  g.fillText(hhmmss(t0), pad.l, h - 6);
  const right = hhmmss(t1);
  g.fillText(right, w - pad.r - g.measureText(right).width, h - 6);
  g.strokeStyle = "#3b6fd4";
  g.lineWidth = 2;
  g.beginPath();
  pts.forEach((p, i) => (i ? g.lineTo(x(p[0]), y(p[1])) : g.moveTo(x(p[0]), y(p[1]))));
  g.stroke();
}

// ---- tasks -------------------------------------------------------------------

function taskView(t) {
  let v = state.tasks.get(t.task);
  if (!v) {
    v = { id: t.task, steps: new Map(), node: el("div", "task") };
    v.node.dataset.task = t.task;
    state.tasks.set(t.task, v);
  }
  for (const k of ["state", "class", "text", "created_ms"]) if (t[k] !== undefined) v[k] = t[k];
  return v;
}

function renderTask(v) {
  const head = el("div", "task-head");
  head.append(el("span", "task-id", v.id), el("span", "state " + (v.state || ""), v.state || "?"),
              el("span", null, v.class || ""), el("span", "task-text", v.text || ""));
  const table = el("table", "steps");
  for (const s of v.steps.values()) {
    const tr = el("tr");
    tr.dataset.step = s.step;
    const how = [s.path, s.model].filter(Boolean).join(" ");
    const spent = s.actual ? usd(s.actual.cost_uusd) + ", " + (s.actual.tokens || 0) + " tok" : "";
    const took = s.started_ms ? ms((s.ended_ms || Date.now()) - s.started_ms) : "";
    tr.append(el("td", null, s.step), el("td", null, s.agent), el("td", "state " + s.state, s.state),
              el("td", null, how), el("td", "num", took), el("td", "num", spent));
    table.append(tr);
  }
  v.node.replaceChildren(head, table);
}

function renderTasks() {
  const box = $("tasks");
  const ids = state.order.slice(0, MAX_TASKS);
  box.replaceChildren(...ids.map((id) => state.tasks.get(id).node));
  if (ids.length === 0) box.append(el("p", "note", "No tasks yet."));
}

async function loadTask(id) {
  const d = await getJSON("/api/tasks/" + encodeURIComponent(id));
  const v = taskView(d);
  for (const s of d.steps || []) v.steps.set(s.step, s);
  renderTask(v);
}

async function loadTasks() {
  const d = await getJSON("/api/tasks?limit=" + MAX_TASKS);
  state.order = (d.tasks || []).map((t) => t.task);
  for (const t of d.tasks || []) {
    const v = taskView(t);
    if (!v.settled) {
      // steps of an ended task no longer change: fetched once after it ended
      const ended = ENDED.includes(t.state);
      await loadTask(t.task).then(() => { v.settled = ended; }, (e) => console.warn(e));
    } else renderTask(v);
  }
  for (const id of [...state.tasks.keys()]) if (!state.order.includes(id)) state.tasks.delete(id);
  renderTasks();
}

function onStep(e) {
  const v = state.tasks.get(e.task);
  if (!v) return refresh("tasks", loadTasks);
  const d = e.data || {};
  const s = Object.assign(v.steps.get(e.step) || { step: e.step }, {
    agent: e.agent, state: d.state || (e.topic === "step.started" ? "running" : "done"),
  });
  if (e.path) s.path = e.path;
  if (e.model) s.model = e.model;
  if (e.amounts) s.actual = e.amounts;
  if (e.topic === "step.started") { s.started_ms = e.at_ms; delete s.ended_ms; }
  else s.ended_ms = e.at_ms;
  v.steps.set(e.step, s);
  if (v.state === "queued") v.state = "running";
  renderTask(v);
}

// ---- alerts and the event stream ----------------------------------------------

function onAlert(e) {
  const kind = e.topic.slice("alert.".length);
  const li = el("li", kind);
  li.dataset.topic = e.topic;
  li.append(el("time", null, hhmmss(e.at_ms || Date.now())),
            el("span", null, e.message || [kind, e.agent, e.account, e.dimension].filter(Boolean).join(" ")));
  const list = $("alerts");
  list.prepend(li);
  while (list.children.length > MAX_ALERTS) list.lastChild.remove();
  $("no-alerts").hidden = true;
}

function connect() {
  const es = new EventSource("/api/events");
  const conn = $("conn");
  es.onopen = () => {
    conn.textContent = "live";
    conn.className = "conn on";
    refresh("spend", loadSpend);
    refresh("tasks", loadTasks);
  };
  es.onerror = () => {
    conn.textContent = "reconnecting…";
    conn.className = "conn off";
  };
  const handle = (msg) => {
    let e;
    try { e = JSON.parse(msg.data); } catch (_) { return; }
    const topic = e.topic || msg.type;
    e.topic = topic;
    if (topic.startsWith("step.")) onStep(e);
    else if (topic.startsWith("task.")) refresh("tasks", loadTasks);
    else if (topic === "spend.commit") refresh("spend", loadSpend);
    if (topic.startsWith("alert.")) { onAlert(e); refresh("spend", loadSpend); }
  };
  for (const t of ["task.submitted", "task.started", "task.done", "task.failed", "step.started",
                   "step.done", "spend.commit", "alert.warn", "alert.critical", "alert.denied",
                   "alert.overrun", "alert.expired"])
    es.addEventListener(t, handle);
  es.onmessage = handle; // events sent without an "event:" line
  es.addEventListener("gateway.bus_lost", () => {
    conn.textContent = "bus not answering";
    conn.className = "conn off";
  });
  es.addEventListener("gateway.bus_back", () => {
    conn.textContent = "live";
    conn.className = "conn on";
    refresh("spend", loadSpend);
    refresh("tasks", loadTasks);
  });
}

window.addEventListener("resize", drawChart);
refresh("spend", loadSpend);
refresh("tasks", loadTasks);
if (POLL_MS > 0) setInterval(() => { refresh("spend", loadSpend); refresh("tasks", loadTasks); }, POLL_MS);
setInterval(() => { for (const v of state.tasks.values()) if (v.state === "running") renderTask(v); }, 1000);
connect();
