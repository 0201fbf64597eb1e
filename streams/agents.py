"""The detection hot path: take a fetched batch, hand it to the pipeline, emit, persist.

Batches bypass Faust's per-event stream machinery (``streams/batchtap.py``):
Faust's fetch loop hands :func:`wire_agents`' ``handle`` each ``getmany``
result of the input topics (up to ``RISKFLOW_BATCH_SIZE`` records) as the
list of aiokafka records; the ``riskflow-detect`` agent only declares the
subscription, so Faust still assigns the input partitions together with the
changelog-backed table's, recovers the table, and commits offsets.

Contagion messages between entities (``BatchResult.links``) are delivered
with the alerts, before the states. Order matters for the no-loss guarantee
without transactions: alerts delivered → states written → offsets acked.
Every batch, its alerts, links, dead letters and late records are
*delivered* (awaited), and the entity states it changed stay *dirty* in
process (``streams/statecache.py``: for this worker they are the truth).
A *flush* writes the dirty states to the changelog — one record per changed
entity per flush, encoded at once, sent straight to the producer and awaited
behind the next batches (``streams/batchtap.py``) — and only once that write
has landed are the offsets of the batches it covers acknowledged for Faust's
next commit (which flushes the producer first). A flush is due ``RISKFLOW_STATE_FLUSH_INTERVAL``
seconds after the first state became dirty (0: every batch, as before), once
more than ``RISKFLOW_STATE_FLUSH_MAX`` states are dirty, and always before
offsets are committed on a rebalance and before shutdown (the batch tap).
A crash at any point therefore either re-emits alerts with the same ids (the
sinks upsert; the events were not in a written state, their offsets not
committed) or finds the events already folded into a written state; it never
loses an alert. Dirty states are never written into another consumer
generation (the worker may no longer own their partitions): they are dropped
with their un-acknowledged offsets, which are read again from the committed
offsets over the last written states. A batch that is cancelled half-way drops
them too (the pipeline mutates states in place). One that fails does not stop the
worker: the pipeline dead-letters a message whose processing raises and goes on,
and should the batch fail as a whole it puts back what it touched and the batch is
processed again one message at a time (:func:`process_batch`).

Clean states — the ones this worker last wrote — are kept decoded in a
bounded cache in front of the table's bytes, dropped whole on a rebalance,
after a table recovery and when a batch fails half-way. The table's bytes are
written only once the changelog acknowledged them, so they never hold a
state the changelog lacks. Every output record goes straight to
``app.producer``'s aiokafka producer by topic name, the whole batch's (or
flush's) at once, in record batches built per partition (:func:`batched`).

Recovery of the table itself is made whole in ``streams/tables.py`` (Tansu
reports end offsets short). A failed delivery is retried with back-off by
:func:`deliver` (a log line per retry) instead of raising, so that a broker
that is briefly unreachable costs time, not a worker restart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter as _Tally
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from functools import partial
from operator import attrgetter
from typing import Any

import faust
from aiokafka.partitioner import murmur2
from faust.sensors.prometheus import PrometheusMonitor
from faust.types import TP

from detectors.anomaly import PeerGroupDetector
from detectors.engine import EntityState, decode_state, encode_state
from detectors.lateness import encode_late
from detectors.pipeline import PROCESSING_ERROR, BatchProcessor, BatchResult, RollbackFailed
from detectors.risk.contagion import encode_link
from riskflow.deadletter import dead_letter, encode_dead_letter
from riskflow.metrics import Metrics
from riskflow.models import DriftTracker
from streams.batchtap import BatchTap, install
from streams.statecache import StateCache
from streams.topics import Topics

log = logging.getLogger(__name__)
_timestamp = attrgetter("timestamp")  # a Kafka record's timestamp (ms), read in C per batch

Send = Callable[[], Awaitable[Any]]


async def deliver(sends: Sequence[Send], what: str, *, max_wait: float = 10.0) -> None:
    """Start every send, then wait until all are acknowledged by the broker.

    On a Kafka error everything is sent again after a back-off (1, 2, 4 .. s,
    at most ``max_wait``): re-sent alerts carry the same ids and re-sent states
    are last-write-wins, so repeating is safe, while giving up is not. The
    common path (no error) costs one list of coroutines per batch.
    """
    attempt = 0
    while True:
        try:
            pending = [await send() for send in sends]
            if pending:
                await asyncio.gather(*pending)
            if attempt:
                log.warning("delivered %d %s after %d retries", len(sends), what, attempt)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any producer failure is retried
            attempt += 1
            wait = min(2.0 ** (attempt - 1), max_wait)
            log.warning(
                "could not deliver %d %s (%s: %s); retry %d in %.0fs",
                len(sends),
                what,
                type(exc).__name__,
                exc,
                attempt,
                wait,
            )
            await asyncio.sleep(wait)


#: One output record: (topic, key, value, partition or None for the producer's partitioner).
Out = tuple[str, bytes | None, bytes, int | None]


def batched(producer: Any, records: Sequence[Out]) -> list[Send]:
    """The sends of ``records``, in record batches built here rather than one ``send`` each.

    aiokafka's ``send`` costs ~14-18 µs of CPU per record (a future per record, resolved
    with its own metadata, behind Faust's wrapper); filling one batch per partition and
    submitting it with ``send_batch`` ~4-6 µs, with one future per batch (``bench/produce.py``:
    7,400 ~1 KB records, as a flush writes). Records without a partition are placed by the
    producer's own partitioner (murmur2 of the key, as ``send`` places them); per partition
    the order is kept. Re-running the send (a retry in :func:`deliver`) builds the batches
    again. ``producer``: Faust's aiokafka producer;
    any other falls back to one ``send`` per record."""
    if not records:
        return []
    aio = getattr(producer, "_ensure_producer", None)
    if aio is None:
        return [partial(producer.send, t, k, v, p, None, None) for t, k, v, p in records]
    return [partial(_send_batches, aio(), records)]


async def _send_batches(aio: Any, records: Sequence[Out]) -> Awaitable[Any]:
    """Submit ``records`` in batches (one or more per partition); a future of all their acks."""
    groups: dict[tuple[str, int], list[tuple[bytes | None, bytes]]] = {}
    known: set[str] = set()
    for topic, key, value, partition in records:
        if partition is None:
            if topic not in known:
                await aio.client._wait_on_metadata(topic)
                known.add(topic)
            partition = aio._partition(topic, None, key, value, key, value)
        group = groups.get((topic, partition))
        if group is None:
            group = groups[topic, partition] = []
        group.append((key, value))
    futures = []
    for (topic, partition), recs in groups.items():
        batch = aio.create_batch()
        for key, value in recs:
            if batch.append(key=key, value=value, timestamp=None) is None:  # full: submit, start another
                futures.append(await aio.send_batch(batch, topic, partition=partition))
                batch = aio.create_batch()
                batch.append(key=key, value=value, timestamp=None)  # the first record always fits
        futures.append(await aio.send_batch(batch, topic, partition=partition))
    return asyncio.gather(*futures)


def process_batch(
    processor: BatchProcessor, records: Sequence[Any], get_state: Callable[[str], EntityState | None]
) -> BatchResult:
    """``processor.process(records)``; should the batch fail as a whole (a bug outside the
    per-message containment of ``detectors/pipeline.py``, which then put every state it touched
    back), it is processed again one message at a time, and a message that fails alone is
    dead-lettered as ``processing_error``: one bad message never stops the worker, and the
    others are processed exactly as in the batch."""
    try:
        return processor.process(records, get_state)
    except RollbackFailed:
        raise  # the states it touched cannot be trusted: the handler drops them all (read again)
    except Exception as exc:
        log.exception(
            "a batch of %d records failed as a whole (%r); processing it one message at a time", len(records), exc
        )
    res = BatchResult()
    states = res.states

    def current(entity_id: str) -> EntityState | None:
        held = states.get(entity_id)
        return held[0] if held is not None else get_state(entity_id)

    for rec in records:
        try:
            one = processor.process([rec], current)
        except RollbackFailed:
            raise
        except Exception as exc:
            log.error("record %s[%d]@%d failed alone (%r): dead-lettered", rec.topic, rec.partition, rec.offset, exc)
            detail = f"{type(exc).__name__} in the batch processor: {exc}"
            res.dead_letters.append(
                dead_letter(rec.value, PROCESSING_ERROR, detail, rec.topic, rec.partition, rec.offset, rec.key)
            )
            continue
        res.alerts += one.alerts
        res.dead_letters += one.dead_letters
        states.update(one.states)
        res.counted += one.counted
        res.max_event_ts = max(res.max_event_ts, one.max_event_ts)
        res.links += one.links
        res.late += one.late
        res.ahead += one.ahead
        res.already_applied += one.already_applied
    return res


def wire_agents(
    app: faust.App,
    topics: Topics,
    table: faust.Table,
    processor: BatchProcessor,
    metrics: Metrics | None,
    *,
    before_batch: Callable[[], Awaitable[None]] | None = None,
    peer: PeerGroupDetector | None = None,
    state_cache: int | StateCache = 10_000,
) -> Any:
    """``before_batch``: awaited before each batch (rule-pack switches, lane rebuilds,
    streams/rules_control.py). Alerts of shadow rules go to ``topics.shadow_alerts``.
    ``state_cache``: the decoded entity states in memory, dirty and clean, with the flush
    policy (streams/statecache.py), or the capacity of a cache that flushes every batch.
    A batch is one fetch, at most ``RISKFLOW_BATCH_SIZE`` records (``broker_max_poll_records``,
    streams/app.py)."""
    # Every output goes straight to the producer, named by topic (no Faust Topic.send per message:
    # it was ~12% of a busy worker, bench/latency.py). Keyed records are placed by the
    # producer's murmur2 partitioner, as Topic.send placed them.
    alerts_topic = topics.alerts.get_topic_name()
    shadow_topic = topics.shadow_alerts.get_topic_name() if topics.shadow_alerts is not None else alerts_topic
    links_topic = topics.links.get_topic_name()
    deadletter_topic = topics.deadletter.get_topic_name()
    late_topic = topics.late.get_topic_name() if topics.late is not None else None
    store = table.data
    cache = state_cache if isinstance(state_cache, StateCache) else StateCache(state_cache)
    monitor = app.monitor
    sent_counter = monitor._metrics.topic_messages_sent if isinstance(monitor, PrometheusMonitor) else None
    changelog = table.changelog_topic.get_topic_name()
    drift = DriftTracker()
    drift_version = [""]

    def follow_model() -> None:
        # A newly loaded model: the drift index restarts, and its kinds' series exist from now on.
        model = peer.model if peer is not None else None
        if model is None or metrics is None or model.version == drift_version[0]:
            return
        drift.reset()
        drift_version[0] = model.version
        for kind in model.kinds:
            metrics.model_scored.labels(entity_kind=kind).inc(0)

    follow_model()

    def observe_peer_scores() -> None:
        # Per batch: the peer-group scores of the batch and the drift index of recent scores.
        if peer is None or metrics is None:
            return
        scores = peer.drain_scores()
        model = peer.model
        if model is None:
            return
        follow_model()
        if scores:
            psi = drift.update(scores, {k: km.reference for k, km in model.kinds.items()})
            metrics.observe_model_scores(scores, psi)

    def get_state(entity_id: str) -> EntityState | None:
        state = cache.get(entity_id)
        if state is not None:
            return state
        raw = store.get(entity_id.encode())
        return decode_state(raw) if raw is not None else None

    async def handle(records: list[Any]) -> None:
        """One fetched batch (aiokafka records, in partition order) through the pipeline."""
        try:
            await _handle(records)
        except BaseException:
            # Failed or cancelled half-way: the pipeline mutated cached states in place for
            # events whose offsets were not acknowledged. Back to the table's bytes.
            cache.clear()
            raise

    async def _handle(records: list[Any]) -> None:
        if before_batch is not None:
            await before_batch()
        cache.check_generation(app.consumer_generation_id)  # a rebalance drops the cache
        started = time.perf_counter()
        res = process_batch(processor, records, get_state)
        evaluated = time.perf_counter()
        if res.alerts or res.links or res.dead_letters or res.late or res.ahead:
            out: list[Out] = [
                (shadow_topic if a.mode == "shadow" else alerts_topic, a.entity_id.encode(), a.to_json(), None)
                for a in res.alerts
            ]
            out += [(links_topic, m.to.encode(), encode_link(m), None) for m in res.links]
            out += [
                (deadletter_topic, (d["key"] or "").encode(), encode_dead_letter(d), None) for d in res.dead_letters
            ]
            if late_topic is not None:
                out += [(late_topic, r.entity_id.encode(), encode_late(r), None) for r in (*res.late, *res.ahead)]
            await deliver(batched(app.producer, out), "alerts/links/dead letters")
        decided_at = time.time()
        # The changed states stay dirty until the next flush (the batch tap asks
        # StateCache.due after this batch); their offsets wait for it.
        mark = cache.mark
        for eid, (state, partition) in res.states.items():
            mark(eid, state, partition)
        if sent_counter is not None:  # Faust's per-topic count, which Topic.send kept, per batch
            sent = _Tally(shadow_topic if a.mode == "shadow" else alerts_topic for a in res.alerts)
            sent[links_topic] += len(res.links)
            sent[deadletter_topic] += len(res.dead_letters)
            if late_topic is not None:
                sent[late_topic] += len(res.late) + len(res.ahead)
            for topic, n in sent.items():
                if n:
                    sent_counter.labels(topic=f"topic.{topic}").inc(n)
        if metrics is not None:
            metrics.count_batch(res.counted, (d["reason"] for d in res.dead_letters), res.alerts)
            if res.already_applied:
                metrics.already_applied.inc(res.already_applied)
            if res.late:
                metrics.count_late(r.event_type for r in res.late)
            if res.ahead:
                metrics.count_late((r.event_type for r in res.ahead), metrics.ahead)
            metrics.batches.inc()
            metrics.batch_seconds.observe(time.perf_counter() - started)
            metrics.record_batch(
                produced_at_ms=map(_timestamp, records),
                decided_at=decided_at,
                evaluation_seconds=evaluated - started,
                lag_by_topic=_consumer_lag(app, records),
            )
            metrics.levels.update(_levels(res.states.items()))
            if res.max_event_ts:
                metrics.event_time_lag.set(max(0.0, time.time() - res.max_event_ts))
        observe_peer_scores()

    class Flush:
        """The batch tap's flusher: writes the dirty states, one changelog record per entity."""

        def due(self) -> str | None:
            # Nothing dirty: every pending batch's states are written (or it changed none,
            # e.g. all dead letters), so its offsets need not wait.
            return cache.due() if cache.dirty else "batch"

        def start(self, reason: str) -> Awaitable[None] | None:
            """Encode the dirty states now and return their write (None: nothing to write).

            Called between batches, so the bytes hold the events of processed batches only,
            whose alerts are delivered; the batches after it may change the same objects
            while the write is in flight (they are dirty again then, for the next flush)."""
            if not cache.dirty:
                return None
            epoch = cache.epoch
            taken = cache.take()
            # States go straight to the producer and are awaited: durable before the offsets
            # they cover can be committed. (Table.send_changelog queues each record in Faust's
            # producer buffer, drained one message at a time, and stalls the stream whenever
            # 100 are pending; bench/pipeline.py measured it.)
            try:
                encoded: list[Out] = [
                    (changelog, eid.encode(), encode_state(state), partition)
                    for eid, (state, partition) in taken.items()
                ]
            except Exception:
                encoded = encodable(taken)
            sends = batched(app.producer, encoded)

            async def write() -> None:
                await deliver(sends, "entity states")
                for _, key, value, _ in encoded:  # the table's bytes only once the changelog has them
                    store[key] = value  # type: ignore[index]
                cache.written(taken, epoch)
                if sent_counter is not None:
                    sent_counter.labels(topic=f"topic.{changelog}").inc(len(encoded))
                if metrics is not None:
                    metrics.state_flushes.labels(reason=reason).inc()
                    metrics.states_written.inc(len(encoded))

            return write()

        def discard(self) -> None:
            cache.clear()

    def encodable(taken: dict[str, tuple[EntityState, int]]) -> list[Out]:
        """The records of the states that encode. A state that does not (a detector put a value
        msgpack cannot hold in it: a bug) is not written and is dropped from memory, so the
        entity goes on from its last written state; raising here instead would stop the worker
        at every restart."""
        out: list[Out] = []
        for eid, (state, partition) in list(taken.items()):
            try:
                out.append((changelog, eid.encode(), encode_state(state), partition))
            except Exception as exc:
                log.error(
                    "entity %s: its state cannot be encoded (%r); not written, it goes on from its last written state",
                    eid,
                    exc,
                )
                del taken[eid]
                cache.drop(eid)
        return out

    install(app, BatchTap(topics.inputs.topics, handle, Flush()))

    table_recovered = table.on_recovery_completed

    async def drop_cache(active_tps: set[Any], standby_tps: set[Any]) -> None:
        """After the table's recovery (and its catch-up, streams/tables.py) the table's bytes
        are the truth again: no decoded state survives it."""
        await table_recovered(active_tps, standby_tps)
        cache.clear()

    table.on_recovery_completed = drop_cache  # type: ignore[method-assign]

    if metrics is not None:
        board = metrics.levels

        recovered = table.on_recovery_completed

        async def recount_levels(active_tps: set[Any], standby_tps: set[Any]) -> None:
            """After the table's recovery (and its catch-up, streams/tables.py): recount entities
            per risk level over the table partitions owned now."""
            await recovered(active_tps, standby_tps)
            owned = {tp.partition for tp in active_tps if tp.topic == changelog}
            n = table.partitions or app.conf.topic_partitions
            board.rebuild(
                _levels(
                    (key.decode(), (decode_state(raw), part))
                    for key, raw in list(store.items())
                    if (part := (murmur2(key) & 0x7FFFFFFF) % n) in owned
                )
            )

        table.on_recovery_completed = recount_levels  # type: ignore[method-assign]

    @app.agent(topics.inputs, name="riskflow-detect")
    async def detect(stream: faust.StreamT) -> None:
        # Declares the subscription, so that Faust assigns the input partitions
        # together with the table's; the records reach `handle` through the
        # batch tap and never this stream.
        async for _ in stream:
            raise RuntimeError("input records must arrive through streams.batchtap")

    return detect


def _levels(states: Iterable[tuple[str, tuple[EntityState, int]]]) -> Iterator[tuple[str, str, str, int]]:
    """(entity id, risk level, region, partition) of changed entity states, for the level gauge."""
    for eid, (state, partition) in states:
        yield eid, state.risk.level if state.risk is not None else "green", state.region, partition


def _consumer_lag(app: faust.App, records: list[Any]) -> dict[str, int]:
    """Per input topic of the batch: its partitions' high watermarks minus the next offset to process.

    The high watermark is the consumer's last fetched one (no broker round trip).
    Tansu reports it short (docs/operations.md, "Broker notes"), so a caught-up partition can
    come out negative: clamped to 0.
    """
    position: dict[tuple[str, int], int] = {}
    for r in records:
        position[r.topic, r.partition] = r.offset + 1
    lag: dict[str, int] = {}
    for (topic, partition), pos in position.items():
        try:
            hw = app.consumer.highwater(TP(topic, partition))
        except Exception:  # not assigned any more (rebalance): no figure for it
            continue
        if hw is not None:
            lag[topic] = lag.get(topic, 0) + max(0, hw - pos)
    return lag
