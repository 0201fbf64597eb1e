"""The officers' feed under a hostile viewer (issue 22): stream limits, bounded backlog,
note size, security headers, failed-token back-off.

Real servers on loopback (the feed's own runner, as ``riskflow feed`` starts it), a real
SQLite store; no timing assertions (the back-off runs on an injected clock, loops are bounded).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, TCPConnector

from riskflow.feed.app import KEY_HUB, KEY_REGISTRY, KEY_SLOTS
from riskflow.feed.guard import SECURITY_HEADERS, FeedLimits
from riskflow.feed.openapi import openapi_document
from riskflow.store import open_store
from tests.support.feed_tools import serving
from tests.support.store_tools import make_alert

TOKENS = "v1ewer-token:viewer:audit.office,0fficer-token:officer:li.na,adm1n-token:admin:chief.zhao"
VIEWER, OFFICER, ADMIN = ({"Authorization": f"Bearer {t}"} for t in ("v1ewer-token", "0fficer-token", "adm1n-token"))


def sse_alerts(buf: bytes) -> tuple[list[tuple[int, str]], bytes]:
    """The complete ``alert`` events in ``buf`` as (id, alert id), and the incomplete rest."""
    *blocks, rest = buf.split(b"\n\n")
    out = []
    for block in blocks:
        m = re.search(rb"^id: (\d+)\nevent: alert\ndata: (.*)$", block, re.M)
        if m:
            out.append((int(m.group(1)), json.loads(m.group(2))["alert_id"]))
    return out, rest


async def until(cond: Callable[[], bool], what: str, tries: int = 400) -> None:
    """Wait (bounded) for a server-side condition that follows from an action already taken."""
    for _ in range(tries):
        if cond():
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"never happened: {what}")


def run(coro: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(coro())  # type: ignore[arg-type]


def seeded(tmp_path: Path, n: int = 3, evidence_bytes: int = 0) -> str:
    target = str(tmp_path / "alerts.sqlite3")
    with open_store(target) as s:
        s.upsert_alerts([make_alert(f"h{i:05d}", evidence={"text": "x" * evidence_bytes, "i": i}) for i in range(n)])
    return target


def test_stream_limits_per_token_and_in_total_and_slots_come_back(tmp_path: Path) -> None:
    target = seeded(tmp_path)

    async def go() -> None:
        async with serving(target, FeedLimits(streams_per_token=2, streams_total=3)) as (app, url, _):
            value = app[KEY_REGISTRY].get_sample_value
            slots, hub = app[KEY_SLOTS], app[KEY_HUB]
            async with ClientSession() as s:
                v1 = await s.get(f"{url}/api/stream?token=v1ewer-token")
                v2 = await s.get(f"{url}/api/stream", headers=VIEWER)
                assert (v1.status, v2.status) == (200, 200)
                refused = await s.get(f"{url}/api/stream?token=v1ewer-token")
                assert refused.status == 503 and int(refused.headers["Retry-After"]) > 0
                body = await refused.json()
                assert body["error"] == "too_many_streams" and "token" in body["message"]
                o1 = await s.get(f"{url}/api/stream", headers=OFFICER)
                assert o1.status == 200, "another token still has room below the total"
                full = await s.get(f"{url}/api/stream", headers=ADMIN)
                assert full.status == 503 and "Retry-After" in full.headers
                assert "feed" in (await full.json())["message"]
                assert value("riskflow_feed_streams_refused_total", {"reason": "per_token"}) == 1
                assert value("riskflow_feed_streams_refused_total", {"reason": "total"}) == 1
                assert slots.open == 3 and len(hub.subscribers) == 3

                v1.close()  # the slot comes back when the client goes, not at the next keep-alive
                await until(lambda: slots.open == 2, "a closed stream released its slot")
                again = await s.get(f"{url}/api/stream?token=v1ewer-token")
                assert again.status == 200
                for r in (v2, o1, again):
                    r.close()
                await until(lambda: slots.open == 0 and not slots.by_key, "every slot released")
                await until(lambda: not hub.subscribers, "every subscription dropped")
                assert value("riskflow_feed_clients") == 0
                # a stream the client closed was served (200), not a server error
                counted = {
                    code: value("riskflow_feed_requests_total", {"route": "/api/stream", "status": code})
                    for code in ("200", "503", "500")
                }
                assert counted == {"200": 4, "503": 2, "500": None}

    run(go)


def _raw_stream(port: int, query: str) -> socket.socket:
    """A client with a 4 KB receive buffer (no autotuning), so a server writing to it blocks soon."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET /api/stream?{query} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
    sock.setblocking(False)
    return sock


