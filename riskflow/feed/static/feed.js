// RiskFlow officers' feed: alert list + live stream (server-sent events), entity page, lifecycle
// actions, and the routes of the views (the board and cases live in board.js).
"use strict";

const state = { token: null, meta: null, alerts: new Map(), selected: null, detailDirty: false, seq: 0, es: null, fresh: new Map(), rowCache: new Map(),
  paused: false, pending: new Map() };  // paused: stream updates wait in `pending` (latest per alert id)
const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k === "style") Object.assign(e.style, v);  // CSSOM, which the page's CSP allows (a style attribute it does not)
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const k of kids) if (k !== null && k !== undefined) e.append(k.nodeType ? k : String(k));
  return e;
};

async function api(path, opts = {}) {
  const headers = { Authorization: "Bearer " + state.token };
  if (opts.body) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { ...opts, headers });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw Object.assign(new Error(body.message || r.statusText), { status: r.status });
  return body;
}

const MAX_ROWS = 300;
const LEVEL = { red: "红 Red", orange: "橙 Orange", yellow: "黄 Yellow", green: "绿 Green" };
const ACTION_ZH = { ack: "确认", assign: "分派", resolve: "办结", snooze: "暂缓", reopen: "重新打开", snooze_expired: "暂缓到期" };
const STATUS_ZH = { open: "待处置", acknowledged: "已确认", assigned: "已分派", snoozed: "暂缓", resolved: "已办结" };
// Officers work in Zhejiang: every time is shown in China Standard Time (UTC+8).
const fmtTime = (t) => {
  const d = t ? new Date(t) : null;
  if (!d || isNaN(d)) return t || "";
  return d.toLocaleString("sv-SE", { timeZone: "Asia/Shanghai", hour12: false }).slice(0, 16);
};
const money = (x) => (x ? "¥" + Math.round(x).toLocaleString("en-US") : "");

function levelBadge(level) {
  return el("span", { class: "level " + (level || "none") }, level ? LEVEL[level] || level : "—");
}

// ---- sign-in -----------------------------------------------------------------------------
async function start() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    localStorage.setItem("riskflow.token", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + "#/");
  }
  state.token = localStorage.getItem("riskflow.token");
  if (!state.token) return showLogin("");
  try {
    state.meta = await api("/api/meta");
  } catch (e) {
    return showLogin(e.status === 401 ? "Unknown token 令牌无效" : e.message);
  }
  $("#login").hidden = true;
  $("#me").textContent = `${state.meta.me.name} · ${state.meta.me.role}`;
  fillFilters();
  fillBoardFilters();
  await loadList();
  connect();
  window.addEventListener("hashchange", route);
  route();
}

function showLogin(msg) {
  $("#login").hidden = false;
  $("#login-error").textContent = msg;
  $("#login-form").onsubmit = (ev) => {
    ev.preventDefault();
    localStorage.setItem("riskflow.token", $("#token").value.trim());
    start();
  };
}

function fillFilters() {
  const f = $("#filters");
  const add = (name, items) => {
    const s = f.elements[name];
    for (const [v, label] of items) s.append(el("option", { value: v }, label));
  };
  add("region", state.meta.regions.map((r) => [r.code, `${r.zh} ${r.en}`]));
  add("level", state.meta.levels.map((l) => [l.id, `${l.zh} ${l.en}`]));
  add("kind", state.meta.entity_kinds.map((k) => [k.id, `${k.zh} ${k.en}`]));
  add("rule", state.meta.rules.map((r) => [r.rule_id, `${r.title_zh} ${r.title_en}`]));
  add("status", state.meta.statuses.map((s) => [s.id, `${s.zh} ${s.en}`]));
  f.addEventListener("change", () => renderList());
  $("#pause").addEventListener("click", togglePause);
}

function addRuleOption(a) {
  const s = $("#filters").elements.rule;
  if ([...s.options].some((o) => o.value === a.rule_id)) return;
  s.append(el("option", { value: a.rule_id }, `${a.title_zh} ${a.title_en}`));
}

