"""The feed's board and case API (riskflow/feed/cases.py): reads, roles, actions, and bad input to
every new endpoint (unknown case, wrong role, illegal transition, over-long note, bad outcome),
each a clear error that changes nothing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from riskflow.feed.app import KEY_REGISTRY
from riskflow.feed.explain import Explainer
from riskflow.store import open_store
from tests.support.cases_tools import alert
from tests.support.feed_tools import body, serve

VIEWER, OFFICER, ADMIN = ({"Authorization": f"Bearer {t}"} for t in ("v1ewer-token", "0fficer-token", "adm1n-token"))
RED, YELLOW, GREEN = "PFM-330100-0001", "PFM-330300-0007", "PFM-330100-0009"
SURGE = {"recent": 3, "recent_days": 7, "baseline_average": 0.08, "baseline_days": 90, "factor": 3, "floor": 3}

Scenario = Callable[[TestClient, str], Awaitable[None]]


def run(tmp_path: Path, scenario: Scenario, target: str | None = None) -> None:
    target = target or str(tmp_path / "cases.sqlite3")
    with open_store(target) as s:
        s.upsert_alerts(
            [
                alert(
                    "a1", "orange", 66.0, rule="all.complaint_surge", evidence=SURGE, risk_tags=["all.complaint_surge"]
                ),
                alert(
                    "a2",
                    "red",
                    91.0,
                    risk_tags=["pf.guaranteed_return", "all.complaint_surge"],
                    risk_dimensions={"complaints": 30.8, "inducement": 60.2},
                ),
                alert("b1", "yellow", 44.0, entity=YELLOW, region="330300", affected_amount=1e6),
                alert("g1", "green", 12.0, entity=GREEN),
            ]
        )

    serve(target, scenario)


async def case_of(c: TestClient, entity: str) -> str:
    r = await c.get(f"/api/cases?entity={entity}", headers=VIEWER)
    return str((await body(r))["cases"][0]["case_id"])


def snapshot(target: str) -> list[object]:
    with open_store(target) as s:
        return [(c, s.case_log(c.case_id)) for c in s.list_cases()]


def test_the_board_is_one_row_per_institution_ranked_with_cities(tmp_path: Path) -> None:
    async def scenario(c: TestClient, target: str) -> None:
        r = await c.get("/api/board", headers=VIEWER)
        assert r.status == 200
        b = await body(r)
        assert [row["entity_id"] for row in b["rows"]] == [RED, YELLOW, GREEN]
        top = b["rows"][0]
        assert (top["level"], top["level_zh"], top["risk_index"], top["alerts"]) == ("red", "红", 91.0, 2)
        assert [t["name_zh"] for t in top["tags"]] == ["承诺保本保收益", "投诉量激增"]
        assert {d["zh"] for d in top["dimensions"]} == {"利诱性", "投诉率"}
        assert (top["people"], top["amount"], top["region_zh"]) == (12, 3.5e6, "杭州")
        assert top["case"]["level"] == "red" and top["case"]["route_zh"] == "立即处置、移交"
        assert b["rows"][2]["case"] is None, "green: no case"
        cities = {x["region"]: x for x in b["cities"]}
        assert len(cities) == 11
        assert (cities["330100"]["red"], cities["330300"]["yellow"], cities["330300"]["amount"]) == (1, 1, 1e6)
        r = await c.get("/api/board?region=330300", headers=VIEWER)
        assert [row["entity_id"] for row in (await body(r))["rows"]] == [YELLOW]
        r = await c.get("/api/board?level=red&overdue=1", headers=VIEWER)
        assert (await body(r))["rows"] == [], "nothing is overdue yet"
        # the page's default: institutions at yellow or above (or with a case still open), so
        # its rows are the institutions officers have a case for — the green one is left out
        r = await c.get("/api/board?level=at_risk", headers=VIEWER)
        at_risk = (await body(r))["rows"]
        assert [row["entity_id"] for row in at_risk] == [RED, YELLOW]
        assert all(row["case"] for row in at_risk)

    run(tmp_path, scenario)


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_an_officer_works_a_case_and_a_viewer_cannot(tmp_path: Path, db: str, request: pytest.FixtureRequest) -> None:
    async def scenario(c: TestClient, target: str) -> None:
        cid = await case_of(c, RED)
        r = await c.get(f"/api/cases/{cid}", headers=VIEWER)
        d = await body(r)
        assert r.status == 200 and d["level"] == "red" and d["status_zh"] == "待处置"
        surge = next(a for a in d["alerts"] if a["rule_id"] == "all.complaint_surge")["explanation"]
        assert surge["sentence_en"] == (
            "3 in the last 7 days against an expected 0.08 over the previous 90 days (threshold: 3× and at least 3)"
        )
        assert surge["name_zh"] == "投诉量激增" and "《防范和处置非法集资条例》" in surge["regulation"]
        assert any("737" in x for x in d["regulations"])

        r = await c.post(f"/api/cases/{cid}/note", headers=VIEWER, json={"note": "x"})
        assert r.status == 403
        for action, payload in (
            ("assign", {"assignee": "wang.wei"}),
            ("note", {"note": "called the manager 已电话联系"}),
            ("check", {"step": 1}),
            ("close", {"outcome": "confirmed", "reason": "funds missing"}),
        ):
            r = await c.post(f"/api/cases/{cid}/{action}", headers=OFFICER, json=payload)
            assert r.status == 200, (action, await r.text())
        d = await body(await c.get(f"/api/cases/{cid}", headers=VIEWER))
        assert (d["status"], d["outcome_zh"], d["assignee"]) == ("closed", "确认风险", "wang.wei")
        assert [(e["actor"], e["action"]) for e in d["log"]] == [
            ("system", "open"),
            ("system", "raise"),
            ("li.na", "assign"),
            ("li.na", "note"),
            ("li.na", "check"),
            ("li.na", "close"),
        ]
        r = await c.post(f"/api/cases/{cid}/reopen", headers=OFFICER)
        assert r.status == 403 and "admin" in (await body(r))["message"]
        r = await c.post(f"/api/cases/{cid}/reopen", headers=ADMIN, json={"note": "new evidence"})
        assert r.status == 200 and (await body(r))["status"] == "assigned"
        rep = await body(await c.get(f"/api/cases/{cid}/report", headers=VIEWER))
        assert rep["title_zh"] == "处置建议" and [t["rule_id"] for t in rep["timeline"]] == [
            "all.complaint_surge",
            "pf.guaranteed_return",
        ]

    run(tmp_path, scenario, request.getfixturevalue("postgres_url") if db == "postgresql" else None)


@pytest.mark.parametrize(
    ("method", "path", "headers", "payload", "status", "message"),
    [
        ("GET", "/api/cases/nope", VIEWER, None, 404, "no case nope"),
        ("GET", "/api/cases/nope/report", VIEWER, None, 404, "no case nope"),
        ("POST", "/api/cases/nope/note", OFFICER, {"note": "x"}, 404, "no case nope"),
        ("POST", "/api/cases/{red}/escalate", OFFICER, {}, 404, "no action escalate"),
        ("POST", "/api/cases/{red}/note", VIEWER, {"note": "x"}, 403, "needs officer"),
        ("POST", "/api/cases/{red}/reopen", OFFICER, {}, 403, "needs the admin role"),
        ("POST", "/api/cases/{red}/reopen", ADMIN, {}, 409, "cannot reopen a case that is open"),
        ("POST", "/api/cases/{red}/note", OFFICER, {"note": "字" * 2000}, 413, "6000 bytes (UTF-8); at most 4096"),
        ("POST", "/api/cases/{red}/close", OFFICER, {"outcome": "maybe", "reason": "r"}, 400, "bad outcome"),
        ("POST", "/api/cases/{red}/close", OFFICER, {"outcome": "confirmed"}, 400, "close needs a reason"),
        ("POST", "/api/cases/{red}/check", OFFICER, {"step": "1"}, 400, "step is an integer"),
        ("POST", "/api/cases/{red}/check", OFFICER, {"step": 42}, 400, "no step 42"),
        ("POST", "/api/cases/{red}/assign", OFFICER, {"assignee": 7}, 400, "are strings"),
        ("POST", "/api/cases/{red}/note", OFFICER, "[1]", 400, "a JSON object"),
        ("GET", "/api/cases?limit=x", VIEWER, None, 400, "limit must be an integer"),
        ("GET", "/api/board?limit=x", VIEWER, None, 400, "limit must be an integer"),
        ("GET", "/api/board", {}, None, 401, "a valid token is required"),
    ],
)
def test_bad_input_to_every_case_endpoint_is_a_clear_error_that_changes_nothing(
    tmp_path: Path,
    method: str,
    path: str,
    headers: dict[str, str],
    payload: Any,
    status: int,
    message: str,
) -> None:
    async def scenario(c: TestClient, target: str) -> None:
        red = await case_of(c, RED)
        before = snapshot(target)
        kw: dict[str, Any] = {"headers": headers}
        if isinstance(payload, str):
            kw["data"], kw["headers"] = payload, {**headers, "Content-Type": "application/json"}
        elif payload is not None:
            kw["json"] = payload
        r = await c.request(method, path.replace("{red}", red), **kw)
        got = await body(r)
        assert (r.status, message in got["message"]) == (status, True), got
        assert snapshot(target) == before

    run(tmp_path, scenario)


def test_closed_case_refuses_officer_actions(tmp_path: Path) -> None:
    async def scenario(c: TestClient, target: str) -> None:
        cid = await case_of(c, YELLOW)
        r = await c.post(f"/api/cases/{cid}/close", headers=OFFICER, json={"outcome": "false_alarm", "reason": "noise"})
        assert r.status == 200
        before = snapshot(target)
        for action, payload in (("note", {"note": "x"}), ("assign", {"assignee": "x"}), ("check", {"step": 1})):
            r = await c.post(f"/api/cases/{cid}/{action}", headers=OFFICER, json=payload)
            assert r.status == 409 and "closed" in (await body(r))["message"]
        assert snapshot(target) == before

    run(tmp_path, scenario)


def test_case_metrics_have_fixed_labels_and_follow_the_store(tmp_path: Path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    async def scrape(c: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = await (await c.get("/metrics")).text()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text)
            for s in fam.samples
            if s.name.startswith("riskflow_case")
        }

    async def scenario(c: TestClient, target: str) -> None:
        m = await scrape(c)
        assert m[("riskflow_cases_open", (("level", "red"), ("region", "330100")))] == 1.0
        assert m[("riskflow_cases_open", (("level", "yellow"), ("region", "330300")))] == 1.0
        assert m[("riskflow_cases_open", (("level", "orange"), ("region", "other")))] == 0.0
        assert m[("riskflow_cases_overdue", (("level", "red"),))] == 0.0
        assert m[("riskflow_case_first_action_seconds_count", ())] == 0.0
        assert {k[0] for k in m} >= {"riskflow_cases_open", "riskflow_cases_overdue"}
        labels = {dict(k[1]).get("region") for k in m} - {None}
        assert len(labels) == 12, "the 11 cities and other: never an entity id"
        red = await case_of(c, RED)
        with open_store(target) as s, s._tx() as cur:  # a due date in the past: the case is overdue
            s._x(cur, "UPDATE rf_cases SET due_at = '2000-01-01T00:00:00.000+00:00' WHERE case_id = ?", (red,))
        await c.post(f"/api/cases/{red}/note", headers=OFFICER, json={"note": "first look"})
        await c.post(f"/api/cases/{red}/note", headers=OFFICER, json={"note": "second look"})
        m = await scrape(c)
        assert m[("riskflow_cases_overdue", (("level", "red"),))] == 1.0
        assert m[("riskflow_case_first_action_seconds_count", ())] == 1.0, "one first action, counted once"
        await c.post(f"/api/cases/{red}/close", headers=OFFICER, json={"outcome": "referred", "reason": "to police"})
        m = await scrape(c)
        assert m[("riskflow_cases_open", (("level", "red"), ("region", "330100")))] == 0.0
        assert m[("riskflow_cases_overdue", (("level", "red"),))] == 0.0
        assert m[("riskflow_case_first_action_seconds_count", ())] == 1.0

    run(tmp_path, scenario)


def test_rule_quality_view_reads_the_officers_outcomes(tmp_path: Path) -> None:
    async def scenario(c: TestClient, target: str) -> None:
        red = await case_of(c, RED)
        r = await c.post(f"/api/cases/{red}/close", headers=OFFICER, json={"outcome": "confirmed", "reason": "r"})
        assert r.status == 200
        yellow = await case_of(c, YELLOW)
        r = await c.post(f"/api/cases/{yellow}/close", headers=OFFICER, json={"outcome": "false_alarm", "reason": "r"})
        assert r.status == 200
        q = await body(await c.get("/api/rules/quality", headers=VIEWER))
        assert (q["all"]["hits"], q["all"]["closed"], q["all"]["confirmed_share"]) == (4, 2, 0.5)
        surge = next(x for x in q["rules"] if x["rule_id"] == "all.complaint_surge")
        assert (surge["name_zh"], surge["cases_opened"], surge["outcomes"]["confirmed"]) == ("投诉量激增", 1, 1)
        assert (await c.get("/api/rules/quality")).status == 401

    run(tmp_path, scenario)


def test_the_entity_page_carries_its_header_and_case(tmp_path: Path) -> None:
    async def scenario(c: TestClient, target: str) -> None:
        d = await body(await c.get(f"/api/entities/{RED}", headers=VIEWER))
        cur = d["current"]
        assert (cur["level"], cur["risk_index"], cur["people"], cur["amount"]) == ("red", 91.0, 12, 3.5e6)
        assert [t["name_zh"] for t in cur["tags"]] == ["承诺保本保收益", "投诉量激增"]
        (case,) = d["cases"]
        assert case["level"] == "red" and [e["action"] for e in case["log"]] == ["open", "raise"]
        d = await body(await c.get(f"/api/entities/{GREEN}", headers=VIEWER))
        assert d["current"]["level"] == "green" and d["cases"] == []

    run(tmp_path, scenario)


def test_first_actions_before_the_feed_started_are_not_counted_again() -> None:
    """A restarted feed observes only first actions taken since it started: ``increase()`` over
    the dashboard's range then holds no jump of the store's whole history at each restart."""
    from prometheus_client import CollectorRegistry

    from riskflow.feed.metrics import CaseMetricRow, FeedMetrics

    reg = CollectorRegistry()
    m = FeedMetrics.create(reg, started="2026-01-02T00:00:00.000+00:00")
    old = CaseMetricRow(
        "c1", "red", "330100", "assigned", "2026-01-01T00:00:00.000+00:00", "9", "2026-01-01T01:00:00.000+00:00"
    )
    new = CaseMetricRow(
        "c2", "red", "330100", "assigned", "2026-01-02T00:00:00.000+00:00", "9", "2026-01-02T00:10:00.000+00:00"
    )
    m.refresh_cases([old, new], "2026-01-03T00:00:00.000+00:00")
    m.refresh_cases([old, new], "2026-01-03T00:00:00.000+00:00")
    assert reg.get_sample_value("riskflow_case_first_action_seconds_count") == 1.0
    assert reg.get_sample_value("riskflow_case_first_action_seconds_sum") == 600.0
    assert reg.get_sample_value("riskflow_cases_open", {"level": "red", "region": "330100"}) == 2.0


def test_board_case_and_entity_show_each_dimensions_points_of_the_index(tmp_path: Path) -> None:
    """The points the risk index carried on the alert, not configured weights; an alert stored
    before alerts carried them is marked estimated."""
    real = [
        {"dimension": "inducement", "zh": "利诱性", "points": 60.2, "estimated": False},
        {"dimension": "complaints", "zh": "投诉率", "points": 30.8, "estimated": False},
    ]

    async def scenario(c: TestClient, target: str) -> None:
        rows = {r["entity_id"]: r for r in (await body(await c.get("/api/board", headers=VIEWER)))["rows"]}
        assert rows[RED]["dimensions"] == real
        case = await body(await c.get(f"/api/cases/{await case_of(c, RED)}", headers=VIEWER))
        assert case["dimensions"] == real, "the case's latest alert"
        ent = await body(await c.get(f"/api/entities/{RED}", headers=VIEWER))
        assert ent["current"]["dimensions"] == real
        assert [h["dimensions"] for h in ent["history"]] == [{}, {"complaints": 30.8, "inducement": 60.2}]
        assert ent["dimension_names"]["inducement"] == "利诱性"
        with open_store(target) as s:  # an institution whose alert carries no points (stored before)
            s.upsert_alerts([alert("o1", "orange", 70.0, entity="PFM-330100-0077", risk_tags=["all.complaint_surge"])])
        rows = {r["entity_id"]: r for r in (await body(await c.get("/api/board", headers=VIEWER)))["rows"]}
        assert rows["PFM-330100-0077"]["dimensions"] == [
            {"dimension": "complaints", "zh": "投诉率", "points": 70.0, "estimated": True}
        ]

    run(tmp_path, scenario)


@pytest.mark.parametrize(
    ("rule", "evidence", "en", "zh"),
    [
        (
            "pf.return_above_4lpr",
            {"promised_return": 0.15},
            "promised return a year 15%, above the 4 × 1-year LPR (3%) limit of 12%",
            "承诺年化收益率 15%，高于4倍一年期LPR（3%）即12%的上限",
        ),
        (
            "bank.car_below_minimum",
            {"capital_adequacy_ratio": 0.072},
            "capital adequacy ratio 7.2%, below the 8% minimum",
            "资本充足率 7.2%，低于8%的下限",
        ),
        (
            "bank.car_below_buffer",
            {"capital_adequacy_ratio": 0.095},
            "capital adequacy ratio 9.5%, at or above 8% and below 10.5%",
            "资本充足率 9.5%，不低于8%且低于10.5%",
        ),
        (
            "slc.borrowed_funds_over_1x",
            {"borrowed_funds/net_assets": 1.8},
            "borrowed funds / net assets 1.8×, above the 1× limit",
            "融入资金/净资产 1.8×，高于1×的上限",
        ),
        (
            "pf.unqualified_investor",
            {"investor_type": "individual", "amount": 500000.0},
            "investor: an individual; amount ¥500,000, below the ¥1,000,000 minimum",
            "投资者类型：个人投资者；金额 50万元，低于100万元的下限",
        ),
        (
            "inst.enforcement_severe",
            {"action": "suspension"},
            "regulator's action: business suspended (one of: business suspended, licence revoked)",
            "监管措施：暂停业务（属于：暂停业务、吊销许可）",
        ),
        (
            "all.opinion_risk_keywords",
            {"keywords": ["跑路", "好评", "爆雷"]},
            "risk words in the coverage: 跑路, 爆雷 (10 words watched)",
            "舆情命中风险特征词：跑路、爆雷（共监测10个）",
        ),
        (
            "inst.negative_net_assets",
            {"net_assets": -1.2e6},
            "net assets -¥1,200,000, below zero",
            "净资产 -120万元，低于零",
        ),
        ("pf.amac_lost_contact", {"notice": "lost_contact"}, "AMAC notice: lost contact", "中基协公示：失联"),
        # evidence not of its rule's shape: the raw fields, never an error
        ("pf.return_above_4lpr", {"promised_return": "x"}, "promised_return = x", "promised_return = x"),
        ("pf.return_above_4lpr", {"promised_return": 1e308}, "promised_return = 1e+308", "promised_return = 1e+308"),
        ("bank.npl_above_5pct", {"other": 1}, "other = 1", "other = 1"),
    ],
)
def test_threshold_evidence_reads_as_a_sentence_from_the_rules_conditions(
    rule: str, evidence: dict[str, Any], en: str, zh: str
) -> None:
    from riskflow.feed.explain import Explainer

    assert Explainer.default().sentence(rule, evidence) == (en, zh)


def test_every_threshold_rule_of_the_pack_has_its_fields_in_words() -> None:
    """A rule author adding a threshold on a new field sees this fail until the field is named."""
    from riskflow.feed.explain import FIELDS, Explainer

    conds = Explainer.default().conditions
    assert len(conds) >= 20
    assert {c["field"] for cs in conds.values() for c in cs} <= set(FIELDS)


async def _case_events(resp: Any, n: int, timeout: float = 20.0) -> list[dict[str, Any]]:
    """The next ``n`` ``event: case`` messages of a live stream (alert messages are skipped)."""
    import re

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    buf, out = "", []
    while len(out) < n:
        chunk = await asyncio.wait_for(resp.content.readany(), timeout=max(deadline - loop.time(), 0.1))
        assert chunk, f"the stream ended after {len(out)} case events"
        buf += chunk.decode()
        while "\n\n" in buf:
            block, buf = buf.split("\n\n", 1)
            if block.startswith("event: case"):
                assert not re.search(r"^id:", block, re.M), "a case message keeps the alert resume point"
                data = re.search(r"^data: (.*)$", block, re.M)
                assert data
                out.append(json.loads(data.group(1)))
    return out


def test_case_changes_are_pushed_on_the_live_stream_at_once(tmp_path: Path) -> None:
    """An officer's assignment and close reach another officer's open stream as ``event: case``;
    ``case_since`` replays the case changes after it; a bad one is refused."""

    async def scenario(c: TestClient, target: str) -> None:
        red = await case_of(c, RED)
        resp = await c.get("/api/stream?token=v1ewer-token")
        assert resp.status == 200
        await asyncio.sleep(0.3)  # subscribed before the action (the stream sends what follows)
        r = await c.post(f"/api/cases/{red}/assign", headers=OFFICER, json={"assignee": "wang.wei"})
        assert r.status == 200
        (ev,) = await _case_events(resp, 1)
        assert (ev["case_id"], ev["status"], ev["assignee"], ev["status_zh"]) == (red, "assigned", "wang.wei", "处置中")
        # a writer in another process (the CLI) is seen too
        with open_store(target) as other:
            other.case_action(red, "close", actor="chief.zhao", outcome="confirmed", reason="checked")
        (ev,) = await _case_events(resp, 1)
        assert (ev["status"], ev["outcome"], ev["closed_by"]) == ("closed", "confirmed", "chief.zhao")
        value = c.app[KEY_REGISTRY].get_sample_value  # type: ignore[index]
        assert value("riskflow_feed_case_events_sent_total") == 2
        resp.close()
        # Resuming: every case changed after case_since 0, oldest change first, each once.
        resp = await c.get("/api/stream?token=v1ewer-token&case_since=0")
        with open_store(target) as s:
            want = [(x.case_id, x.seq) for x in sorted(s.list_cases(), key=lambda x: x.seq)]
        got = await _case_events(resp, len(want))
        assert [(e["case_id"], e["seq"]) for e in got] == want
        resp.close()
        r = await c.get("/api/stream?token=v1ewer-token&case_since=x")
        assert r.status == 400 and "case_since" in (await body(r))["message"]

    run(tmp_path, scenario)


def test_a_case_backlog_is_paged_within_the_stream_limits(tmp_path: Path) -> None:
    """``case_since=0`` over more cases than a store page: the stream holds one page at a time
    (RISKFLOW feed limits, riskflow/feed/guard.py) and sends every case once, in change order."""
    import aiohttp

    from riskflow.feed.app import KEY_HUB
    from riskflow.feed.guard import FeedLimits
    from tests.support.feed_tools import serving

    target = str(tmp_path / "many.sqlite3")
    with open_store(target) as s:
        s.upsert_alerts([alert(f"y{i}", "yellow", 45.0, entity=f"PFM-330100-{i:04d}") for i in range(30)])
        want = [(c.case_id, c.seq) for c in sorted(s.list_cases(), key=lambda c: c.seq)]
    assert len(want) == 30

    async def go() -> None:
        async with serving(target, FeedLimits(stream_page=7)) as (app, url, _):
            async with aiohttp.ClientSession() as http:
                resp = await http.get(f"{url}/api/stream?token=v1ewer-token&case_since=0")
                got = await _case_events(resp, 30)
                resp.close()
            assert [(e["case_id"], e["seq"]) for e in got] == want
            assert app[KEY_HUB].stats.peak_page_rows <= 7

    asyncio.run(go())


def test_anomaly_detectors_are_named_in_words_like_rules() -> None:
    # the board showed `anomaly.daily anomaly.daily` as a tag: the detectors' own names now
    ex = Explainer.default()
    daily = ex.rule("anomaly.daily")
    assert daily["name_zh"] and daily["name_en"] and daily["name_zh"] != "anomaly.daily"
