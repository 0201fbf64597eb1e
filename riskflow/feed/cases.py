"""The feed's case and board API: officers' cases 案件 and the risk board 风险看板.

``GET /api/board`` is one row per institution (its latest alert's level, index, tags,
people and money, the dimensions of the rules behind the index, its open case) with the
per-city summary; ``GET /api/cases`` and ``/api/cases/{id}`` read cases (viewer), ``POST
/api/cases/{id}/{action}`` acts (officer; ``reopen`` needs admin: overturning a closing
decision is a supervisor's call), ``GET /api/cases/{id}/report`` is the hand-over report
处置建议, ``GET /api/rules/quality`` the rule-quality view. Refusals change nothing: 404
unknown case or action, 403 role, 409 illegal transition, 413 over-long text, 400 any
other bad argument.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

import msgspec
from aiohttp import web

from detectors.risk.config import DEFAULT_WEIGHTS, LEVEL_RANK
from riskflow.core.alerts import Alert
from riskflow.core.schema import REGIONS
from riskflow.feed.explain import Explainer
from riskflow.store import CASE_ACTIONS, OUTCOMES, AlertStore, Case, CaseError, CaseNotFound, IllegalCaseTransition
from riskflow.store.base import now_iso
from riskflow.store.cases import CASE_STATUS_ZH

LEVEL_ZH: Final = {"red": "红", "orange": "橙", "yellow": "黄", "green": "绿", "": ""}
DIMENSION_ZH: Final = {
    "compliance_deviation": "合规偏离度",
    "inducement": "利诱性",
    "social_spread": "社会传播性",
    "complaints": "投诉率",
    "keyword_hits": "特征词命中率",
    "financial_soundness": "财务稳健性",
    "operational_anomaly": "经营异常",
    "anomaly": "统计异常",
    "contagion": "关联传导",
}
KEY_EXPLAINER: Final = web.AppKey("explainer", Explainer)
MAX_LIMIT: Final = 5000


def _store(request: web.Request) -> AlertStore:
    from riskflow.feed.app import KEY_STORE

    return request.app[KEY_STORE]


def _err(status: int, code: str, message: str) -> web.Response:
    from riskflow.feed.app import _error

    return _error(status, code, message)


def _json(data: Any) -> web.Response:
    from riskflow.feed.app import _dumps

    return web.json_response(data, dumps=_dumps)


def case_json(c: Case, now: str) -> dict[str, Any]:
    """A case as the API sends it: the stored case with its names in both languages."""
    d: dict[str, Any] = msgspec.to_builtins(c)
    en, zh = REGIONS.get(c.region, (c.region, ""))
    o_en, o_zh = OUTCOMES.get(c.outcome, ("", ""))
    from riskflow.feed.app import KIND_ZH

    d.update(
        overdue=c.overdue(now),
        region_en=en,
        region_zh=zh,
        level_zh=LEVEL_ZH.get(c.level, c.level),
        status_zh=CASE_STATUS_ZH.get(c.status, c.status),
        outcome_en=o_en,
        outcome_zh=o_zh,
        entity_kind_zh=KIND_ZH.get(c.entity_kind, c.entity_kind),
    )
    return d


def explained(ex: Explainer, a: Alert) -> dict[str, Any]:
    """The rule's names, rationale and regulation, and the evidence as a sentence."""
    r = ex.rule(a.rule_id)
    en, zh = ex.sentence(a.rule_id, a.evidence)
    return {
        "name_en": r.get("name_en", a.title_en),
        "name_zh": r.get("name_zh", a.title_zh),
        "rationale": r.get("rationale", ""),
        "regulation": r.get("regulation", ""),
        "sentence_en": en,
        "sentence_zh": zh,
    }


#: The risk index's own alerts, which no rule pack names.
INDEX_RULES: Final = {
    "risk.level": ("风险等级变化", "Risk level change", ""),
    "risk.contagion": ("关联风险传导", "Linked-entity contagion", "contagion"),
}


