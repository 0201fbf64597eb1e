"""Helpers for the fault-injection tests: produce with offsets, wait for commits,
read a changelog without trusting end offsets, and the offline reference state.

Tansu reports end offsets short (docs/operations.md, "Broker notes"), so nothing here reads
"up to the end offset": readers consume until the topic has been quiet for a
while, and commit checks compare against the offsets the producer was given.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from detectors.base import Describe, Detector, Signal
from detectors.engine import EntityState, decode_state, encode_state
from detectors.factory import build_processor
from detectors.lateness import LateRecord
from detectors.pipeline import BatchProcessor, RawMessage
from detectors.rules import load_pack
from riskflow.core.alerts import Alert
from riskflow.core.schema import Event, encode_event
from streams.tables import changelog_topic


def produce(bootstrap: str, records: Sequence[tuple[str, bytes | None, bytes]]) -> dict[TopicPartition, int]:
    """Send records; returns the end offset (last offset + 1) written per partition."""

    async def go() -> dict[TopicPartition, int]:
        p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        await p.start()
        ends: dict[TopicPartition, int] = {}
        try:
            futs = [await p.send(t, v, key=k) for t, k, v in records]
            for f in futs:
                md = await f
                tp = TopicPartition(md.topic, md.partition)
                ends[tp] = max(ends.get(tp, 0), md.offset + 1)
        finally:
            await p.stop()
        return ends

    return asyncio.run(go())


class BackgroundProducer:
    """Produces records in small chunks from a thread, so that a test can act
    (kill a worker, start another) while the replay is still going."""

    def __init__(
        self, bootstrap: str, records: Sequence[tuple[str, bytes | None, bytes]], chunk: int = 50, pause: float = 0.05
    ) -> None:
        self.bootstrap, self.records, self.chunk, self.pause = bootstrap, records, chunk, pause
        self.ends: dict[TopicPartition, int] = {}
        self.sent = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> BackgroundProducer:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            for i in range(0, len(self.records), self.chunk):
                for tp, end in produce(self.bootstrap, self.records[i : i + self.chunk]).items():
                    self.ends[tp] = max(self.ends.get(tp, 0), end)
                self.sent = i + len(self.records[i : i + self.chunk])
                time.sleep(self.pause)
        except BaseException as exc:  # reported by join()
            self.error = exc

    def join(self, timeout: float = 120.0) -> dict[TopicPartition, int]:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "background producer did not finish"
        if self.error is not None:
            raise self.error
        return self.ends


def merge_ends(*ends: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
    out: dict[TopicPartition, int] = {}
    for e in ends:
        for tp, n in e.items():
            out[tp] = max(out.get(tp, 0), n)
    return out


def committed(bootstrap: str, group: str, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
    """Committed offsets of ``group`` (absent partitions left out). Uses a
    consumer that joins no group: aiokafka's admin OffsetFetch fails on Tansu."""

    async def go() -> dict[TopicPartition, int]:
        c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
        await c.start()
        try:
            got = {tp: await c.committed(tp) for tp in tps}
        finally:
            await c.stop()
        return {tp: n for tp, n in got.items() if n is not None}

    return asyncio.run(go())


def wait_committed(bootstrap: str, group: str, ends: dict[TopicPartition, int], timeout: float = 120.0) -> None:
    """Wait until ``group`` has committed every partition up to ``ends``."""
    deadline = time.monotonic() + timeout
    have: dict[TopicPartition, int] = {}
    while time.monotonic() < deadline:
        have = committed(bootstrap, group, ends)
        if all(have.get(tp, -1) >= n for tp, n in ends.items()):
            return
        time.sleep(0.5)
    raise AssertionError(f"group {group} committed {have}, expected {ends}")


def read_all(
    bootstrap: str, topic: str, *, settle: float = 3.0, timeout: float = 90.0
) -> list[tuple[bytes | None, bytes | None]]:
    """Every (key, value) on ``topic`` (all partitions), read until quiet for ``settle`` seconds."""

    async def go() -> list[tuple[bytes | None, bytes | None]]:
        c = AIOKafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            fetch_max_wait_ms=100,
        )
        await c.start()
        got: list[tuple[bytes | None, bytes | None]] = []
        deadline = time.monotonic() + timeout
        quiet_since = time.monotonic()
        try:
            while time.monotonic() < deadline:
                batch = await c.getmany(timeout_ms=200)
                for msgs in batch.values():
                    got.extend((m.key, m.value) for m in msgs)
                if any(batch.values()):
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since >= settle:
                    break
        finally:
            await c.stop()
        return got

    return asyncio.run(go())


