"""The officers' live alert feed: an aiohttp app serving a page, a JSON API and server-sent events.

Everything reads from and writes to the alert store, so the page, the API and
the CLI see the same state. New and changed alerts reach open pages through
``/api/stream`` (server-sent events): a ``ChangeHub`` polls the store's change
sequence, which every writer bumps (the sink, officers' actions, the CLI, in any
process), and fans the changed rows out to subscribers. Officers' cases travel the same way on
their own change sequence (``event: case``, one changed case per message, without an ``id`` so
that ``Last-Event-ID`` stays the alert change number; ``case_since=`` resumes them): an
assignment or a close by another officer shows on every open page at once.

>>> from riskflow.store import open_store
>>> app = build_app(open_store(":memory:"), Tokens.parse("t0ken-0fficer:officer:li.na"))
>>> sorted(r.resource.canonical for r in app.router.routes() if r.method == "POST")
['/api/alerts/{alert_id}/{action}', '/api/cases/{case_id}/{action}']
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final, NamedTuple

import msgspec
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from riskflow.core.schema import ENTITY_KINDS, REGIONS
from riskflow.feed.auth import Principal, Tokens
from riskflow.feed.explain import Explainer
from riskflow.feed.guard import SECURITY_HEADERS, AuthThrottle, FeedLimits, StreamSlots, token_key
from riskflow.feed.metrics import CaseMetricRow, FeedMetrics
from riskflow.feed.openapi import openapi_document
from riskflow.store import (
    ACTIONS,
    STATUSES,
    AlertRow,
    AlertStore,
    Case,
    IllegalTransition,
    NotFound,
    TransitionError,
)
from riskflow.store.base import now_iso

log = logging.getLogger(__name__)

LEVELS: Final = (
    {"id": "red", "zh": "红", "en": "Red", "route_zh": "立即处置、移送", "route_en": "immediate action; referral"},
    {"id": "orange", "zh": "橙", "en": "Orange", "route_zh": "现场检查", "route_en": "on-site inspection"},
    {"id": "yellow", "zh": "黄", "en": "Yellow", "route_zh": "非现场监测", "route_en": "off-site monitoring"},
    {"id": "green", "zh": "绿", "en": "Green", "route_zh": "列入观察", "route_en": "watch list"},
)
KIND_ZH: Final = {
    "private_fund_manager": "私募基金管理人",
    "private_fund": "私募基金",
    "bank": "银行",
    "small_loan_company": "小额贷款公司",
    "financing_guarantee": "融资担保公司",
    "pawnshop": "典当行",
    "financial_leasing": "融资租赁公司",
    "commercial_factoring": "商业保理公司",
    "trading_venue": "交易场所",
    "p2p_platform": "网络借贷平台",
    "enterprise": "企业",
}
STATUS_ZH: Final = {
    "open": "待处置",
    "acknowledged": "已确认",
    "assigned": "已分派",
    "snoozed": "暂缓",
    "resolved": "已办结",
}
ACTION_ROLE: Final = {"ack": "officer", "assign": "officer", "resolve": "officer", "snooze": "officer"}
STATIC = resources.files("riskflow.feed") / "static"
KEY_STORE: Final = web.AppKey("store", AlertStore)
KEY_TOKENS: Final = web.AppKey("tokens", Tokens)
KEY_PRINCIPAL: Final = web.RequestKey("principal", Principal)
#: The status a long-lived response already sent, for the count when its client leaves.
KEY_RESPONDED: Final = web.RequestKey("responded", int)
KEY_MAX_SNOOZE: Final = web.AppKey("max_snooze", _dt.timedelta)
KEY_METRICS: Final = web.AppKey("metrics", FeedMetrics)
KEY_REGISTRY: Final = web.AppKey("registry", CollectorRegistry)
KEY_LIMITS: Final = web.AppKey("limits", FeedLimits)
KEY_SLOTS: Final = web.AppKey("stream_slots", StreamSlots)
KEY_THROTTLE: Final = web.AppKey("auth_throttle", AuthThrottle)


#: One alert (or case) change as the stream sends it: its change number and the encoded SSE message.
Frame = tuple[int, bytes]


class Batch(NamedTuple):
    """Changes the hub found in one poll: alert frames and case frames, each in change order."""

    alerts: list[Frame]
    cases: list[Frame]


#: What a waiting stream is woken with when it fell behind: nothing, read the store instead.
_BEHIND: Final = Batch([], [])
#: Rows the hub reads from the store per poll; a fuller backlog is read in more polls at once.
HUB_PAGE: Final = 500


class Subscription:
    """One live stream's view of the hub: change batches waiting for it (shared with every
    other stream, so a waiting batch costs a reference), and whether it fell behind.

    A stream whose client reads slowly fills its small queue; the hub then drops what waits
    and marks it ``behind``, and the stream catches up by paging the store from the last
    change it sent. Nothing is buffered without bound and nothing is skipped.
    """

    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[Batch | None] = asyncio.Queue(maxsize=size)
        self.behind = False
        self.closed = False

    def _clear(self) -> None:
        while not self.queue.empty():
            self.queue.get_nowait()

    def offer(self, batch: Batch) -> None:
        if self.closed:  # the close marker must stay the last thing it reads
            return
        try:
            self.queue.put_nowait(batch)
        except asyncio.QueueFull:
            self._clear()
            self.behind = True
            self.queue.put_nowait(_BEHIND)  # wakes the stream, which then reads the store

    def catch_up(self) -> None:
        """The stream starts reading the store: what waits is older than what it will read."""
        self.behind = False
        self._clear()

    def close(self) -> None:
        self.closed = True
        self._clear()
        self.queue.put_nowait(None)


@dataclass
class StreamStats:
    """Largest store page a stream held and the most batches waiting for one: both bounded."""

    peak_page_rows: int = 0
    peak_queued: int = 0


class ChangeHub:
    """Polls ``store.changes_since`` and hands each batch of changed rows to every subscriber.

    A batch is encoded once and shared by every subscriber's queue.

    >>> from riskflow.store import open_store
    >>> hub = ChangeHub(open_store(":memory:"))
    >>> sub = hub.subscribe(); hub.unsubscribe(sub); len(hub.subscribers)
    0
    """

    def __init__(self, store: AlertStore, interval: float = 0.5, snooze_check_every: float = 30.0) -> None:
        self.store = store
        self.interval = interval
        self.snooze_check_every = snooze_check_every
        self.subscribers: set[Subscription] = set()
        self.seq = store.last_seq()
        self.case_seq = store.last_case_seq()
        self.stats = StreamStats()
        self._wake = asyncio.Event()

    def poke(self, *_: object) -> None:
        """Look for changes now (the in-process sink calls this after each stored batch)."""
        self._wake.set()

    def subscribe(self, queue_size: int = 8) -> Subscription:
        sub = Subscription(queue_size)
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self.subscribers.discard(sub)

    def close(self) -> None:
        for sub in list(self.subscribers):
            sub.close()

    def publish(self, batch: Batch) -> None:
        for sub in list(self.subscribers):
            sub.offer(batch)
            self.stats.peak_queued = max(self.stats.peak_queued, sub.queue.qsize())

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        next_snooze_check = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            try:
                if loop.time() >= next_snooze_check:
                    await asyncio.to_thread(self.store.expire_snoozes)
                    next_snooze_check = loop.time() + self.snooze_check_every
                rows = await asyncio.to_thread(self.store.changes_since, self.seq, HUB_PAGE)
                cases = await asyncio.to_thread(self.store.cases_since, self.case_seq, HUB_PAGE)
            except Exception:  # the database may be briefly away; the next poll retries
                log.exception("feed: polling the store failed")
                continue
            if not rows and not cases:
                continue
            if len(rows) == HUB_PAGE or len(cases) == HUB_PAGE:
                self._wake.set()
            if rows:
                self.seq = rows[-1].seq
            if cases:
                self.case_seq = cases[-1].seq
            self.publish(Batch([_frame(r) for r in rows], [case_frame(c) for c in cases]))


KEY_HUB: Final = web.AppKey("hub", ChangeHub)


def _row_json(r: AlertRow) -> dict[str, Any]:
    d = r.to_dict()
    en, zh = REGIONS.get(r.alert.region, (r.alert.region, ""))
    d["region_en"], d["region_zh"] = en, zh
    d["status_zh"] = STATUS_ZH.get(r.status, r.status)
    d["entity_kind_zh"] = KIND_ZH.get(r.alert.entity_kind, r.alert.entity_kind)
    return d


def _frame(r: AlertRow) -> Frame:
    return r.seq, f"id: {r.seq}\nevent: alert\ndata: {_dumps(_row_json(r))}\n\n".encode()


def case_frame(c: Case) -> Frame:
    """A changed case as the stream sends it (no ``id:``: the resume point stays the alert seq)."""
    from riskflow.feed.cases import case_json

    return c.seq, f"event: case\ndata: {_dumps(case_json(c, now_iso()))}\n\n".encode()


def _error(status: int, code: str, message: str, retry_after: int | None = None) -> web.Response:
    resp = web.json_response({"error": code, "message": message}, status=status)
    if retry_after is not None:
        resp.headers["Retry-After"] = str(retry_after)
    return resp


def _token(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    # EventSource cannot send headers: the stream (only) accepts ?token=.
    if request.path == "/api/stream":
        return request.query.get("token")
    return None


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count each request by route pattern and status (fixed label sets: riskflow/feed/metrics.py)."""
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "other"
    status = 500
    try:
        resp = await handler(request)
        status = resp.status
        return resp
    except web.HTTPException as e:
        status = e.status
        raise
    except asyncio.CancelledError:  # the client went away (the feed's runner cancels its handler)
        status = request.get(KEY_RESPONDED, 499)  # 499: closed before any answer, counted as "other"
        raise
    finally:
        request.app[KEY_METRICS].request(route, status)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every ``/api/`` route needs a token: viewer to read, officer (or more) to write.

    Wrong tokens are counted per client address; an address past its allowance is answered
    429 before its token is looked at (riskflow/feed/guard.py).
    """
    if not request.path.startswith("/api/"):
        return await handler(request)
    app = request.app
    metrics, throttle = app[KEY_METRICS], app[KEY_THROTTLE]
    token = _token(request)
    addr = request.remote or "unknown"
    wait = throttle.retry_after(addr, token)
    if wait is not None:
        metrics.auth_failures.labels(reason="throttled").inc()
        return _error(429, "too_many_failures", f"too many failed token attempts; retry in {wait} s", wait)
    who = app[KEY_TOKENS].lookup(token)
    if who is None:
        if token:
            throttle.failed(addr)
        metrics.auth_failures.labels(reason="invalid" if token else "missing").inc()
        return _error(401, "unauthenticated", "a valid token is required (Authorization: Bearer <token>)")
    assert token is not None
    throttle.succeeded(addr, token)
    need = "officer" if request.method not in ("GET", "HEAD", "OPTIONS") else "viewer"
    if not who.can(need):
        return _error(403, "forbidden", f"role {who.role} may not do this (needs {need})")
    request[KEY_PRINCIPAL] = who
    return await handler(request)


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """CSP, no framing, no sniffing, no referrer: on every response, errors and static files included."""
    response.headers.update(SECURITY_HEADERS)


async def _store(request: web.Request, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    return await asyncio.to_thread(fn, *args, **kw)


async def meta(request: web.Request) -> web.Response:
    store = request.app[KEY_STORE]
    who: Principal = request[KEY_PRINCIPAL]
    return web.json_response(
        {
            "regions": [{"code": c, "en": en, "zh": zh} for c, (en, zh) in REGIONS.items()],
            "levels": list(LEVELS),
            "entity_kinds": [{"id": k, "zh": KIND_ZH.get(k, k), "en": k.replace("_", " ")} for k in ENTITY_KINDS],
            "statuses": [{"id": s, "zh": STATUS_ZH[s], "en": s} for s in STATUSES],
            "actions": list(ACTIONS),
            "rules": await _store(request, store.rules),
            "me": {"name": who.name, "role": who.role},
        }
    )


async def list_alerts(request: web.Request) -> web.Response:
    store = request.app[KEY_STORE]
    q = request.query
    try:
        limit = min(max(int(q.get("limit", "200")), 1), 2000)
    except ValueError:
        return _error(400, "bad_request", "limit must be an integer")
    order = q.get("order", "event_time")
    seq = await _store(request, store.last_seq)
    try:
        rows = await _store(
            request,
            store.list_alerts,
            region=q.get("region") or None,
            level=q.get("level") or None,
            entity_kind=q.get("kind") or None,
            rule_id=q.get("rule") or None,
            status=q.get("status") or None,
            entity_id=q.get("entity") or None,
            limit=limit,
            order=order,
        )
    except ValueError as e:
        return _error(400, "bad_request", str(e))
    return web.json_response({"seq": seq, "alerts": [_row_json(r) for r in rows]}, dumps=_dumps)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


async def get_alert(request: web.Request) -> web.Response:
    store = request.app[KEY_STORE]
    aid = request.match_info["alert_id"]
    try:
        row = await _store(request, store.get, aid)
    except NotFound:
        return _error(404, "not_found", f"no alert {aid}")
    d = _row_json(row)
    d["audit"] = msgspec.to_builtins(await _store(request, store.audit, aid))
    return web.json_response(d, dumps=_dumps)


async def read_body(
    request: web.Request, names: tuple[str, ...]
) -> tuple[dict[str, Any], dict[str, str]] | web.Response:
    """An action's JSON body and its text fields ``names`` (``""`` when absent), or the refusal:
    400 for a body that is no JSON object or a field that is no valid text, 413 for a field
    above the feed's note limit (RISKFLOW_FEED_MAX_NOTE_BYTES) or an over-large body."""
    body: dict[str, Any] = {}
    limit = request.app[KEY_LIMITS].max_note_bytes
    listed = ", ".join(names)
    if request.can_read_body:
        try:
            body = await request.json()
        except web.HTTPRequestEntityTooLarge:
            return _error(413, "too_large", f"the body is too large; {listed} take {limit} bytes each")
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "bad_request", "the body must be a JSON object")
        if not isinstance(body, dict):
            return _error(400, "bad_request", "the body must be a JSON object")
    fields = {k: body.get(k, "") for k in names}
    if not all(isinstance(v, str) for v in fields.values()):
        return _error(400, "bad_request", f"{listed} are strings")
    for name, text in fields.items():
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > limit:
            return _error(413, "too_large", f"{name} is {size} bytes (UTF-8); at most {limit}")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return _error(400, "bad_request", f"{name} is not valid Unicode text")
    return body, fields