def test_slow_reader_of_a_large_history_holds_a_bounded_backlog(tmp_path: Path) -> None:
    """``since=0`` over 1,500 alerts (~3 KB each) to a client that stops reading, while the sink
    keeps writing: the server holds one store page and at most ``stream_queue`` shared batches;
    the stream falls behind, then catches up from the store; every change arrives, in order, once."""
    target = seeded(tmp_path, n=1500, evidence_bytes=3000)
    limits = FeedLimits(stream_page=50, stream_queue=2)

    async def go() -> None:
        writer = open_store(target)
        async with serving(target, limits) as (app, url, _):
            hub, slots = app[KEY_HUB], app[KEY_SLOTS]
            loop = asyncio.get_running_loop()
            sock = _raw_stream(int(url.rsplit(":", 1)[1]), "token=v1ewer-token&since=0")
            await until(lambda: len(hub.subscribers) == 1, "the stream subscribed")
            (sub,) = hub.subscribers
            rounds = 0
            while not sub.behind:  # the client reads nothing: the server's writes block, batches pile up
                assert rounds < 40, "the stream never fell behind"
                new = [make_alert(f"n{rounds:02d}-{i:03d}", evidence={"text": "y" * 3000}) for i in range(100)]
                await asyncio.to_thread(writer.upsert_alerts, new)
                last = await asyncio.to_thread(writer.last_seq)
                hub.poke()
                await until(lambda: hub.seq >= last, "the hub saw the round")  # noqa: B023
                rounds += 1
                assert sub.queue.qsize() <= limits.stream_queue
            assert hub.stats.peak_queued <= limits.stream_queue

            async def everything() -> dict[str, int]:
                return {r.alert.alert_id: r.seq for r in await asyncio.to_thread(writer.changes_since, 0, 100000)}

            want = await everything()
            buf, seqs, got = b"", [], dict[str, int]()
            more = [300, 900, 1600]  # the sink goes on writing while the client catches up
            while got != want:
                chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), 60)
                assert chunk, f"the stream ended with {len(got)} of {len(want)} alerts"
                if more and len(got) >= more[0]:
                    batch = [make_alert(f"m{more[0]:04d}-{i:02d}") for i in range(50)]
                    batch += [make_alert(f"h{i:05d}", revision=2) for i in range(more[0] - 40, more[0] + 10)]
                    await asyncio.to_thread(writer.upsert_alerts, batch)
                    hub.poke()
                    more.pop(0)
                    want = await everything()
                buf += chunk
                events, buf = sse_alerts(buf)
                for seq, aid in events:
                    seqs.append(seq)
                    got[aid] = seq
            assert seqs == sorted(set(seqs)), "each change once, in change order"
            assert hub.stats.peak_page_rows <= limits.stream_page
            assert (app[KEY_REGISTRY].get_sample_value("riskflow_feed_stream_catchups_total") or 0) >= 1
            sock.close()
            await until(lambda: not hub.subscribers and slots.open == 0, "the closed stream let go of everything")
        writer.close()

    run(go)