def changelog_states(bootstrap: str, app_id: str, settle: float = 3.0) -> dict[str, EntityState]:
    """The latest entity state per entity as written to the table's changelog."""
    latest: dict[bytes, bytes | None] = {}
    for key, value in read_all(bootstrap, changelog_topic(app_id), settle=settle):
        if key is not None:
            latest[key] = value
    return {k.decode(): decode_state(v) for k, v in latest.items() if v and not k.startswith(b"\x00")}


def routed_messages(recs: Sequence[tuple[str, bytes | None, bytes]], partitions: int) -> list[RawMessage]:
    """The messages as a worker reads them: each with the topic and the partition
    aiokafka's default partitioner gives its key (entities' timers follow the
    watermark of their input partition, so the reference must use the same)."""
    from aiokafka.partitioner import DefaultPartitioner

    part = DefaultPartitioner()
    every = list(range(partitions))
    return [RawMessage(v, t, part(k, every, every), i, k) for i, (t, k, v) in enumerate(recs)]


def reference(
    lines: Iterable[bytes] | list[RawMessage], *, dedup_window: int, boom: bool = False
) -> tuple[set[str], dict[str, EntityState]]:
    """Alert ids and final per-entity states of the same history run offline in one batch.
    (:func:`reference_alerts` has the alerts themselves.) ``boom``: with :class:`Boom`."""
    bp: BatchProcessor = build_processor(load_pack(), dedup_window=dedup_window)
    if boom:
        with_boom(bp)
    store: dict[str, EntityState] = {}
    msgs = [m if isinstance(m, RawMessage) else RawMessage(m, "file", 0, i, None) for i, m in enumerate(lines)]
    res = bp.process(msgs, store.get)
    states = {eid: decode_state(encode_state(st)) for eid, (st, _) in res.states.items()}
    return {a.alert_id for a in res.alerts}, states


def reference_alerts(
    lines: Iterable[bytes] | list[RawMessage], *, dedup_window: int, boom: bool = False
) -> dict[str, list[Alert]]:
    bp: BatchProcessor = build_processor(load_pack(), dedup_window=dedup_window)
    if boom:
        with_boom(bp)
    msgs = [m if isinstance(m, RawMessage) else RawMessage(m, "file", 0, i, None) for i, m in enumerate(lines)]
    res = bp.process(msgs, {}.get)
    out: dict[str, list[Alert]] = {}
    for a in res.alerts:
        out.setdefault(a.alert_id, []).append(a)
    return out


def reference_late(lines: Iterable[bytes] | list[RawMessage], *, dedup_window: int) -> list[LateRecord]:
    """The late-event ledger records of the same history run offline in one batch."""
    bp: BatchProcessor = build_processor(load_pack(), dedup_window=dedup_window)
    msgs = [m if isinstance(m, RawMessage) else RawMessage(m, "file", 0, i, None) for i, m in enumerate(lines)]
    return bp.process(msgs, {}.get).late


def late_copies(
    events: Sequence[dict[str, Any]], n: int, behind: float = 8 * 86400.0, at_most: float = 25 * 86400.0
) -> list[dict[str, Any]]:
    """``n`` events (new ids) of distinct entities, each a copy of one of the entity's events:
    sent after the history, they trail the entity's latest event by more than ``behind``
    (late) and at most ``at_most`` (recent enough for 30-day windows to re-evaluate)."""
    last: dict[str, float] = {}
    for e in events:
        last[e["entity_id"]] = max(
            last.get(e["entity_id"], 0.0), dt.datetime.fromisoformat(e["event_time"]).timestamp()
        )
    out: list[dict[str, Any]] = []
    for e in reversed(events):  # the newest that qualify: most likely to change an open window
        eid = e["entity_id"]
        if eid in last and behind < last[eid] - dt.datetime.fromisoformat(e["event_time"]).timestamp() <= at_most:
            out.append({**e, "event_id": f"late-{e['event_id']}"})
            del last[eid]
            if len(out) == n:
                break
    return out


def alerts_by_id(values: Iterable[bytes]) -> dict[str, list[Alert]]:
    out: dict[str, list[Alert]] = {}
    for v in values:
        a = msgspec.json.decode(v, type=Alert)
        out.setdefault(a.alert_id, []).append(a)
    return out


def assert_copies_identical(by_id: dict[str, list[Alert]]) -> None:
    """Re-emitted alerts (after a crash) must be the same finding: copies with
    the same id and revision are equal except ``detected_at`` (an episode
    legitimately re-emits its id with higher revisions)."""
    for aid, copies in by_id.items():
        first: dict[int, Alert] = {}
        for a in copies:
            plain = msgspec.structs.replace(a, detected_at="")
            seen = first.setdefault(a.revision, plain)
            assert seen == plain, (aid, a.revision, _field_diff(seen, plain))