// ---- list + live stream ------------------------------------------------------------------
async function loadList() {
  const data = await api("/api/alerts?limit=500");
  state.seq = data.seq;
  state.alerts = new Map(data.alerts.map((a) => [a.alert_id, a]));
  renderList();
}

function connect() {
  if (state.es) state.es.close();
  const es = new EventSource(`/api/stream?token=${encodeURIComponent(state.token)}&since=${state.seq}`);
  state.es = es;
  const conn = $("#conn");
  es.onopen = () => {
    conn.className = "conn on"; conn.lastChild.textContent = "live 实时";
    caseChanged(null);  // case changes are not replayed across a reconnect: read the open views again
  };
  es.onerror = () => {
    conn.className = "conn off";
    conn.lastChild.textContent = "reconnecting 重连中";
    // A refused stream (e.g. 503 at the feed's stream limit) is not retried by EventSource itself:
    // try again later, unless the token itself is no longer accepted.
    if (es.readyState === EventSource.CLOSED && state.es === es) setTimeout(retryStream, 5000 + Math.random() * 5000, es);
  };
  es.addEventListener("alert", (ev) => {
    const a = JSON.parse(ev.data);
    state.seq = Math.max(state.seq, a.seq);
    const cur = state.alerts.get(a.alert_id);
    if (cur && cur.seq >= a.seq) return;  // already shown (e.g. the officer's own action)
    if (state.paused) {  // the officer is reading: count it, apply it on resume
      state.pending.set(a.alert_id, a);
      showPending();
      return;
    }
    apply(a);
    scheduleRender();
    boardChanged();
  });
  // A case changed (another officer, the CLI, or the sink opening or raising it): the board and
  // an open case page show it at once (board.js caseChanged).
  es.addEventListener("case", (ev) => caseChanged(JSON.parse(ev.data)));
}

async function retryStream(es) {
  if (state.es !== es) return;
  try {
    await api("/api/meta");
  } catch (e) {
    if (e.status === 401) { state.es = null; return showLogin("Unknown token 令牌无效"); }
  }
  if (state.es === es) connect();
}

function apply(a) {
  const known = state.alerts.has(a.alert_id);
  state.alerts.set(a.alert_id, a);
  if (!known) state.fresh.set(a.alert_id, Date.now());  // highlighted for a few seconds
  addRuleOption(a);
  if (state.selected === a.alert_id) state.detailDirty = true;
}

// Pause 暂停: freeze the list while reading; new and changed alerts are counted in a badge
// and applied on resume 继续.
function togglePause() {
  state.paused = !state.paused;
  const b = $("#pause");
  b.setAttribute("aria-pressed", String(state.paused));
  b.textContent = state.paused ? "Resume 继续" : "Pause 暂停";
  if (!state.paused) {
    for (const a of state.pending.values()) apply(a);
    state.pending.clear();
    scheduleRender();
  }
  showPending();
}

function showPending() {
  const badge = $("#pending");
  const n = state.pending.size;
  badge.hidden = !state.paused;
  badge.textContent = `${n} new 条更新`;
}

// Events come in bursts (a replay, a reconnect's backlog): redraw at most a few times a second.
let renderPending = false;
function scheduleRender() {
  if (renderPending) return;
  renderPending = true;
  setTimeout(() => {
    renderPending = false;
    renderList();
    if (state.detailDirty && state.selected) renderDetail(state.selected);
    state.detailDirty = false;
  }, 250);
}

function matches(a, f) {
  return (!f.region || a.region === f.region) && (!f.level || a.risk_level === f.level) &&
    (!f.kind || a.entity_kind === f.kind) && (!f.rule || a.rule_id === f.rule) && (!f.status || a.status === f.status);
}