def test_changes_found_live_during_a_catch_up_are_sent_once(tmp_path: Path) -> None:
    """While a stream pages its backlog, the hub hands it the same changes live: each goes out once.

    The stream's first page read is held (a gate in front of the real store) until the hub has
    queued the live batch, so the overlap happens every run."""
    import threading

    target = seeded(tmp_path, n=120)
    limits = FeedLimits(stream_page=50)

    async def go() -> None:
        store = open_store(target)
        gate, reading = threading.Event(), threading.Event()
        real = store.changes_since

        def gated(seq: int, limit: int = 500) -> Any:
            if limit == limits.stream_page and not gate.is_set():  # the stream's read, not the hub's
                reading.set()
                gate.wait(30)
            return real(seq, limit)

        store.changes_since = gated  # type: ignore[method-assign]
        async with serving(store, limits) as (app, url, _):
            hub = app[KEY_HUB]
            async with ClientSession() as s:
                resp = await s.get(f"{url}/api/stream?token=v1ewer-token&since=0")
                await until(reading.is_set, "the stream started its catch-up")
                with open_store(target) as writer:
                    writer.upsert_alerts([make_alert(f"live{i}") for i in range(5)])
                    writer.transition("h00003", "ack", actor="wang.wei")
                    last = writer.last_seq()
                hub.poke()
                await until(lambda: hub.seq >= last, "the hub published the live batch")
                (sub,) = hub.subscribers
                assert sub.queue.qsize() == 1 and not sub.behind
                gate.set()
                await until(lambda: sub.queue.empty(), "the stream took the live batch")
                with open_store(target) as writer:  # one more change: whatever came before it was sent
                    writer.upsert_alerts([make_alert("sentinel")])
                    last = writer.last_seq()
                hub.poke()
                seqs: list[int] = []
                ids: list[str] = []
                buf = b""
                while not seqs or seqs[-1] < last:
                    buf += await asyncio.wait_for(resp.content.readany(), 30)
                    events, buf = sse_alerts(buf)
                    seqs += [seq for seq, _ in events]
                    ids += [aid for _, aid in events]
                resp.close()
            assert len(ids) == len(set(ids)) == 126 and seqs == sorted(seqs), "each change once, in order"
        store.close()

    run(go)


def test_over_long_text_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    target = seeded(tmp_path)

    async def go() -> None:
        async with serving(target, FeedLimits(max_note_bytes=4096)) as (_, url, store):
            before = store.last_seq()
            async with ClientSession() as s:
                for body in (
                    {"note": "x" * 4097},
                    {"note": "备" * 1366},  # 4,098 bytes in UTF-8
                    {"note": "ok", "assignee": "a" * 5000},
                    {"note": "x" * 2_000_000},  # beyond any body the feed reads
                ):
                    r = await s.post(f"{url}/api/alerts/h00000/assign", json=body, headers=OFFICER)
                    assert r.status == 413, body.keys()
                    err = await r.json()
                    assert err["error"] == "too_large" and "4096" in err["message"]
                r = await s.post(
                    f"{url}/api/alerts/h00000/snooze",
                    json={"reason": "r" * 4097, "until": "2099-01-01T00:00:00+00:00"},
                    headers=OFFICER,
                )
                assert r.status == 413
                r = await s.post(
                    f"{url}/api/alerts/h00000/ack", data=b'{"note": "\\ud800"}', headers=OFFICER
                )  # a lone surrogate: no text at all
                assert r.status == 400
                assert store.get("h00000").status == "open" and store.audit("h00000") == []
                assert store.last_seq() == before, "nothing written"
                r = await s.post(f"{url}/api/alerts/h00000/ack", json={"note": "备" * 1365}, headers=OFFICER)
                assert r.status == 200, "4,095 bytes is within the limit"
                assert store.audit("h00000")[0].note == "备" * 1365

    run(go)


def test_security_headers_on_every_kind_of_response(tmp_path: Path) -> None:
    target = seeded(tmp_path)

    async def go() -> None:
        async with serving(target, FeedLimits(streams_per_token=1)) as (_, url, _), ClientSession() as s:
            checks = [
                ("/", {}, 200),
                ("/static/feed.js", {}, 200),
                ("/static/feed.css", {}, 200),
                ("/static/no-such.js", {}, 404),
                ("/api/alerts", VIEWER, 200),
                ("/api/alerts/nope", VIEWER, 404),
                ("/no/such/page", {}, 404),
                ("/api/alerts", {}, 401),
                ("/api/alerts", {"Authorization": "Bearer wrong-one"}, 401),
                ("/openapi.json", {}, 200),
                ("/metrics", {}, 200),
            ]
            for path, headers, status in checks:
                async with s.get(url + path, headers=headers) as r:
                    assert r.status == status, path
                    for name, value in SECURITY_HEADERS.items():
                        assert r.headers.get(name) == value, (path, name)
            first = await s.get(f"{url}/api/stream", headers=VIEWER)
            async with s.get(f"{url}/api/stream", headers=VIEWER) as r:
                assert r.status == 503 and r.headers["X-Frame-Options"] == "DENY"
            assert first.headers["Content-Security-Policy"] == SECURITY_HEADERS["Content-Security-Policy"]
            first.close()

    run(go)
    csp = SECURITY_HEADERS["Content-Security-Policy"]
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp and "frame-ancestors 'none'" in csp
    # The page fits the policy: no inline script, style or handler for the browser to refuse.
    from riskflow.feed.app import STATIC

    html = (STATIC / "index.html").read_text(encoding="utf-8")
    assert not re.search(r"<script(?![^>]*\bsrc=)", html) and "<style" not in html
    assert not re.search(r"\s(on\w+|style)=", html)


