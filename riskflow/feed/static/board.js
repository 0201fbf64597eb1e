// RiskFlow risk board 风险看板 (one row per institution), case view 案件 and the hand-over report
// 处置建议. Uses the helpers of feed.js (state, $, el, api, fmtTime, money, levelBadge), loaded after
// this file; nothing here runs before feed.js has started.
"use strict";

const board = { rows: [], sel: 0, timer: null, loading: false };
const OUTCOMES = [["confirmed", "确认风险 confirmed risk"], ["false_alarm", "误报 false alarm"],
  ["rectified", "整改完成 resolved after rectification"], ["referred", "已移交 referred"]];
const CASE_ACTION_ZH = { open: "立案", raise: "升级", assign: "分派", note: "记录", check: "步骤", close: "结案", reopen: "重新立案" };

function fillBoardFilters() {
  const f = $("#board-filters");
  const add = (name, items) => { for (const [v, label] of items) f.elements[name].append(el("option", { value: v }, label)); };
  add("region", state.meta.regions.map((r) => [r.code, `${r.zh} ${r.en}`]));
  add("level", state.meta.levels.map((l) => [l.id, `${l.zh} ${l.en}`]));
  add("kind", state.meta.entity_kinds.map((k) => [k.id, `${k.zh} ${k.en}`]));
  f.addEventListener("change", () => renderBoard());
  f.addEventListener("submit", (ev) => { ev.preventDefault(); renderBoard(); });
  document.addEventListener("keydown", boardKeys);
  // Case changes arrive on the live stream (caseChanged); this refresh moves due dates that pass.
  setInterval(() => { if (!document.hidden) boardChanged(); }, 15000);
}

// A live alert may change the board: refresh it, at most once a second.
function boardChanged() {
  if ($("#board-view").hidden || board.timer) return;
  board.timer = setTimeout(() => { board.timer = null; renderBoard(); }, 1000);
}

async function renderBoard() {
  if (board.loading) return boardChanged();
  board.loading = true;
  try {
    const f = Object.fromEntries([...new FormData($("#board-filters"))].filter(([, v]) => v));
    const data = await api("/api/board?" + new URLSearchParams({ ...f, limit: 500 }));
    board.rows = data.rows;
    board.sel = Math.min(board.sel, Math.max(data.rows.length - 1, 0));
    drawCities(data.cities, f.region || "");
    drawBoard();
    const more = data.total > data.rows.length ? ` (first ${data.rows.length} shown 仅显示前${data.rows.length}家)` : "";
    $("#board-count").textContent = `${data.total} institutions 家机构${more}`;
  } catch (e) {
    $("#board-count").textContent = e.message;
  } finally {
    board.loading = false;
  }
}

function drawCities(cities, current) {
  $("#cities").replaceChildren(...cities.map((c) => {
    const card = el("button", { type: "button", class: "city" + (c.region === current ? " current" : ""), "data-region": c.region,
      title: "filter the board by this city 按城市筛选" },
      el("div", { class: "city-name" }, `${c.zh} ${c.en}`),
      el("div", { class: "city-counts" },
        el("span", { class: "level red" }, String(c.red)), " ", el("span", { class: "level orange" }, String(c.orange)), " ",
        el("span", { class: "level yellow" }, String(c.yellow))),
      el("div", { class: "sub" }, money(c.amount) || "¥0"));
    card.addEventListener("click", () => {
      const s = $("#board-filters").elements.region;
      s.value = s.value === c.region ? "" : c.region;  // a second click clears the filter
      renderBoard();
    });
    return card;
  }));
}

// Which dimensions make up the index and by how many points (a bar of 100 points = the full track).
function dimBars(dims) {
  return el("div", { class: "dims", "data-field": "dimensions" }, ...dims.map((d) => el("div", {
    class: "dim" + (d.estimated ? " estimated" : ""),
    title: `${d.zh} ${d.dimension}: ${d.points.toFixed(1)} points 分` + (d.estimated ? " (estimated from weights 按权重估计)" : "") },
  el("span", { class: "dim-name" }, d.zh),
  el("span", { class: "dim-track" }, el("span", { class: "dim-bar", style: { width: `${Math.min(100, Math.max(0, d.points))}%` } })),
  el("span", { class: "dim-pts" }, (d.estimated ? "≈" : "") + d.points.toFixed(1)))));
}