function renderList() {
  const now = Date.now();
  for (const [k, t] of state.fresh) if (now - t > 3000) state.fresh.delete(k);
  const f = Object.fromEntries(new FormData($("#filters")));
  const rows = [...state.alerts.values()].filter((a) => matches(a, f));
  rows.sort((x, y) => (y.event_time > x.event_time ? 1 : y.event_time < x.event_time ? -1 : x.alert_id < y.alert_id ? -1 : 1));
  const tbody = $("#alerts tbody");
  const shown = rows.slice(0, MAX_ROWS);  // a bounded page: filters narrow it down
  // Rows of unchanged alerts are reused, so a live update does not swallow a click on them.
  const cache = new Map();
  tbody.replaceChildren(...shown.map((a) => {
    const isFresh = now - (state.fresh.get(a.alert_id) || 0) < 3000;
    const key = `${a.seq}|${a.alert_id === state.selected}`;
    const old = state.rowCache.get(a.alert_id);
    if (old && old.key === key) {
      if (!isFresh) old.tr.classList.remove("fresh");
      cache.set(a.alert_id, old);
      return old.tr;
    }
    const tr = el("tr", { "data-alert-id": a.alert_id, class: (isFresh ? "fresh " : "") + (a.alert_id === state.selected ? "selected" : "") },
      el("td", {}, fmtTime(a.event_time)),
      el("td", {}, levelBadge(a.risk_level)),
      el("td", { class: "num" }, a.risk_index ? a.risk_index.toFixed(1) : ""),
      el("td", {}, `${a.region_zh} ${a.region_en}`),
      el("td", {}, el("a", { href: `#/entity/${encodeURIComponent(a.entity_id)}`, onclick: (e) => e.stopPropagation() }, a.entity_id),
        el("div", { class: "sub" }, a.entity_kind_zh)),
      el("td", {}, a.title_zh, el("div", { class: "sub" }, a.title_en)),
      el("td", { class: "num" }, a.affected_people ? `${a.affected_people} 人` : "", el("div", { class: "sub" }, money(a.affected_amount))),
      el("td", { class: "status " + a.status }, `${a.status_zh} ${a.status}`, a.assignee ? el("div", { class: "sub" }, "→ " + a.assignee) : null),
    );
    tr.addEventListener("click", () => { state.selected = a.alert_id; renderList(); renderDetail(a.alert_id); });
    cache.set(a.alert_id, { key, tr });
    return tr;
  }));
  state.rowCache = cache;
  const more = rows.length > shown.length ? ` (first ${shown.length} shown 仅显示前${shown.length}条)` : "";
  $("#count").textContent = `${rows.length} / ${state.alerts.size} alerts 条预警${more}`;
}

async function renderDetail(id, clear = false) {
  const panel = $("#detail");
  const a = await api(`/api/alerts/${encodeURIComponent(id)}`);
  // A live update re-renders the panel: keep what the officer is typing (cleared after an action).
  const prev = panel.querySelector("form.actions");
  const typed = prev && !clear && panel.dataset.alertId === id ? Object.fromEntries(new FormData(prev)) : null;
  const node = $("#detail-tpl").content.cloneNode(true);
  $(".title", node).append(levelBadge(a.risk_level), " ", `${a.title_zh} ${a.title_en}`);
  const facts = $(".facts", node);
  const fact = (k, v) => facts.append(el("dt", {}, k), el("dd", {}, v));
  fact("Alert 预警编号", a.alert_id);
  fact("Entity 主体", el("a", { href: `#/entity/${encodeURIComponent(a.entity_id)}` }, a.entity_id));
  fact("Region 地区", `${a.region_zh} ${a.region_en} (${a.region})`);
  fact("Risk index 风险指数", a.risk_index ? a.risk_index.toFixed(1) : "—");
  fact("Tags 风险标签", (a.risk_tags || []).join(", ") || "—");
  fact("Severity 严重度", a.severity);
  fact("Status 状态", el("span", { class: "status " + a.status, "data-field": "status" }, `${a.status_zh} ${a.status}`));
  if (a.assignee) fact("Assignee 承办人", a.assignee);
  if (a.snooze_until) fact("Snoozed until 暂缓至", `${fmtTime(a.snooze_until)} — ${a.snooze_reason}${a.snooze_by ? ` (${a.snooze_by})` : ""}`);
  if (a.episode) fact("Episode 事件", `${a.episode.count || 1}× · ${fmtTime(a.episode.first_seen)} → ${fmtTime(a.episode.last_seen)}`);
  $(".evidence", node).textContent = JSON.stringify(a.evidence, null, 2);
  const st = (s) => `${STATUS_ZH[s] || ""} ${s}`.trim();
  $(".audit", node).append(...a.audit.map((e) => el("li", {}, `${fmtTime(e.at)} · ${e.actor} · ${e.action} ${ACTION_ZH[e.action] || ""}: ${st(e.from_status)} → ${st(e.to_status)}`, e.note ? el("div", { class: "sub" }, e.note) : null)));
  const form = $(".actions", node);
  form.addEventListener("submit", (ev) => ev.preventDefault());
  for (const b of form.querySelectorAll("button[data-action]")) b.addEventListener("click", () => act(a.alert_id, b.dataset.action, form));
  if (typed) for (const [k, v] of Object.entries(typed)) if (form.elements[k]) form.elements[k].value = v;
  panel.replaceChildren(node);
  panel.dataset.alertId = id;
  panel.hidden = false;
}