async def act(request: web.Request) -> web.Response:
    store = request.app[KEY_STORE]
    aid, action = request.match_info["alert_id"], request.match_info["action"]
    who: Principal = request[KEY_PRINCIPAL]
    if action not in ACTIONS:
        return _error(404, "not_found", f"no action {action}; one of {', '.join(ACTIONS)}")
    got = await read_body(request, ("note", "assignee", "reason"))
    if isinstance(got, web.Response):
        return got
    body, fields = got
    if action == "reopen":
        try:
            current = await _store(request, store.get, aid)
        except NotFound:
            return _error(404, "not_found", f"no alert {aid}")
        if current.status == "resolved" and not who.can("admin"):
            return _error(403, "forbidden", "re-opening a resolved alert needs the admin role")
    until = body.get("until")
    if until is not None and not isinstance(until, str):
        return _error(400, "bad_request", "until is an RFC 3339 time")
    try:
        row = await _store(
            request,
            store.transition,
            aid,
            action,
            actor=who.name,
            until=until,
            max_snooze=request.app[KEY_MAX_SNOOZE],
            **fields,
        )
    except NotFound:
        return _error(404, "not_found", f"no alert {aid}")
    except IllegalTransition as e:
        return _error(409, "conflict", str(e))
    except TransitionError as e:
        return _error(400, "bad_request", str(e))
    request.app[KEY_HUB].poke()
    return web.json_response(_row_json(row), dumps=_dumps)