function drawBoard() {
  const tbody = $("#board tbody");
  tbody.replaceChildren(...board.rows.map((r, i) => {
    const c = r.case;
    const tr = el("tr", { "data-entity-id": r.entity_id, class: (i === board.sel ? "selected " : "") + (c && c.overdue ? "overdue" : "") },
      el("td", {}, levelBadge(r.level)),
      el("td", { class: "num" }, r.risk_index.toFixed(1)),
      el("td", {}, el("a", { href: `#/entity/${encodeURIComponent(r.entity_id)}`, onclick: (e) => e.stopPropagation() }, r.entity_id),
        el("div", { class: "sub" }, `${r.entity_kind_zh} · ${r.alerts} alerts 条预警`)),
      el("td", {}, dimBars(r.dimensions)),
      el("td", { class: "tags" }, ...r.tags.map((t) => el("div", { class: "tag", title: t.rule_id }, t.name_zh, el("span", { class: "sub" }, " " + t.name_en)))),
      el("td", { class: "num" }, r.people ? `${r.people} 人` : "—", el("div", { class: "sub" }, money(r.amount))),
      el("td", {}, `${r.region_zh} ${r.region_en}`),
      el("td", {}, c ? el("a", { href: `#/case/${c.case_id}`, onclick: (e) => e.stopPropagation() }, `${c.status_zh} ${c.status}`) : "—",
        c && c.assignee ? el("div", { class: "sub" }, "→ " + c.assignee) : null),
      el("td", { class: c && c.overdue ? "due overdue" : "due" }, c ? fmtTime(c.due_at) : "", c && c.overdue ? el("div", {}, "逾期 overdue") : null),
      el("td", {}, fmtTime(r.last_change)),
    );
    tr.addEventListener("click", () => { board.sel = i; openRow(r); });
    return tr;
  }));
}

