"""The worker's pieces without a broker: the batch handler (streams/handler.py), the output
router (streams/emitter.py) and the state flusher (streams/flusher.py), on the real pipeline
with a producer that records what it is given. The stream tests (tests/stream/test_pipeline_stream.py,
tests/test_reliability_*.py) prove the whole on the embedded broker."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import msgspec
import pytest
from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry

from detectors.engine import EntityState, decode_state, encode_state
from detectors.factory import build_processor
from detectors.lateness import LateRecord, decode_late
from detectors.pipeline import BatchResult
from detectors.rules import load_pack
from riskflow.core.alerts import Alert
from riskflow.core.metrics import Metrics
from streams.emitter import OutputRouter, batched, deliver
from streams.flusher import StateFlusher
from streams.handler import BatchHandler
from streams.statecache import StateCache

INPUT = "riskflow.fund-events"


class Producer:
    """Records every ``send`` (Faust's producer signature); ``fail``: that many sends raise first."""

    def __init__(self, fail: int = 0) -> None:
        self.sent: list[tuple[str, bytes | None, bytes, int | None]] = []
        self.fail = fail

    async def send(self, topic: str, key: bytes | None, value: bytes, partition: int | None, *_: Any) -> Any:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("broker unreachable")
        self.sent.append((topic, key, value, partition))
        return asyncio.sleep(0)

    def topics(self) -> list[str]:
        return [t for t, *_ in self.sent]


def router(producer: Producer, *, late: str | None = "late", shadow: str | None = "shadow") -> OutputRouter:
    return OutputRouter(
        lambda: producer, alerts="alerts", shadow_alerts=shadow, links="links", deadletter="dlq", late=late
    )


def event(event_id: str, entity: str, day: int, event_type: str = "opinion.published", **payload: Any) -> bytes:
    return json.dumps(
        {
            "schema": "riskflow.event/v1",
            "event_id": event_id,
            "event_type": event_type,
            "entity_id": entity,
            "entity_kind": "private_fund_manager",
            "region": "330100",
            "event_time": f"2025-03-{day:02d}T10:00:00+08:00",
            "source": "test",
            "payload": payload or {"sentiment": 0.1},
        }
    ).encode()


def records(values: list[bytes]) -> list[ConsumerRecord[bytes, bytes]]:
    """As the batch tap hands them on: aiokafka's records."""
    return [
        ConsumerRecord(INPUT, 0, i, 1_741_000_000_000, 0, b"k", v, None, 1, len(v), ()) for i, v in enumerate(values)
    ]


#: Two quiet events, a lost-contact notice (an alert) and a message that is not JSON.
BATCH = [
    event("q1", "PFM-A", 1),
    event("q2", "PFM-B", 2),
    event("n1", "PFM-A", 3, "amac.notice", notice="lost_contact"),
    b"not json",
]


def late_records() -> list[LateRecord]:
    """The late-event ledger's records of an event three weeks older than its entity's time."""
    late = [event("now", "PFM-L", 28), event("old", "PFM-L", 1)]
    res = build_processor(load_pack(), anomaly=False).process(records(late), {}.get)
    assert [r.event_id for r in res.late] == ["old"]
    return res.late


def alerts() -> list[Alert]:
    """The alerts of :data:`BATCH` (the notice's, the risk level's), as the pipeline makes them."""
    res = build_processor(load_pack(), anomaly=False).process(records(BATCH), {}.get)
    assert len(res.alerts) >= 2
    return res.alerts


# --- the output router -------------------------------------------------------------


def test_router_sends_each_output_to_its_topic_keyed_by_entity() -> None:
    live, shadow = alerts()[:2]
    res = BatchResult(
        alerts=[live, msgspec.structs.replace(shadow, mode="shadow")],
        late=late_records(),
        ahead=late_records(),
    )
    p = Producer()
    out = router(p).records(res)
    assert [(t, k) for t, k, _, _ in out] == [
        ("alerts", b"PFM-A"),
        ("shadow", b"PFM-A"),
        ("late", b"PFM-L"),
        ("late", b"PFM-L"),
    ]
    assert msgspec.json.decode(out[1][2])["alert_id"] == shadow.alert_id and decode_late(out[3][2]).event_id == "old"
    # Without a shadow topic shadow alerts go with the others; without a ledger topic late records go nowhere.
    assert [t for t, *_ in router(p, late=None, shadow=None).records(res)] == ["alerts", "alerts"]


def test_router_emits_nothing_for_a_batch_without_outputs() -> None:
    p = Producer()
    asyncio.run(router(p).emit(BatchResult(counted=[("opinion.published", "private_fund_manager", "330100")])))
    assert p.sent == []


def test_router_counts_sent_messages_per_topic_as_faust_did() -> None:
    registry = CollectorRegistry()
    from prometheus_client import Counter

    counter = Counter("faust_topic_messages_sent", "sent", ["topic"], registry=registry)
    r = OutputRouter(
        Producer,
        alerts="alerts",
        shadow_alerts=None,
        links="links",
        deadletter="dlq",
        late="late",
        sent_counter=counter,
    )
    r.count_sent(BatchResult(alerts=alerts()[:2], late=late_records()))
    r.count("changelog", 3)
    assert registry.get_sample_value("faust_topic_messages_sent_total", {"topic": "topic.alerts"}) == 2
    assert registry.get_sample_value("faust_topic_messages_sent_total", {"topic": "topic.late"}) == 1
    assert registry.get_sample_value("faust_topic_messages_sent_total", {"topic": "topic.changelog"}) == 3
    assert registry.get_sample_value("faust_topic_messages_sent_total", {"topic": "topic.links"}) is None


def test_a_failed_delivery_is_sent_again_whole() -> None:
    """Re-sent alerts carry the same ids (the sinks upsert): repeating is safe, giving up is not."""
    p = Producer(fail=1)
    out = [("alerts", b"A", b"1", None), ("alerts", b"B", b"2", None)]
    asyncio.run(deliver(batched(p, out), "test outputs", max_wait=0.01))
    assert p.sent == out  # the first attempt failed before anything was sent


# --- the batch handler ---------------------------------------------------------------


def handler(p: Producer, metrics: Metrics | None = None, **kw: Any) -> BatchHandler:
    bp = build_processor(load_pack(), anomaly=False)
    return BatchHandler(bp, kw.pop("cache", StateCache(100)), kw.pop("store", {}), router(p), metrics, **kw)


def test_a_batch_delivers_its_outputs_and_leaves_its_states_dirty() -> None:
    p = Producer()
    registry = CollectorRegistry()
    metrics = Metrics.create(registry)
    h = handler(p, metrics)
    asyncio.run(h(records(BATCH)))
    n = len(alerts())
    assert p.topics() == ["alerts"] * n + ["dlq"]  # alerts first, then dead letters
    assert {msgspec.json.decode(v)["alert_id"] for _, _, v, _ in p.sent[:n]} == {a.alert_id for a in alerts()}
    assert json.loads(p.sent[n][2])["reason"] == "malformed_json"
    # The states are the cache's to flush (nothing is written by the handler).
    assert set(h.cache.dirty) == {"PFM-A", "PFM-B"} and h.store == {}
    assert registry.get_sample_value("riskflow_batches_total") == 1
    assert registry.get_sample_value("riskflow_invalid_events_total", {"reason": "malformed_json"}) == 1


def test_the_handler_reads_states_from_the_cache_then_the_tables_bytes() -> None:
    state = EntityState(entity_id="PFM-A", events=7)
    h = handler(Producer(), store={b"PFM-A": encode_state(state)})
    read = h.get_state("PFM-A")
    assert read is not None and read.events == 7
    assert h.get_state("PFM-Z") is None
    asyncio.run(h(records([event("q9", "PFM-A", 9)])))
    cached = h.get_state("PFM-A")
    assert cached is not None and cached.events == 8  # the cached, dirty state wins over the bytes
    assert decode_state(h.store[b"PFM-A"]).events == 7


def test_a_failing_batch_drops_the_decoded_states_and_raises() -> None:
    """Half-way, the pipeline mutated cached states for events whose offsets will not be
    acknowledged: back to the table's bytes (the tap reads the batch again)."""
    p = Producer()
    h = handler(p)
    asyncio.run(h(records(BATCH[:2])))
    assert h.cache.dirty

    async def fail() -> None:
        raise RuntimeError("rule pack switch failed")

    h.before_batch = fail
    with pytest.raises(RuntimeError):
        asyncio.run(h(records(BATCH[2:])))
    assert not h.cache.dirty and h.get_state("PFM-A") is None


def test_a_new_consumer_generation_drops_the_clean_states() -> None:
    generation = [1]
    h = handler(Producer(), generation=lambda: generation[0])
    asyncio.run(h(records(BATCH[:1])))
    taken = h.cache.take()
    h.cache.written(taken, h.cache.epoch)  # written: clean now
    assert h.cache.get("PFM-A") is not None
    generation[0] = 2
    asyncio.run(h(records([event("q5", "PFM-B", 5)])))
    assert h.cache.get("PFM-A") is None  # not this worker's partition any more, maybe


# --- the state flusher ---------------------------------------------------------------


def test_a_flush_writes_each_dirty_state_once_then_the_tables_bytes() -> None:
    p = Producer()
    registry = CollectorRegistry()
    metrics = Metrics.create(registry)
    cache = StateCache(100, interval=60.0, clock=lambda: 0.0)  # flushed once a minute
    store: dict[bytes, bytes] = {}
    flusher = StateFlusher(cache, store, router(p), "changelog", metrics)
    cache.mark("PFM-A", EntityState(entity_id="PFM-A", events=1), 2)
    cache.mark("PFM-A", EntityState(entity_id="PFM-A", events=2), 2)
    cache.mark("PFM-B", EntityState(entity_id="PFM-B", events=1), 0)
    assert flusher.due() is None  # the cache's policy: not yet
    write = flusher.start("interval")
    assert write is not None and store == {}  # the bytes only once the changelog has them
    asyncio.run(write)  # type: ignore[arg-type]
    assert sorted((t, k, part) for t, k, _, part in p.sent) == [("changelog", b"PFM-A", 2), ("changelog", b"PFM-B", 0)]
    assert decode_state(store[b"PFM-A"]).events == 2 and not cache.dirty
    assert flusher.due() == "batch" and flusher.start("batch") is None  # nothing left to write
    assert registry.get_sample_value("riskflow_state_flushes_total", {"reason": "interval"}) == 1
    assert registry.get_sample_value("riskflow_states_written_total") == 2


def test_a_state_that_cannot_be_encoded_is_not_written_and_not_kept() -> None:
    p = Producer()
    cache = StateCache(100)
    flusher = StateFlusher(cache, {}, router(p), "changelog", None)
    bad = EntityState(entity_id="PFM-X")
    bad.detectors["test"] = complex(1, 1)  # msgpack cannot hold it: a detector's bug
    cache.mark("PFM-X", bad, 0)
    cache.mark("PFM-A", EntityState(entity_id="PFM-A"), 0)
    write = flusher.start("batch")
    assert write is not None
    asyncio.run(write)  # type: ignore[arg-type]
    assert [k for _, k, _, _ in p.sent] == [b"PFM-A"]
    assert cache.get("PFM-X") is None  # it goes on from its last written state


def test_discarding_forgets_the_dirty_states() -> None:
    cache = StateCache(100)
    flusher = StateFlusher(cache, {}, router(Producer()), "changelog", None)
    cache.mark("PFM-A", EntityState(entity_id="PFM-A"), 0)
    flusher.discard()
    assert not cache.dirty and flusher.start("batch") is None