async def entity(request: web.Request) -> web.Response:
    store = request.app[KEY_STORE]
    eid = request.match_info["entity_id"]
    rows: list[AlertRow] = await _store(request, store.list_alerts, entity_id=eid, limit=1000)
    if not rows:
        return _error(404, "not_found", f"no alerts for entity {eid}")
    history = await _store(request, store.history, eid)
    episodes = []
    for r in sorted(rows, key=lambda r: r.alert.event_time):
        ep = r.alert.episode or {}
        episodes.append(
            {
                "alert_id": r.alert.alert_id,
                "rule_id": r.alert.rule_id,
                "title_zh": r.alert.title_zh,
                "title_en": r.alert.title_en,
                "first_seen": ep.get("first_seen", r.alert.event_time),
                "last_seen": ep.get("last_seen", r.alert.event_time),
                "count": ep.get("count", 1),
                "status": r.status,
                "risk_level": r.alert.risk_level,
                "evidence": r.alert.evidence,
            }
        )
    from riskflow.feed.cases import DIMENSION_ZH, KEY_EXPLAINER, entity_summary

    header = await _store(request, entity_summary, request.app[KEY_EXPLAINER], store, rows, now_iso())
    first = rows[0].alert
    en, zh = REGIONS.get(first.region, (first.region, ""))
    return web.json_response(
        {
            "entity_id": eid,
            "entity_kind": first.entity_kind,
            "entity_kind_zh": KIND_ZH.get(first.entity_kind, first.entity_kind),
            "region": first.region,
            "region_en": en,
            "region_zh": zh,
            "alerts": [_row_json(r) for r in rows],
            "history": msgspec.to_builtins(history),
            "dimension_names": DIMENSION_ZH,
            "episodes": episodes,
            **header,
        },
        dumps=_dumps,
    )