def _field_diff(a: Alert, b: Alert) -> dict[str, tuple[Any, Any]]:
    """The fields in which two copies of an alert differ: {field: (first, second)}."""
    da, db = msgspec.structs.asdict(a), msgspec.structs.asdict(b)
    return {k: (da[k], db[k]) for k in da if da[k] != db[k]}


def assert_alerts_exactly(values: Iterable[bytes], want: dict[str, list[Alert]]) -> dict[str, list[Alert]]:
    """The alerts topic's deduplicated view is exactly ``want`` (the offline reference):
    no id missing or extra, the same highest revision per id, re-emitted copies identical."""
    got = alerts_by_id(values)
    missing, extra = want.keys() - got.keys(), got.keys() - want.keys()
    assert not missing and not extra, f"missing {sorted(missing)[:5]} extra {sorted(extra)[:5]}"
    assert latest_revisions(got) == latest_revisions(want)
    assert_copies_identical(got)
    return got


def latest_revisions(by_id: dict[str, list[Alert]]) -> dict[str, int]:
    """The deduplicated view a sink keeps: alert id -> highest revision."""
    return {aid: max(a.revision for a in copies) for aid, copies in by_id.items()}


def state_diff(got: dict[str, EntityState], want: dict[str, EntityState]) -> list[str]:
    """Human-readable differences between two entity-state maps (empty when equal).

    ``lane`` (the input "topic#partition" an entity's timers follow) and ``offsets``
    (the offset of the last message applied per lane) name where the events were
    read from, which differs between the offline reference and a live worker by
    construction; they are left out, and so is ``rewind`` (a dependent's way back for late
    contagion pushes: the steps applied in arrival order, its timed advances at its lane's
    times, which differ in the same way; what it evaluates to is compared)."""
    out = [f"missing state for {e} (want events={want[e].events})" for e in sorted(want.keys() - got.keys())]
    out += [f"unexpected state for {e}" for e in sorted(got.keys() - want.keys())]
    for e in sorted(want.keys() & got.keys()):
        g = msgspec.structs.asdict(got[e]) | {"lane": "", "offsets": {}, "rewind": None}
        w = msgspec.structs.asdict(want[e]) | {"lane": "", "offsets": {}, "rewind": None}
        if g != w:
            fields = sorted(f for f in w if g[f] != w[f])
            out.append(f"{e}: {fields} differ; events {got[e].events} want {want[e].events}")
    return out


def wait_states(bootstrap: str, app_id: str, want: dict[str, EntityState], timeout: float = 150.0) -> list[str]:
    """Poll the changelog until every entity's latest state equals ``want``;
    returns the remaining differences (empty on success)."""
    deadline = time.monotonic() + timeout
    diff = ["not read yet"]
    while time.monotonic() < deadline:
        diff = state_diff(changelog_states(bootstrap, app_id, settle=1.0), want)
        if not diff:
            break
        time.sleep(1.0)
    return diff


def explain_missing(
    bootstrap: str, app_id: str, msgs: Sequence[RawMessage], diff: Sequence[str], *, most: int = 4
) -> str:
    """For a failed state comparison: per differing entity, the input events its final
    changelog state does not hold (position in the routed stream, partition, type, time)
    and the event counts of every changelog write for it, in order (a drop would be a
    stale write landing after a newer one)."""
    from detectors.engine import _digest

    writes: dict[str, list[int]] = {}
    for key, value in read_all(bootstrap, changelog_topic(app_id), settle=1.0):
        if key is not None and value and not key.startswith(b"\x00"):
            writes.setdefault(key.decode(), []).append(decode_state(value).events)
    latest = changelog_states(bootstrap, app_id, settle=1.0)
    lines = []
    for eid in [d.split(":")[0] for d in diff[:most]]:
        st = latest.get(eid)
        ring = st.recent_ids if st is not None else b""
        held = {ring[i : i + 8] for i in range(0, len(ring), 8)}
        missing = []
        for i, m in enumerate(msgs):
            ev = msgspec.json.decode(m.value)
            if isinstance(ev, dict) and ev.get("entity_id") == eid and _digest(str(ev.get("event_id"))) not in held:
                missing.append((i, m.partition, ev.get("event_type"), ev.get("event_time")))
        lines.append(f"{eid}: not in state {missing}; changelog event counts {writes.get(eid)}")
    return "\n".join(lines)