// A changed case from the live stream (null: the stream reconnected, changes may have been missed).
function caseChanged(c) {
  boardChanged();
  const open = location.hash.match(/^#\/case\/([^/]+)$/);
  if (open && (!c || decodeURIComponent(open[1]) === c.case_id)) renderCase(decodeURIComponent(open[1]), true);
}

function openRow(r) {
  location.hash = r.case ? `#/case/${r.case.case_id}` : `#/entity/${encodeURIComponent(r.entity_id)}`;
}

// Keyboard: j/k move through the board, Enter opens, Esc goes back to the board.
function boardKeys(ev) {
  if (ev.target.closest && ev.target.closest("input, textarea, select")) return;
  const onBoard = !$("#board-view").hidden;
  if (ev.key === "Escape" && !onBoard) { location.hash = "#/"; return; }
  if (!onBoard || !board.rows.length) return;
  if (ev.key === "j" || ev.key === "k") {
    board.sel = Math.max(0, Math.min(board.rows.length - 1, board.sel + (ev.key === "j" ? 1 : -1)));
    drawBoard();
    const row = $("#board tbody tr.selected");
    if (row) row.scrollIntoView({ block: "nearest" });
  } else if (ev.key === "Enter") {
    openRow(board.rows[board.sel]);
  }
}

// ---- case view ---------------------------------------------------------------------------
function caseFacts(c) {
  const dl = el("dl", { class: "facts" });
  const fact = (k, v) => dl.append(el("dt", {}, k), el("dd", {}, v));
  fact("Institution 机构", el("a", { href: `#/entity/${encodeURIComponent(c.entity_id)}` }, c.entity_id));
  fact("Kind · region 类型 · 地区", `${c.entity_kind_zh} ${c.entity_kind} · ${c.region_zh} ${c.region_en}`);
  fact("Risk index 风险指数", c.risk_index.toFixed(1));
  fact("Affected 影响", `${c.people} 人 · ${money(c.amount) || "¥0"}`);
  fact("Disposal route 处置路径", `${c.route_zh} ${c.route_en}`);
  fact("Legal basis 依据", c.regulation);
  fact("Status 状态", el("span", { "data-field": "case-status" }, `${c.status_zh} ${c.status}` + (c.assignee ? ` → ${c.assignee}` : "")));
  fact("Due 处置期限", el("span", { class: c.overdue ? "overdue-text" : "" }, fmtTime(c.due_at) + (c.overdue ? " 逾期 overdue" : "")));
  fact("Opened 立案", fmtTime(c.opened_at));
  if (c.outcome) fact("Outcome 结案结论", `${c.outcome_zh} ${c.outcome_en} — ${c.close_reason} (${c.closed_by}, ${fmtTime(c.closed_at)})`);
  return dl;
}

function explanation(a) {
  const x = a.explanation;
  return el("li", { class: "explain" },
    el("div", { class: "explain-head" }, levelBadge(a.risk_level), ` ${fmtTime(a.event_time)} · `, el("b", {}, x.name_zh), ` ${x.name_en}`),
    el("div", { class: "sentence", "data-field": "sentence" }, x.sentence_en),
    el("div", { class: "sentence" }, x.sentence_zh),
    x.rationale ? el("div", { class: "sub" }, "Why 理由: " + x.rationale) : null,
    x.regulation ? el("div", { class: "regulation" }, "Regulation 依据: " + x.regulation) : null,
    el("details", {}, el("summary", {}, "Raw evidence 原始证据"), el("pre", { class: "evidence" }, JSON.stringify(a.evidence, null, 2))));
}

function logList(log) {
  return el("ol", { class: "audit", "data-field": "case-log" }, ...log.map((e) => el("li", {},
    `${fmtTime(e.at)} · ${e.actor} · ${e.action} ${CASE_ACTION_ZH[e.action] || ""}`, e.note ? el("div", { class: "sub" }, e.note) : null)));
}

// live: a re-render of the same case (a change from the stream, or after an action), which keeps
// what the officer is typing; ``sent``: the fields an action just submitted, cleared. A re-render
// after an action may land after the officer has begun typing in another field (ticking a step,
// then typing a reason at once): that text stays too.
async function renderCase(id, live = false, sent = []) {
  const view = $("#case-view");
  let c;
  try { c = await api(`/api/cases/${encodeURIComponent(id)}`); } catch (e) { view.replaceChildren(el("p", { class: "error" }, e.message)); return; }
  const prev = view.querySelector("form.case-actions");
  const typed = live && prev && view.dataset.caseId === id ? Object.fromEntries(new FormData(prev)) : null;
  if (typed) for (const k of sent) delete typed[k];
  const err = el("div", { class: "action-error error" });
  const doAct = async (action, body) => {
    try {
      await api(`/api/cases/${encodeURIComponent(id)}/${action}`, { method: "POST", body: JSON.stringify(body) });
      renderCase(id, true, Object.keys(body));
    } catch (e) { err.textContent = e.message; }
  };
  const checklist = el("ol", { class: "checklist" }, ...c.checklist.map((s, i) => {
    const box = el("input", { type: "checkbox", "data-step": String(i + 1) });
    box.checked = !!s.done;
    box.disabled = c.status === "closed";
    box.addEventListener("change", () => doAct("check", { step: i + 1 }));
    return el("li", {}, el("label", {}, box, ` ${s.zh} ${s.en}`), s.done ? el("span", { class: "sub" }, ` ✓ ${s.by} ${fmtTime(s.at)}`) : null);
  }));
  const form = el("form", { class: "actions case-actions" });
  form.addEventListener("submit", (ev) => ev.preventDefault());
  const input = (name, attrs = {}) => el("input", { name, ...attrs });
  const button = (action, label, fn) => el("button", { type: "button", "data-action": action, onclick: fn }, label);
  const val = (n) => form.elements[n].value;
  const outcome = el("select", { name: "outcome" }, ...OUTCOMES.map(([v, l]) => el("option", { value: v }, l)));
  form.append(
    el("div", { class: "row" }, el("label", {}, "Assignee 承办人", input("assignee", { size: 14 })),
      button("assign", "Assign 分派", () => doAct("assign", { assignee: val("assignee") }))),
    el("div", { class: "row" }, el("label", {}, "Note 办案记录", el("textarea", { name: "note", rows: 2, cols: 40 })),
      button("note", "Add note 记录", () => doAct("note", { note: val("note") }))),
    el("div", { class: "row" }, el("label", {}, "Outcome 结论", outcome), el("label", {}, "Reason 理由", input("reason", { size: 24 })),
      button("close", "Close case 结案", () => doAct("close", { outcome: val("outcome"), reason: val("reason") })),
      button("reopen", "Reopen 重新立案", () => doAct("reopen", {}))),
    err);
  view.replaceChildren(
    el("p", {}, el("a", { href: "#/" }, "← Risk board 风险看板"), " · ", el("a", { href: `#/case/${c.case_id}/report`, id: "report-link" }, "Report 处置建议")),
    el("h2", {}, levelBadge(c.level), ` ${c.entity_id} `, el("small", {}, `case 案件 ${c.case_id}`)),
    caseFacts(c),
    el("h3", {}, "What makes up the index 风险指数构成 ", el("span", { class: "sub" }, "(points per dimension 各维度分值)")),
    c.dimensions.length ? dimBars(c.dimensions) : el("p", { class: "sub" }, "—"),
    el("h3", {}, "Disposal checklist 处置步骤"), checklist,
    el("h3", {}, "Actions 处置"), form,
    el("h3", {}, "Why 预警说明"), el("ul", { class: "explanations" }, ...c.alerts.map(explanation)),
    el("h3", {}, "Diary and audit trail 办案记录 ", el("span", { class: "sub" }, "(UTC+8)")), logList(c.log),
  );
  if (typed) for (const [k, v] of Object.entries(typed)) if (form.elements[k]) form.elements[k].value = v;
  view.dataset.caseId = id;
}

// ---- report 处置建议 (print view) ----------------------------------------------------------
async function renderReport(id) {
  const view = $("#report-view");
  let r;
  try { r = await api(`/api/cases/${encodeURIComponent(id)}/report`); } catch (e) { view.replaceChildren(el("p", { class: "error" }, e.message)); return; }
  const printBtn = el("button", { type: "button", class: "no-print", onclick: () => window.print() }, "Print 打印");
  view.replaceChildren(
    el("p", { class: "no-print" }, el("a", { href: `#/case/${r.case_id}` }, "← Case 案件"), " ", printBtn),
    el("article", { class: "report" },
      el("h2", {}, `${r.title_zh} ${r.title_en}`),
      el("p", { class: "sub" }, `RiskFlow · case 案件 ${r.case_id} · ${fmtTime(new Date().toISOString())} (UTC+8)`),
      el("h3", {}, `${r.entity_id} `, levelBadge(r.level), ` index 指数 ${r.risk_index.toFixed(1)}`),
      caseFacts(r),
      r.dimensions.length ? el("p", { "data-field": "report-dimensions" }, "Index by dimension 指数构成: ",
        r.dimensions.map((d) => `${d.zh} ${d.dimension} ${d.estimated ? "≈" : ""}${d.points.toFixed(1)}`).join(" · ")) : null,
      el("h3", {}, "Evidence timeline 证据时间线"),
      el("table", { class: "timeline-table" }, el("thead", {}, el("tr", {}, el("th", {}, "Time 时间"), el("th", {}, "Rule 规则"), el("th", {}, "Evidence 证据"))),
        el("tbody", {}, ...r.timeline.map((t) => el("tr", {}, el("td", {}, fmtTime(t.event_time)), el("td", {}, t.name_zh, el("div", { class: "sub" }, t.name_en)),
          el("td", {}, t.sentence_zh, el("div", { class: "sub" }, t.sentence_en)))))),
      el("h3", {}, "Regulations cited 法规依据"), el("ul", {}, ...[r.regulation, ...r.regulations].filter(Boolean).map((x) => el("li", {}, x))),
      el("h3", {}, "Disposal steps 处置步骤"), el("ol", {}, ...r.checklist.map((s) => el("li", {}, `${s.done ? "☑" : "☐"} ${s.zh} ${s.en}`))),
      el("h3", {}, "Diary 办案记录"), logList(r.log)),
  );
}

// ---- rule quality 规则质量 -----------------------------------------------------------------
async function renderQuality() {
  const view = $("#quality-view");
  let q;
  try { q = await api("/api/rules/quality"); } catch (e) { view.replaceChildren(el("p", { class: "error" }, e.message)); return; }
  const pct = (x) => (x === null || x === undefined ? "—" : `${(100 * x).toFixed(1)}%`);
  const row = (name, sub, r) => el("tr", {},
    el("td", {}, name, sub ? el("div", { class: "sub" }, sub) : null),
    el("td", { class: "num" }, String(r.hits)), el("td", { class: "num" }, String(r.cases)), el("td", { class: "num" }, String(r.cases_opened)),
    el("td", { class: "num" }, String(r.closed)),
    ...["confirmed", "false_alarm", "rectified", "referred"].map((o) => el("td", { class: "num" }, String(r.outcomes[o]))),
    el("td", { class: "num" }, pct(r.confirmed_share)),
    el("td", { class: "num" }, r.median_lead_days === null ? "—" : r.median_lead_days.toFixed(1)),
    el("td", { class: "num" }, pct(r.precision)));
  view.replaceChildren(
    el("h2", {}, "Rule quality 规则质量 ", el("small", { class: "sub" }, "as officers judged it 以结案结论衡量")),
    el("table", { id: "quality" },
      el("thead", {}, el("tr", {}, ...["Rule 规则", "Hits 命中", "Cases 案件", "Opened 立案", "Closed 结案", "确认风险 confirmed", "误报 false alarm",
        "整改完成 rectified", "已移交 referred", "Confirmed share 确认率", "Median lead (days) 提前天数", "Precision 精确率"].map((h) => el("th", {}, h)))),
      el("tbody", {}, ...q.rules.map((r) => row(r.name_zh, `${r.name_en} · ${r.rule_id}`, r)), row("All rules 全部规则", "", q.all))),
    el("p", { class: "sub" }, "Precision: alerts first seen between a risk case's first alert and its close / all alerts — the figure `riskflow backtest --labels` gives with `riskflow cases export --labels`."),
  );
}