async def stream(request: web.Request) -> web.StreamResponse:
    """Server-sent events: ``event: alert`` with one changed alert row per message, ``id`` = its seq.

    Each token may hold ``streams_per_token`` streams and the feed ``streams_total``; beyond
    either the answer is 503 with ``Retry-After``, and a closed stream frees its slot.
    """
    since_raw = request.headers.get("Last-Event-ID") or request.query.get("since")
    case_raw = request.query.get("case_since")
    try:
        since = int(since_raw) if since_raw else None
        case_since = int(case_raw) if case_raw else None
    except ValueError:
        return _error(400, "bad_request", "since and case_since must be integer change numbers")
    limits, slots = request.app[KEY_LIMITS], request.app[KEY_SLOTS]
    key = token_key(_token(request) or "")
    refused = slots.acquire(key)
    if refused is not None:
        request.app[KEY_METRICS].streams_refused.labels(reason=refused).inc()
        which = "this token's" if refused == "per_token" else "the feed's"
        return _error(
            503, "too_many_streams", f"{which} live streams are at their limit; retry later", limits.stream_retry_after
        )
    try:
        return await _serve_stream(request, since, case_since, limits)
    finally:
        slots.release(key)


async def _serve_stream(
    request: web.Request, since: int | None, case_since: int | None, limits: FeedLimits
) -> web.StreamResponse:
    """Send the changes after ``since`` and the case changes after ``case_since`` (paged from the
    store), then live ones as the hub finds them.

    What the connection holds is bounded: one store page while catching up, and a few shared
    batches while live; a client too slow for the live batches catches up from the store again.
    """
    store, hub, metrics = request.app[KEY_STORE], request.app[KEY_HUB], request.app[KEY_METRICS]
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    await resp.prepare(request)
    request[KEY_RESPONDED] = resp.status
    sub = hub.subscribe(limits.stream_queue)
    cursor = hub.seq if since is None else since  # the last change this client has
    case_cursor = hub.case_seq if case_since is None else case_since  # and the last case change
    sub.behind = since is not None or case_since is not None
    resuming = sub.behind
    metrics.clients.inc()

    async def write(data: bytes) -> None:
        await asyncio.wait_for(resp.write(data), limits.stream_write_timeout)

    async def send(frames: list[Frame], counter: Any = metrics.events_sent) -> None:
        await write(b"".join(f for _, f in frames))
        counter.inc(len(frames))

    try:
        await write(b"retry: 2000\n: connected\n\n")
        while True:
            if sub.behind:
                if not resuming:
                    metrics.stream_catchups.inc()
                resuming = False
                sub.catch_up()
                while True:
                    rows: list[AlertRow] = await _store(request, store.changes_since, cursor, limits.stream_page)
                    hub.stats.peak_page_rows = max(hub.stats.peak_page_rows, len(rows))
                    if rows:
                        await send([_frame(r) for r in rows])
                        cursor = rows[-1].seq
                    if len(rows) < limits.stream_page:
                        break
                while True:
                    cases: list[Case] = await _store(request, store.cases_since, case_cursor, limits.stream_page)
                    hub.stats.peak_page_rows = max(hub.stats.peak_page_rows, len(cases))
                    if cases:
                        await send([case_frame(c) for c in cases], metrics.case_events_sent)
                        case_cursor = cases[-1].seq
                    if len(cases) < limits.stream_page:
                        break
                continue
            try:
                batch = await asyncio.wait_for(sub.queue.get(), timeout=15.0)
            except TimeoutError:
                await write(b": keep-alive\n\n")
                continue
            if batch is None:
                break
            fresh = [f for f in batch.alerts if f[0] > cursor]
            if fresh:
                await send(fresh)
                cursor = fresh[-1][0]
            fresh = [f for f in batch.cases if f[0] > case_cursor]
            if fresh:
                await send(fresh, metrics.case_events_sent)
                case_cursor = fresh[-1][0]
    except TimeoutError:  # the client stopped reading: let it go rather than hold its slot
        if request.transport is not None:
            request.transport.abort()
    except ConnectionError:
        pass
    finally:
        hub.unsubscribe(sub)
        metrics.clients.dec()
    return resp