def produce_located(bootstrap: str, records: Sequence[tuple[str, bytes | None, bytes]]) -> list[tuple[str, int, int]]:
    """Send records in order; returns each one's (topic, partition, offset)."""

    async def go() -> list[tuple[str, int, int]]:
        p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_request_size=4 << 20)
        await p.start()
        try:
            futs = [await p.send(t, v, key=k) for t, k, v in records]
            mds = [await f for f in futs]
        finally:
            await p.stop()
        return [(md.topic, md.partition, md.offset) for md in mds]

    return asyncio.run(go())


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a worker's /metrics: (name, sorted labels) -> value."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def wait_read(worker: Any, n: int, timeout: float = 120.0) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Wait until ``worker`` (tests/support/kafka_fixtures.py ``Worker``) has handled ``n`` input
    messages — each is an event, a dead letter or a message already applied — and is still
    running; returns its metrics then."""
    deadline = time.monotonic() + timeout
    while True:
        assert worker.proc.poll() is None, worker.log_text()[-3000:]
        try:
            m = scrape(worker.metrics_port)
        except OSError:  # not serving yet
            m = {}
        names = ("riskflow_events_total", "riskflow_invalid_events_total", "riskflow_already_applied_total")
        read = sum(metric_sum(m, name) for name in names)
        if read >= n:
            return m
        assert time.monotonic() < deadline, f"read {read} of {n}: " + worker.log_text()[-3000:]
        time.sleep(0.5)


def metric_sum(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= set(lab))


class KafkaProxy:
    """A TCP proxy in front of the broker, to make it unreachable on demand.

    Closed, nothing listens on its port (connection refused); :meth:`cut` also
    aborts every open connection. A Kafka client that bootstraps through the
    proxy is told the brokers' addresses in Metadata and FindCoordinator
    responses; the proxy rewrites the broker's port there to its own (same
    host, so the frame sizes do not change), so every later connection goes
    through it too.
    """

    def __init__(self, upstream: str) -> None:
        host, port = upstream.rsplit(":", 1)
        self.host, self.upstream_port = host, int(port)
        from riskflow.broker import free_port

        self.port = free_port(host)
        self._find = host.encode() + self.upstream_port.to_bytes(4, "big")
        self._repl = host.encode() + self.port.to_bytes(4, "big")
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.connections = 0
        threading.Thread(target=self._loop.run_forever, daemon=True).start()

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    def open(self) -> None:
        async def go() -> None:
            self._server = await asyncio.start_server(self._serve, self.host, self.port, reuse_address=True)

        self._call(go())

    def cut(self) -> None:
        """Stop listening and abort every open connection."""

        async def go() -> None:
            if self._server is not None:
                self._server.close()
                self._server = None
            for w in list(self._writers):
                w.transport.abort()
            self._writers.clear()

        self._call(go())

    def stop(self) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)

    async def _serve(self, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            u_reader, u_writer = await asyncio.open_connection(self.host, self.upstream_port)
        except OSError:
            c_writer.transport.abort()
            return
        self._writers |= {c_writer, u_writer}

        async def requests() -> None:
            while data := await c_reader.read(65536):
                u_writer.write(data)
                await u_writer.drain()

        async def responses() -> None:  # whole frames: int32 size, then the response
            while True:
                head = await u_reader.readexactly(4)
                body = await u_reader.readexactly(int.from_bytes(head, "big"))
                c_writer.write(head + body.replace(self._find, self._repl))
                await c_writer.drain()

        tasks = [asyncio.ensure_future(requests()), asyncio.ensure_future(responses())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        except Exception:
            pass
        finally:
            for t in tasks:
                t.cancel()
            for w in (c_writer, u_writer):
                w.transport.abort()
                self._writers.discard(w)


class Boom(Detector):
    """A detector with a bug: raises on an event whose id starts with ``boom-``, after the
    engine and the detectors before it changed the entity's state. Counts the others."""

    id = "test.boom"
    describe = Describe("测试故障", "test fault")

    def learn_one(self, state: Any, event: Event) -> Any:
        if event.event_id.startswith("boom-"):
            raise ValueError("boom on purpose")
        return (state or 0) + 1

    def score_one(self, state: Any, event: Event) -> list[Signal]:
        return []


class Unencodable(Detector):
    """A detector with another bug: on an event whose id starts with ``unenc-`` it keeps a
    complex number in the entity's state, which msgpack cannot encode."""

    id = "test.unencodable"
    describe = Describe("测试故障", "test fault")

    def learn_one(self, state: Any, event: Event) -> Any:
        return complex(1, 1) if event.event_id.startswith("unenc-") else state

    def score_one(self, state: Any, event: Event) -> list[Signal]:
        return []