async function act(id, action, form) {
  const v = Object.fromEntries(new FormData(form));
  const body = { note: v.note || "" };
  if (action === "assign") body.assignee = v.assignee || "";
  if (action === "snooze") { body.reason = v.reason || ""; body.until = v.until ? new Date(v.until).toISOString() : undefined; }
  try {
    const a = await api(`/api/alerts/${encodeURIComponent(id)}/${action}`, { method: "POST", body: JSON.stringify(body) });
    state.alerts.set(a.alert_id, a);
    renderList();
    renderDetail(id, true);
  } catch (e) {
    $(".action-error", form).textContent = e.message;
  }
}

// ---- entity page -------------------------------------------------------------------------
// #/ board 风险看板 · #/alerts alert list · #/entity/ID · #/case/ID · #/case/ID/report (board.js)
function route() {
  const h = location.hash || "#/";
  const entity = h.match(/^#\/entity\/(.+)$/);
  const report = h.match(/^#\/case\/([^/]+)\/report$/);
  const kase = !report && h.match(/^#\/case\/([^/]+)$/);
  const view = entity ? "entity" : report ? "report" : kase ? "case" : h.startsWith("#/alerts") ? "list"
    : h.startsWith("#/quality") ? "quality" : "board";
  for (const v of ["board", "list", "entity", "case", "report", "quality"]) $(`#${v}-view`).hidden = v !== view;
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("current", a.dataset.view === (view === "list" ? "alerts" : view));
  if (entity) renderEntity(decodeURIComponent(entity[1]));
  if (kase) renderCase(decodeURIComponent(kase[1]));
  if (report) renderReport(decodeURIComponent(report[1]));
  if (view === "board") renderBoard();
  if (view === "quality") renderQuality();
}

function chart(history) {
  const W = 640, H = 160, P = 28;
  const pts = history.filter((h) => h.event_time);
  const svg = (tag, attrs) => { const e = document.createElementNS("http://www.w3.org/2000/svg", tag); for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); return e; };
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": "risk index history 风险指数走势" });
  const text = (attrs, content) => { const t = svg("text", attrs); t.textContent = content; root.append(t); };
  for (const [y, c, name] of [[80, "#d32f2f", "红 red"], [60, "#f57c00", "橙 orange"], [40, "#fbc02d", "黄 yellow"]]) {
    const yy = H - P - (y / 100) * (H - 2 * P);
    root.append(svg("line", { x1: P, x2: W - P, y1: yy, y2: yy, stroke: c, "stroke-dasharray": "4 4" }));
    text({ x: 4, y: yy + 4, "font-size": 11, fill: c }, String(y));
    text({ x: W - P - 2, y: yy - 3, "font-size": 10, fill: c, "text-anchor": "end" }, name);  // the level band it starts
  }
  if (!pts.length) return root;
  const ts = pts.map((p) => Date.parse(p.event_time));
  const t0 = Math.min(...ts), t1 = Math.max(...ts) || t0 + 1;
  const x = (t) => P + ((t - t0) / Math.max(t1 - t0, 1)) * (W - 2 * P);
  // time axis: first, middle and last event dates (UTC+8)
  const ticks = t1 > t0 ? [[t0, "start"], [(t0 + t1) / 2, "middle"], [t1, "end"]] : [[t0, "start"]];
  for (const [t, anchor] of ticks) {
    text({ x: x(t), y: H - 8, "font-size": 10, fill: "#52607a", "text-anchor": anchor }, fmtTime(new Date(t).toISOString()).slice(0, 10));
  }
  const y = (v) => H - P - (v / 100) * (H - 2 * P);
  root.append(svg("polyline", { points: pts.map((p, i) => `${x(ts[i])},${y(p.risk_index)}`).join(" "), fill: "none", stroke: "#1565c0", "stroke-width": 2 }));
  pts.forEach((p, i) => root.append(svg("circle", { cx: x(ts[i]), cy: y(p.risk_index), r: 3.5, class: "lv-" + (p.risk_level || "none") })));
  return root;
}

// The dimension breakdown over time: each history point's index as stacked bars of its
// dimensions' points (grey: a point stored before alerts carried them), on the same time axis.
const DIM_COLORS = ["#5c7cfa", "#e8590c", "#2b8a3e", "#c2255c", "#7048e8", "#1098ad", "#f08c00", "#495057", "#a61e4d"];
function dimChart(history, names) {
  const W = 640, H = 150, P = 28;
  // one bar per moment: the last point received for an event time (several alerts share one)
  const pts = [...new Map(history.filter((h) => h.event_time).map((h) => [h.event_time, h])).values()];
  const svg = (tag, attrs) => { const e = document.createElementNS("http://www.w3.org/2000/svg", tag); for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); return e; };
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart dim-chart", role: "img", "aria-label": "dimension breakdown over time 风险维度构成走势" });
  const dims = [...new Set(pts.flatMap((p) => Object.keys(p.dimensions || {})))].sort();
  const color = (d) => DIM_COLORS[dims.indexOf(d) % DIM_COLORS.length];
  const legend = el("div", { class: "legend" }, ...dims.map((d) => el("span", {}, el("span", { class: "swatch", style: { background: color(d) } }), `${names[d] || d} ${d}`)));
  if (!pts.length) return el("div", {}, root);
  const ts = pts.map((p) => Date.parse(p.event_time));
  const t0 = Math.min(...ts), t1 = Math.max(...ts);
  const x = (t) => P + ((t - t0) / Math.max(t1 - t0, 1)) * (W - 2 * P);
  const y = (v) => H - P - (v / 100) * (H - 2 * P);
  const bw = Math.max(2, Math.min(10, (W - 2 * P) / pts.length - 1));
  pts.forEach((p, i) => {
    let base = 0;
    const entries = Object.entries(p.dimensions || {});
    if (!entries.length) entries.push(["", p.risk_index]);
    for (const [d, v] of entries) {
      const r = svg("rect", { x: x(ts[i]) - bw / 2, y: y(base + v), width: bw, height: Math.max(0, y(base) - y(base + v)), fill: d ? color(d) : "#ced4da" });
      const t = svg("title", {}); t.textContent = `${fmtTime(p.event_time)} ${d ? (names[d] || d) + " " + d : "index 指数"}: ${v.toFixed(1)}`;
      r.append(t);
      root.append(r);
      base += v;
    }
  });
  const text = (attrs, content) => { const t = svg("text", attrs); t.textContent = content; root.append(t); };
  for (const v of [0, 50, 100]) text({ x: 4, y: y(v) + 4, "font-size": 10, fill: "#52607a" }, String(v));
  const ticks = t1 > t0 ? [[t0, "start"], [(t0 + t1) / 2, "middle"], [t1, "end"]] : [[t0, "start"]];
  for (const [t, anchor] of ticks) text({ x: x(t), y: H - 8, "font-size": 10, fill: "#52607a", "text-anchor": anchor }, fmtTime(new Date(t).toISOString()).slice(0, 10));
  return el("div", {}, legend, root);
}

// The institution's header: index, tags in words, people and money, its case and diary.
function entityHeader(d) {
  const c = d.cases[0];
  const dl = el("dl", { class: "facts entity-facts" });
  const fact = (k, v) => dl.append(el("dt", {}, k), el("dd", {}, v));
  fact("Risk index 风险指数", d.current.risk_index.toFixed(1));
  fact("Index by dimension 指数构成", d.current.dimensions.length ? dimBars(d.current.dimensions) : "—");
  fact("Tags 风险标签", d.current.tags.map((t) => `${t.name_zh} ${t.name_en}`).join(" · ") || "—");
  fact("Affected 影响", `${d.current.people} 人 · ${money(d.current.amount) || "¥0"}`);
  fact("Case 案件", c ? el("a", { href: `#/case/${c.case_id}` }, `${c.status_zh} ${c.status}` + (c.assignee ? ` → ${c.assignee}` : "") +
    (c.outcome ? ` · ${c.outcome_zh}` : ` · due ${fmtTime(c.due_at)}${c.overdue ? " 逾期 overdue" : ""}`)) : "—");
  const diary = c ? el("details", {}, el("summary", {}, `Case diary 办案记录 (${c.log.length})`),
    el("ol", { class: "audit" }, ...c.log.map((e) => el("li", {}, `${fmtTime(e.at)} · ${e.actor} · ${e.action}`, e.note ? el("div", { class: "sub" }, e.note) : null)))) : null;
  return el("div", {}, dl, diary);
}

async function renderEntity(id) {
  const view = $("#entity-view");
  let d;
  try { d = await api(`/api/entities/${encodeURIComponent(id)}`); } catch (e) { view.replaceChildren(el("p", { class: "error" }, e.message)); return; }
  const times = d.episodes.flatMap((e) => [Date.parse(e.first_seen), Date.parse(e.last_seen)]);
  const t0 = Math.min(...times), t1 = Math.max(...times);
  const span = Math.max(t1 - t0, 1);
  view.replaceChildren(
    el("p", {}, el("a", { href: "#/" }, "← Risk board 风险看板"), " · ", el("a", { href: "#/alerts" }, "All alerts 全部预警")),
    el("h2", {}, levelBadge(d.current.level), ` ${d.entity_id}`, el("small", {}, ` ${d.entity_kind_zh} ${d.entity_kind} · ${d.region_zh} ${d.region_en}`)),
    entityHeader(d),
    el("h3", {}, "Risk index history 风险指数走势"), chart(d.history),
    el("h3", {}, "Dimension breakdown over time 风险维度构成走势"), dimChart(d.history, d.dimension_names),
    el("h3", {}, "Episodes 预警事件时间线"),
    el("div", { class: "timeline" }, ...d.episodes.map((e) => {
      const left = ((Date.parse(e.first_seen) - t0) / span) * 100, width = Math.max(((Date.parse(e.last_seen) - Date.parse(e.first_seen)) / span) * 100, 1);
      return el("div", { class: "ep" },
        el("div", { class: "ep-label" }, `${e.title_zh} ${e.title_en}`, el("div", { class: "sub" }, `${fmtTime(e.first_seen)} → ${fmtTime(e.last_seen)} · ${e.count}× · ${e.status}`)),
        el("div", { class: "ep-track" }, el("div", { class: "ep-bar lv-" + (e.risk_level || "none"), style: { left: `${left}%`, width: `${width}%` } })));
    })),
    el("h3", {}, "Evidence 证据"),
    el("ul", { class: "evidence-list" }, ...d.alerts.map((a) => el("li", {}, levelBadge(a.risk_level), ` ${fmtTime(a.event_time)} · ${a.title_zh} ${a.title_en} · `, el("code", {}, JSON.stringify(a.evidence))))),
  );
}

start();