def _tag(ex: Explainer, rule_id: str) -> dict[str, str]:
    r = ex.rule(rule_id)
    zh, en, dim = INDEX_RULES.get(rule_id, (rule_id, rule_id, ""))
    return {
        "rule_id": rule_id,
        "name_en": r.get("name_en", en),
        "name_zh": r.get("name_zh", zh),
        "dimension": r.get("dimension", dim),
    }


def dimension_points(a: Alert, tags: list[dict[str, str]] | None = None) -> list[dict[str, Any]]:
    """Which dimensions make up the alert's index and by how many points, largest first.

    ``estimated`` is True for an alert stored before alerts carried their points: its tags'
    dimensions are then listed at their configured weight's share of the index, as a hint only.
    """
    if a.risk_dimensions:
        return [
            {"dimension": d, "zh": DIMENSION_ZH.get(d, d), "points": p, "estimated": False}
            for d, p in sorted(a.risk_dimensions.items(), key=lambda kv: (-kv[1], kv[0]))
        ]
    dims = {t["dimension"] for t in tags or () if t["dimension"]}
    total = sum(DEFAULT_WEIGHTS.get(d, 0.5) for d in dims)
    return [
        {
            "dimension": d,
            "zh": DIMENSION_ZH.get(d, d),
            "points": round(a.risk_index * DEFAULT_WEIGHTS.get(d, 0.5) / total, 1),
            "estimated": True,
        }
        for d in sorted(dims, key=lambda d: (-DEFAULT_WEIGHTS.get(d, 0.5), d))
    ]


def board_rows(ex: Explainer, store: AlertStore, now: str) -> list[dict[str, Any]]:
    """One row per institution, most urgent first (level, then index)."""
    from riskflow.feed.app import KIND_ZH

    open_cases = {c.entity_id: c for c in store.list_cases(open_only=True, limit=1_000_000)}
    rows: list[dict[str, Any]] = []
    for a, n_alerts in store.latest_by_entity():
        tags = [_tag(ex, t) for t in a.risk_tags]
        en, zh = REGIONS.get(a.region, (a.region, ""))
        c = open_cases.get(a.entity_id)
        rows.append(
            {
                "entity_id": a.entity_id,
                "entity_kind": a.entity_kind,
                "entity_kind_zh": KIND_ZH.get(a.entity_kind, a.entity_kind),
                "region": a.region,
                "region_en": en,
                "region_zh": zh,
                "level": a.risk_level or "green",
                "level_zh": LEVEL_ZH.get(a.risk_level or "green", ""),
                "risk_index": a.risk_index,
                "tags": tags,
                "dimensions": dimension_points(a, tags),
                "people": a.affected_people,
                "amount": a.affected_amount,
                "last_change": a.event_time,
                "alerts": n_alerts,
                "case": case_json(c, now) if c else None,
            }
        )
    rows.sort(key=lambda r: (-LEVEL_RANK.get(str(r["level"]), 0), -float(r["risk_index"]), str(r["entity_id"])))
    return rows


def entity_summary(ex: Explainer, store: AlertStore, rows: list[Any], now: str) -> dict[str, Any]:
    """An institution's header: current level, index, tags in words, people and money (from its
    latest alert), and its cases, newest first, each with its diary."""
    latest = max(rows, key=lambda r: (r.alert.event_time, r.seq)).alert
    cases = store.list_cases(entity_id=latest.entity_id, limit=50)
    return {
        "current": {
            "level": latest.risk_level or "green",
            "level_zh": LEVEL_ZH.get(latest.risk_level or "green", ""),
            "risk_index": latest.risk_index,
            "tags": [_tag(ex, t) for t in latest.risk_tags],
            "dimensions": dimension_points(latest, [_tag(ex, t) for t in latest.risk_tags]),
            "people": latest.affected_people,
            "amount": latest.affected_amount,
            "event_time": latest.event_time,
        },
        "cases": [
            case_json(c, now) | {"log": msgspec.to_builtins(store.case_log(c.case_id))}
            for c in sorted(cases, key=lambda c: c.opened_at, reverse=True)
        ],
    }


