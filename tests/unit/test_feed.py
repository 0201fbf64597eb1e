"""The feed's JSON API, roles, live stream and OpenAPI document (aiohttp test server, SQLite store)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate

from riskflow.feed.app import KEY_REGISTRY
from riskflow.feed.auth import Tokens
from riskflow.feed.openapi import openapi_document
from riskflow.store import open_store
from tests.support.feed_tools import body as _json
from tests.support.feed_tools import serve
from tests.support.store_tools import make_alert

VIEWER, OFFICER, ADMIN = ({"Authorization": f"Bearer {t}"} for t in ("v1ewer-token", "0fficer-token", "adm1n-token"))

Scenario = Callable[[TestClient, str], Awaitable[None]]


def run_app(tmp_path: Path, scenario: Scenario, target: str | None = None) -> None:
    """Serve a store (SQLite unless ``target``) seeded with three alerts; run ``scenario(client, target)``."""
    target = target or str(tmp_path / "alerts.sqlite3")
    with open_store(target) as s:
        s.upsert_alerts(
            [
                make_alert("a1", risk_level="red", risk_index=91.0, evidence={"guaranteed": True}),
                make_alert(
                    "a2",
                    region="330300",
                    entity_id="PF-9",
                    entity_kind="private_fund",
                    risk_level="yellow",
                    rule_id="pf.unqualified_investor",
                    event_time="2025-04-05T10:00:00+08:00",
                ),
                make_alert(
                    "a3",
                    revision=2,
                    risk_index=70.0,
                    event_time="2025-04-03T10:00:00+08:00",
                    episode={
                        "first_seen": "2025-04-02T10:00:00+08:00",
                        "last_seen": "2025-04-03T10:00:00+08:00",
                        "count": 2,
                    },
                ),
            ]
        )

    serve(target, scenario)


def test_reads_need_a_token_and_writes_an_officer(tmp_path: Path) -> None:
    async def scenario(c: TestClient, target: str) -> None:
        for path in ("/api/alerts", "/api/meta", "/api/alerts/a1", "/api/entities/PFM-330100-0001", "/api/stream"):
            r = await c.get(path)
            assert r.status == 401, path
        r = await c.get("/api/alerts", headers={"Authorization": "Bearer wrong-token"})
        assert r.status == 401
        r = await c.get("/api/alerts?token=v1ewer-token")
        assert r.status == 401, "only the stream takes a token in the URL"

        r = await c.post("/api/alerts/a1/ack", json={"note": "x"})
        assert r.status == 401
        r = await c.post("/api/alerts/a1/ack", json={"note": "x"}, headers=VIEWER)
        assert r.status == 403 and (await _json(r))["error"] == "forbidden"
        with open_store(target) as s:
            assert s.get("a1").status == "open" and s.audit("a1") == [], "refused writes change nothing"

        r = await c.post("/api/alerts/a1/ack", json={"note": "电话核实中"}, headers=OFFICER)
        assert r.status == 200
        body = await _json(r)
        assert (body["status"], body["status_zh"]) == ("acknowledged", "已确认")
        r = await c.post("/api/alerts/a1/resolve", json={"note": "done"}, headers=OFFICER)
        assert r.status == 200
        r = await c.post("/api/alerts/a1/reopen", json={"note": "x"}, headers=OFFICER)
        assert r.status == 403, "re-opening a resolved alert needs an admin"
        r = await c.post("/api/alerts/a1/reopen", json={"note": "new complaints"}, headers=ADMIN)
        assert r.status == 200
        with open_store(target) as s:
            trail = [(e.action, e.actor, e.note) for e in s.audit("a1")]
        assert trail == [
            ("ack", "li.na", "电话核实中"),
            ("resolve", "li.na", "done"),
            ("reopen", "chief.zhao", "new complaints"),
        ]

        r = await c.get("/api/meta", headers=VIEWER)
        meta = await _json(r)
        assert meta["me"] == {"name": "audit.office", "role": "viewer"}
        assert {"code": "330100", "en": "Hangzhou", "zh": "杭州"} in meta["regions"]
        assert [lv["zh"] for lv in meta["levels"]] == ["红", "橙", "黄", "绿"]
        assert {r_["rule_id"] for r_ in meta["rules"]} == {"pf.guaranteed_return", "pf.unqualified_investor"}

    run_app(tmp_path, scenario)


def test_list_detail_entity_and_errors(tmp_path: Path) -> None:
    async def scenario(c: TestClient, target: str) -> None:
        async def ids(query: str) -> list[str]:
            r = await c.get(f"/api/alerts{query}", headers=VIEWER)
            assert r.status == 200
            return [a["alert_id"] for a in (await _json(r))["alerts"]]

        assert await ids("") == ["a2", "a3", "a1"]
        assert await ids("?region=330300") == ["a2"]
        assert await ids("?level=red") == ["a1"]
        assert await ids("?kind=private_fund") == ["a2"]
        assert await ids("?rule=pf.guaranteed_return&order=risk_index") == ["a1", "a3"]
        r = await c.get("/api/alerts?order=nonsense", headers=VIEWER)
        assert r.status == 400
        r = await c.get("/api/alerts", headers=VIEWER)
        first = (await _json(r))["alerts"][0]
        assert (first["region_zh"], first["region_en"], first["entity_kind_zh"]) == ("温州", "Wenzhou", "私募基金")

        r = await c.get("/api/alerts/nope", headers=VIEWER)
        assert r.status == 404
        r = await c.post("/api/alerts/nope/ack", headers=OFFICER)
        assert r.status == 404
        r = await c.post("/api/alerts/a1/explode", headers=OFFICER)
        assert r.status == 404
        r = await c.post("/api/alerts/a1/assign", json={}, headers=OFFICER)
        assert r.status == 400, "assign needs an assignee"
        r = await c.post(
            "/api/alerts/a1/snooze", json={"reason": "wait", "until": "2020-01-01T00:00:00+00:00"}, headers=OFFICER
        )
        assert r.status == 400, "a snooze expiry in the past is refused"
        r = await c.post("/api/alerts/a1/ack", data=b"{nope", headers=OFFICER)
        assert r.status == 400
        until = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).isoformat()
        r = await c.post("/api/alerts/a1/snooze", json={"reason": "awaiting filing", "until": until}, headers=OFFICER)
        assert r.status == 200 and (await _json(r))["status"] == "snoozed"
        r = await c.post("/api/alerts/a1/snooze", json={"reason": "again", "until": until}, headers=OFFICER)
        assert r.status == 409, "a snoozed alert cannot be snoozed again"

        r = await c.get("/api/alerts/a1", headers=VIEWER)
        d = await _json(r)
        assert d["snooze_reason"] == "awaiting filing" and d["audit"][0]["action"] == "snooze"

        r = await c.get("/api/entities/PFM-330100-0001", headers=VIEWER)
        e = await _json(r)
        assert {a["alert_id"] for a in e["alerts"]} == {"a1", "a3"}
        assert [(h["alert_id"], h["revision"]) for h in e["history"]] == [("a1", 1), ("a3", 2)]
        ep = {x["alert_id"]: x for x in e["episodes"]}
        assert ep["a3"]["count"] == 2 and ep["a3"]["first_seen"] == "2025-04-02T10:00:00+08:00"
        assert ep["a1"]["evidence"] == {"guaranteed": True}
        r = await c.get("/api/entities/NOBODY", headers=VIEWER)
        assert r.status == 404

    run_app(tmp_path, scenario)


async def _read_events(resp: Any, want: int, timeout: float = 30.0) -> AsyncIterator[dict[str, Any]]:
    buf = ""
    got = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while got < want:
        chunk = await asyncio.wait_for(resp.content.readany(), timeout=max(deadline - loop.time(), 0.1))
        if not chunk:
            return
        buf += chunk.decode()
        while "\n\n" in buf:
            block, buf = buf.split("\n\n", 1)
            if "event: alert" in block:
                data = re.search(r"^data: (.*)$", block, re.M)
                assert data
                got += 1
                yield json.loads(data.group(1))


@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_stream_pushes_changes_from_any_writer(tmp_path: Path, db: str, request: pytest.FixtureRequest) -> None:
    async def scenario(c: TestClient, target: str) -> None:
        r = await c.get("/api/alerts", headers=VIEWER)
        seq = (await _json(r))["seq"]
        resp = await c.get(f"/api/stream?token=v1ewer-token&since={seq}")
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/event-stream")

        # Another process (the sink, the CLI) writes to the same database file.
        other = open_store(target)
        await asyncio.to_thread(other.upsert_alerts, [make_alert("a9", region="331000", risk_level="orange")])
        await asyncio.to_thread(other.transition, "a2", "ack", actor="wang.wei")
        events = [e async for e in _read_events(resp, 2)]
        other.close()
        assert [(e["alert_id"], e["status"]) for e in events] == [("a9", "open"), ("a2", "acknowledged")]
        value = c.app[KEY_REGISTRY].get_sample_value  # type: ignore[index]
        assert value("riskflow_feed_clients") == 1 and value("riskflow_feed_events_sent_total") == 2
        assert events[0]["region_zh"] == "台州"
        resp.close()

        # Resuming from an older change number replays what came after it.
        resp = await c.get(f"/api/stream?token=v1ewer-token&since={seq}")
        again = [e["alert_id"] async for e in _read_events(resp, 2)]
        assert again == ["a9", "a2"]
        resp.close()

    run_app(tmp_path, scenario, request.getfixturevalue("postgres_url") if db == "postgresql" else None)


def test_requests_counted_by_route_pattern_and_status(tmp_path: Path) -> None:
    async def scenario(c: TestClient, target: str) -> None:
        await c.get("/api/alerts", headers=VIEWER)
        await c.get("/api/alerts/a1", headers=VIEWER)
        await c.get("/api/alerts/a2", headers=VIEWER)
        await c.get("/api/alerts/zzz", headers=VIEWER)
        await c.get("/api/alerts")
        await c.post("/api/alerts/a1/ack", headers=VIEWER, json={})
        await c.get("/no/such/page/PF-1")
        r = await c.get("/metrics")
        assert r.status == 200
        text = await r.text()
        count = c.app[KEY_REGISTRY].get_sample_value  # type: ignore[index]

        def n(route: str, status: str) -> float | None:
            return count("riskflow_feed_requests_total", {"route": route, "status": status})

        assert n("/api/alerts", "200") == 1 and n("/api/alerts", "401") == 1
        assert n("/api/alerts/{alert_id}", "200") == 2 and n("/api/alerts/{alert_id}", "404") == 1
        assert n("/api/alerts/{alert_id}/{action}", "403") == 1 and n("other", "404") == 1
        # Label values come from fixed sets: no alert or entity id ever becomes one.
        assert "a1" not in re.findall(r'route="([^"]*)"', text) and "PF-1" not in text
        assert "riskflow_feed_clients 0.0" in text

    run_app(tmp_path, scenario)


def test_page_static_and_openapi_document(tmp_path: Path) -> None:
    async def scenario(c: TestClient, target: str) -> None:
        r = await c.get("/")
        html = await r.text()
        assert r.status == 200 and "实时预警" in html and "Live alert feed" in html
        r = await c.get("/static/feed.js")
        assert r.status == 200 and "EventSource" in await r.text()
        r = await c.get("/openapi.json")
        assert r.status == 200
        doc = await _json(r)
        validate(doc)
        # Every API route the app serves is documented, with its method.
        documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
        for route in c.server.app.router.routes():
            path = route.resource.canonical if route.resource else ""
            if (path.startswith("/api/") or path == "/metrics") and route.method != "HEAD":
                assert (route.method, path) in documented, (route.method, path)

    run_app(tmp_path, scenario)


def test_tokens_must_be_well_formed() -> None:
    with pytest.raises(ValueError, match="role"):
        Tokens.parse("abcdefgh:root:me")
    with pytest.raises(ValueError, match="8 characters"):
        Tokens.parse("short:viewer:me")
    with pytest.raises(ValueError, match="token:role:name"):
        Tokens.parse("abcdefghij:viewer")
    validate(openapi_document())


def test_feed_command_serves_with_generated_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """``serve_feed`` without configured tokens: one admin token per run, printed once on the
    terminal with the URL, and in no log record (log files and collectors would keep it)."""
    import logging

    from riskflow.core.settings import Settings
    from riskflow.feed.server import serve_feed

    settings = Settings(data_dir=tmp_path, feed_tokens="")
    caplog.set_level(logging.DEBUG)  # every record of every logger
    printed = ""

    async def go() -> None:
        nonlocal printed
        stop = asyncio.Event()
        task = asyncio.create_task(serve_feed(settings, stop, with_sink=False, port=0))
        for _ in range(200):
            printed += capsys.readouterr().err
            if "#token=" in printed:
                break
            await asyncio.sleep(0.05)
        m = re.search(r"(http://\S+/)#token=(\S+)", printed)
        assert m, printed
        async with ClientSession() as s:
            async with s.get(m.group(1) + "api/meta", headers={"Authorization": f"Bearer {m.group(2)}"}) as r:
                assert r.status == 200 and (await r.json())["me"]["role"] == "admin"
                assert r.headers["X-Frame-Options"] == "DENY"
            async with s.get(m.group(1) + "api/meta", headers={"Authorization": "Bearer not-the-token"}) as r:
                assert r.status == 401  # a failed attempt: logged (rate-limited), without any token
        stop.set()
        await task

    asyncio.run(go())
    printed += capsys.readouterr().err
    m = re.search(r"#token=(\S+)", printed)
    assert m and printed.count(m.group(1)) == 1, "printed once"
    token = m.group(1)
    messages = [r.getMessage() for r in caplog.records]
    assert any("generated admin token printed" in x for x in messages), "the URL itself is still logged"
    assert any("failed token attempt" in x for x in messages)
    leaked = [x for x in messages if token in x or "not-the-token" in x]
    assert not leaked, leaked
    assert (tmp_path / "alerts.sqlite3").exists()