def test_wrong_tokens_are_counted_logged_sparingly_and_slowed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    target = seeded(tmp_path)
    now = [1000.0]
    caplog.set_level(logging.INFO, logger="riskflow.feed")

    async def go() -> None:
        async with serving(target, FeedLimits(auth_burst=3, auth_rate=0.5), clock=lambda: now[0]) as (app, url, store):
            value = app[KEY_REGISTRY].get_sample_value
            async with ClientSession() as s:
                assert (await s.get(f"{url}/api/meta", headers=VIEWER)).status == 200  # the officer, signed in
                assert (await s.get(f"{url}/api/meta")).status == 401  # no token: counted, not a guess
                statuses = []
                for i in range(50):
                    r = await s.get(f"{url}/api/meta", headers={"Authorization": f"Bearer guess-{i:04d}"})
                    statuses.append(r.status)
                    if r.status == 429:
                        assert int(r.headers["Retry-After"]) >= 1
                        assert (await r.json())["error"] == "too_many_failures"
                assert statuses.count(401) == 3 and statuses.count(429) == 47, "only the burst was checked"
                # the token already used from this address still works; the stream's ?token= too
                assert (await s.get(f"{url}/api/meta", headers=VIEWER)).status == 200
                # a valid token never used from here is refused unchecked: no oracle for the guesser
                assert (await s.get(f"{url}/api/meta", headers=OFFICER)).status == 429
                assert (await s.post(f"{url}/api/alerts/h00000/ack", headers=OFFICER, json={})).status == 429
                assert store.get("h00000").status == "open"
                assert value("riskflow_feed_auth_failures_total", {"reason": "invalid"}) == 3
                assert value("riskflow_feed_auth_failures_total", {"reason": "throttled"}) == 49
                assert value("riskflow_feed_auth_failures_total", {"reason": "missing"}) == 1

                now[0] += 2.0  # the back-off allows one more attempt (0.5 a second)
                assert (await s.get(f"{url}/api/meta", headers=OFFICER)).status == 200
                r = await s.get(f"{url}/api/meta", headers={"Authorization": "Bearer guess-more"})
                assert r.status == 401
                r = await s.get(f"{url}/api/meta", headers={"Authorization": "Bearer guess-again"})
                assert r.status == 429

            # another address is not slowed by this one's guessing
            async with ClientSession(connector=TCPConnector(local_addr=("127.0.0.2", 0))) as other:
                assert (await other.get(f"{url}/api/meta", headers=ADMIN)).status == 200
                r = await other.get(f"{url}/api/meta", headers={"Authorization": "Bearer typo-token"})
                assert r.status == 401
            warnings = [r for r in caplog.records if r.name == "riskflow.feed.guard"]
            assert len(warnings) == 1, "one warning for the whole burst of guesses"
            now[0] += 61.0
            async with ClientSession() as s:
                await s.get(f"{url}/api/meta", headers={"Authorization": "Bearer guess-later"})
            messages = [r.getMessage() for r in caplog.records if r.name == "riskflow.feed.guard"]
            assert len(messages) == 2 and "failed token attempt" in messages[1]
            assert not [m for m in messages if "guess" in m or "token-" in m or "typo" in m], "no token logged"

    run(go)


def test_openapi_documents_the_new_refusals() -> None:
    doc = openapi_document()
    paths = doc["paths"]
    stream = paths["/api/stream"]["get"]["responses"]
    assert "503" in stream and "Retry-After" in json.dumps(stream["503"])
    assert "413" in paths["/api/alerts/{alert_id}/{action}"]["post"]["responses"]
    for path, ops in paths.items():
        if path.startswith("/api/"):
            for op in ops.values():
                assert "429" in op["responses"] and "401" in op["responses"], path