def city_summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per city: red, orange and yellow institutions and the money affected (all 11 cities)."""
    out: dict[str, dict[str, Any]] = {
        code: {"region": code, "en": en, "zh": zh, "red": 0, "orange": 0, "yellow": 0, "amount": 0.0}
        for code, (en, zh) in REGIONS.items()
    }
    for r in rows:
        s = out.get(r["region"])
        if s is not None and r["level"] in ("red", "orange", "yellow"):
            s[r["level"]] += 1
            s["amount"] += r["amount"]
    return list(out.values())


def _limit(q: Any) -> int | web.Response:
    """The ``limit`` query parameter in [1, MAX_LIMIT], or the 400 answer."""
    try:
        return min(max(int(q.get("limit", "500")), 1), MAX_LIMIT)
    except ValueError:
        return _err(400, "bad_request", "limit must be an integer")


#: the levels at which an institution gets a case (the board shows them by default)
AT_RISK = frozenset({"yellow", "orange", "red"})


async def board(request: web.Request) -> web.Response:
    q = request.query
    limit = _limit(q)
    if isinstance(limit, web.Response):
        return limit
    now = now_iso()
    store = _store(request)
    rows = await asyncio.to_thread(board_rows, request.app[KEY_EXPLAINER], store, now)
    summary = city_summary(rows)
    if q.get("level") == "at_risk":  # the board's default: yellow and above, or a case still open
        rows = [r for r in rows if r["level"] in AT_RISK or r["case"] is not None]
    for key, field in (("region", "region"), ("level", "level"), ("kind", "entity_kind")):
        if q.get(key) and q[key] != "at_risk":
            rows = [r for r in rows if r[field] == q[key]]
    if q.get("assignee"):
        rows = [r for r in rows if r["case"] and r["case"]["assignee"] == q["assignee"]]
    if q.get("overdue") in ("1", "true"):
        rows = [r for r in rows if r["case"] and r["case"]["overdue"]]
    seq = await asyncio.to_thread(store.last_case_seq)
    return _json({"now": now, "case_seq": seq, "total": len(rows), "rows": rows[:limit], "cities": summary})


async def list_cases(request: web.Request) -> web.Response:
    q = request.query
    limit = _limit(q)
    if isinstance(limit, web.Response):
        return limit
    store, now = _store(request), now_iso()
    cases: list[Case] = await asyncio.to_thread(
        store.list_cases,
        status=q.get("status") or None,
        level=q.get("level") or None,
        region=q.get("region") or None,
        entity_kind=q.get("kind") or None,
        assignee=q.get("assignee") or None,
        entity_id=q.get("entity") or None,
        open_only=q.get("open") in ("1", "true"),
        limit=MAX_LIMIT if q.get("overdue") else limit,
    )
    if q.get("overdue") in ("1", "true"):
        cases = [c for c in cases if c.overdue(now)][:limit]
    seq = await asyncio.to_thread(store.last_case_seq)
    return _json({"now": now, "case_seq": seq, "cases": [case_json(c, now) for c in cases]})


def _case_detail(ex: Explainer, store: AlertStore, cid: str) -> dict[str, Any]:
    from riskflow.feed.app import _row_json

    c = store.get_case(cid)
    now = now_iso()
    d = case_json(c, now)
    d["log"] = msgspec.to_builtins(store.case_log(cid))
    rows = [store.get(aid) for aid in store.case_alert_ids(cid)]
    alerts = [_row_json(row) | {"explanation": explained(ex, row.alert)} for row in rows]
    d["alerts"] = alerts
    # the index's make-up as of the case's latest alert (what the officer acts on now)
    last = max(rows, key=lambda r: (r.alert.event_time, r.seq), default=None)  # as the board orders
    d["dimensions"] = dimension_points(last.alert, [_tag(ex, t) for t in last.alert.risk_tags]) if last else []
    d["regulations"] = sorted({a["explanation"]["regulation"] for a in alerts if a["explanation"]["regulation"]})
    return d


async def _detail_of(request: web.Request) -> dict[str, Any] | web.Response:
    cid = request.match_info["case_id"]
    try:
        return await asyncio.to_thread(_case_detail, request.app[KEY_EXPLAINER], _store(request), cid)
    except CaseNotFound:
        return _err(404, "not_found", f"no case {cid}")


async def get_case(request: web.Request) -> web.Response:
    d = await _detail_of(request)
    return d if isinstance(d, web.Response) else _json(d)


async def case_report(request: web.Request) -> web.Response:
    """The hand-over report 处置建议 as data (the page's print view renders it)."""
    d = await _detail_of(request)
    if isinstance(d, web.Response):
        return d
    d["title_zh"], d["title_en"] = "处置建议", "Disposal recommendation"
    d["timeline"] = [
        {
            "event_time": a["event_time"],
            "rule_id": a["rule_id"],
            "name_zh": a["explanation"]["name_zh"],
            "name_en": a["explanation"]["name_en"],
            "sentence_en": a["explanation"]["sentence_en"],
            "sentence_zh": a["explanation"]["sentence_zh"],
        }
        for a in sorted(d["alerts"], key=lambda a: a["event_time"])
    ]
    return _json(d)


async def act_on_case(request: web.Request) -> web.Response:
    from riskflow.feed.app import KEY_PRINCIPAL, read_body

    cid, action = request.match_info["case_id"], request.match_info["action"]
    who = request[KEY_PRINCIPAL]
    if action not in CASE_ACTIONS:
        return _err(404, "not_found", f"no action {action}; one of {', '.join(CASE_ACTIONS)}")
    if action == "reopen" and not who.can("admin"):
        return _err(403, "forbidden", "re-opening a closed case needs the admin role")
    got = await read_body(request, ("note", "assignee", "outcome", "reason"))
    if isinstance(got, web.Response):
        return got
    body, fields = got
    step = body.get("step")
    if step is not None and (not isinstance(step, int) or isinstance(step, bool)):
        return _err(400, "bad_request", "step is an integer (a checklist step, from 1)")
    store = _store(request)
    try:
        c = await asyncio.to_thread(
            lambda: store.case_action(
                cid,
                action,
                actor=who.name,
                step=step,
                note=fields["note"],
                assignee=fields["assignee"],
                outcome=fields["outcome"],
                reason=fields["reason"],
            )
        )
    except CaseNotFound:
        return _err(404, "not_found", f"no case {cid}")
    except IllegalCaseTransition as e:
        return _err(409, "conflict", str(e))
    except CaseError as e:
        return _err(400, "bad_request", str(e))
    from riskflow.feed.app import KEY_HUB

    request.app[KEY_HUB].poke()
    return _json(case_json(c, now_iso()))


async def quality(request: web.Request) -> web.Response:
    """Rule quality as officers judged it (riskflow/store/quality.py), with the rules' names."""
    from riskflow.store.quality import rule_quality

    q = await asyncio.to_thread(rule_quality, _store(request))
    ex = request.app[KEY_EXPLAINER]
    rows = [{"rule_id": k, **_tag(ex, k), **v} for k, v in q.items() if k != "all"]
    return _json({"rules": rows, "all": q["all"]})


def add_routes(app: web.Application, explainer: Explainer | None = None) -> None:
    app[KEY_EXPLAINER] = explainer or Explainer.default()
    app.router.add_get("/api/board", board)
    app.router.add_get("/api/cases", list_cases)
    app.router.add_get("/api/cases/{case_id}", get_case)
    app.router.add_get("/api/cases/{case_id}/report", case_report)
    app.router.add_post("/api/cases/{case_id}/{action}", act_on_case)
    app.router.add_get("/api/rules/quality", quality)