async def index(request: web.Request) -> web.Response:
    return web.Response(body=(STATIC / "index.html").read_bytes(), content_type="text/html", charset="utf-8")


async def favicon(request: web.Request) -> web.Response:
    return web.Response(body=(STATIC / "favicon.svg").read_bytes(), content_type="image/svg+xml")


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document(), dumps=_dumps)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def metrics_page(request: web.Request) -> web.Response:
    """Prometheus exposition of the feed's registry (feed and, when it runs one, sink metrics)."""
    store, metrics = request.app[KEY_STORE], request.app[KEY_METRICS]
    try:
        rows = await asyncio.to_thread(store.case_metric_rows)
        metrics.refresh_cases((CaseMetricRow(*r) for r in rows), now_iso())
    except Exception:  # the database may be briefly away: the other metrics are still served
        log.exception("feed: reading the case metrics failed")
    body = await asyncio.to_thread(generate_latest, request.app[KEY_REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def build_app(
    store: AlertStore,
    tokens: Tokens,
    *,
    poll_interval: float = 0.5,
    max_snooze: _dt.timedelta = _dt.timedelta(days=30),
    registry: CollectorRegistry | None = None,
    limits: FeedLimits | None = None,
    clock: Callable[[], float] = time.monotonic,
    explainer: Explainer | None = None,
) -> web.Application:
    """The feed app over ``store``; the change hub starts and stops with the app.
    Its metrics go to ``registry`` (a new one if None), served at ``/metrics``; ``limits``
    bound streams, notes and token guessing (``clock`` paces the latter's back-off); ``explainer``
    gives rule texts for cases and the board (default: the built-in rule pack)."""
    lim = limits or FeedLimits()
    app = web.Application(middlewares=[metrics_middleware, auth_middleware], client_max_size=lim.max_body_bytes)
    reg = registry if registry is not None else CollectorRegistry()
    app[KEY_REGISTRY] = reg
    app[KEY_METRICS] = FeedMetrics.create(reg, started=now_iso())
    app[KEY_STORE] = store
    app[KEY_TOKENS] = tokens
    app[KEY_MAX_SNOOZE] = max_snooze
    app[KEY_LIMITS] = lim
    app[KEY_SLOTS] = StreamSlots(lim.streams_per_token, lim.streams_total)
    app[KEY_THROTTLE] = AuthThrottle(lim.auth_burst, lim.auth_rate, clock=clock)
    app.on_response_prepare.append(security_headers)
    app.router.add_get("/", index)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/favicon.ico", favicon)
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_static("/static/", str(STATIC))
    app.router.add_get("/api/meta", meta)
    app.router.add_get("/api/alerts", list_alerts)
    app.router.add_get("/api/alerts/{alert_id}", get_alert)
    app.router.add_post("/api/alerts/{alert_id}/{action}", act)
    app.router.add_get("/api/entities/{entity_id}", entity)
    app.router.add_get("/api/stream", stream)
    from riskflow.feed import cases  # its handlers use this module's keys and helpers

    cases.add_routes(app, explainer)

    async def hub_ctx(app: web.Application) -> Any:
        hub = ChangeHub(store, poll_interval)
        app[KEY_HUB] = hub
        task = asyncio.create_task(hub.run())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def on_shutdown(app: web.Application) -> None:
        app[KEY_HUB].close()

    app.cleanup_ctx.append(hub_ctx)
    app.on_shutdown.append(on_shutdown)
    return app