def with_boom(bp: BatchProcessor) -> BatchProcessor:
    bp.engine.detectors = [*bp.engine.detectors, Boom()]
    return bp


def install_injection(*, commit_interval: float | None, boom: bool, unencodable: bool = False) -> None:
    """Run in a worker process by the ``sitecustomize`` of :func:`worker_injection`, before
    the worker imports what it changes."""
    if commit_interval is not None:
        import streams.app

        make = streams.app.create_app

        def create_app(*args: Any, **kwargs: Any) -> Any:
            app = make(*args, **kwargs)
            app.conf.broker_commit_interval = commit_interval
            return app

        streams.app.create_app = create_app  # type: ignore[assignment]
    if boom:
        import detectors.factory

        build = detectors.factory.build_processor

        def build_processor(*args: Any, **kwargs: Any) -> BatchProcessor:
            return with_boom(build(*args, **kwargs))

        detectors.factory.build_processor = build_processor  # type: ignore[assignment]
    if unencodable:
        import detectors.factory

        build_u = detectors.factory.build_processor

        def build_processor(*args: Any, **kwargs: Any) -> BatchProcessor:  # type: ignore[no-redef]
            bp = build_u(*args, **kwargs)
            bp.engine.detectors = [*bp.engine.detectors, Unencodable()]
            return bp

        detectors.factory.build_processor = build_processor  # type: ignore[assignment]


_ROOT = Path(__file__).resolve().parents[2]


def worker_injection(
    directory: Path, *, commit_interval: float | None = None, boom: bool = False, unencodable: bool = False
) -> dict[str, str]:
    """The environment that makes a worker started with it run :func:`install_injection`
    (through a ``sitecustomize`` written to ``directory``): ``commit_interval`` replaces Faust's
    offset commit interval (1 s; a long one leaves the offsets uncommitted while the states are
    flushed, so that after a kill -9 the next worker reads a long span again over states that
    already hold it); ``boom`` adds :class:`Boom` (a bug in a detector) to the worker's
    processor; ``unencodable`` adds :class:`Unencodable`. Nothing of this is a product
    setting: it exists only for these tests."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(_ROOT)!r})\n"
        "from tests.support.reliability_tools import install_injection\n"
        f"install_injection(commit_interval={commit_interval!r}, boom={boom!r}, unencodable={unencodable!r})\n"
    )
    path = os.pathsep.join(p for p in (str(directory), str(_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path}


def busy_fund_events(start: dt.datetime, days: int, n: int, entity: str = "PF-330100-BUSY") -> list[dict[str, Any]]:
    """``n`` subscriptions to one fund over ``days`` (many investors, some unqualified): its
    rules fire and its episodes grow revisions all along — an entity far busier than the
    dedup window remembers."""
    step = days * 86400 / n
    return [
        {
            "schema": "riskflow.event/v1",
            "event_id": f"busy-{i}",
            "event_type": "fund.subscription",
            "entity_id": entity,
            "entity_kind": "private_fund",
            "region": "330100",
            "event_time": (start + dt.timedelta(seconds=i * step)).isoformat(),
            "source": "test",
            "payload": {
                "fund_id": entity,
                "investor_id": f"INV-{i % 700}",
                "investor_type": "individual",
                "amount": 300_000.0 if i % 9 == 0 else 1_500_000.0,
            },
        }
        for i in range(n)
    ]


def assert_same_contents(got: dict[str, list[Alert]], want: dict[str, list[Alert]]) -> None:
    """Every alert id's highest revision has the same content (all but ``detected_at``)."""
    for aid, copies in want.items():
        w = max(copies, key=lambda a: a.revision)
        g = max(got[aid], key=lambda a: a.revision)
        plain_w, plain_g = msgspec.structs.replace(w, detected_at=""), msgspec.structs.replace(g, detected_at="")
        assert plain_g == plain_w, (aid, _field_diff(plain_w, plain_g))


def touch_every_entity(events: list[dict[str, Any]]) -> list[bytes]:
    """One more quiet event per entity, after everything else, so that every
    entity's state is read back from the table (recovered) and written again:
    a state lost in recovery then shows in the final changelog."""
    last = max(e["event_time"] for e in events)
    end = (dt.datetime.fromisoformat(last) + dt.timedelta(days=1)).isoformat()
    heads = {e["entity_id"]: e for e in events}
    return [
        encode_event(
            {
                **{k: h[k] for k in ("schema", "entity_id", "entity_kind", "region")},
                "event_id": f"touch-{eid}",
                "event_type": "grid.report",
                "event_time": end,
                "source": "grid",
                "payload": {"observation": "normal"},
            }
        )
        for eid, h in sorted(heads.items())
    ]
