"""The worker's wiring: the batch tap, the batch handler, the output router, the state
flusher and the peer-drift observer, put together on a Faust app.

Batches bypass Faust's per-event stream machinery (``streams/batchtap.py``):
Faust's fetch loop hands the :class:`~streams.handler.BatchHandler` each ``getmany``
result of the input topics (up to ``RISKFLOW_BATCH_SIZE`` records) as the
list of aiokafka records; the ``riskflow-detect`` agent only declares the
subscription, so Faust still assigns the input partitions together with the
changelog-backed table's, recovers the table, and commits offsets.

Contagion messages between entities (``BatchResult.links``) are delivered
with the alerts, before the states. Order matters for the no-loss guarantee
without transactions: alerts delivered → states written → offsets acked.
Every batch, its alerts, links, dead letters and late records are
*delivered* (awaited, ``streams/emitter.py``), and the entity states it changed stay
*dirty* in process (``streams/statecache.py``: for this worker they are the truth).
A *flush* (``streams/flusher.py``) writes the dirty states to the changelog — one
record per changed entity per flush, encoded at once, sent straight to the producer
and awaited behind the next batches (``streams/batchtap.py``) — and only once that
write has landed are the offsets of the batches it covers acknowledged for Faust's
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
processed again one message at a time (:func:`streams.handler.process_batch`).

Clean states — the ones this worker last wrote — are kept decoded in a
bounded cache in front of the table's bytes, dropped whole on a rebalance,
after a table recovery and when a batch fails half-way. Recovery of the table
itself is made whole in ``streams/tables.py`` (Tansu reports end offsets short).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import faust
from aiokafka.partitioner import murmur2
from faust.types import TP

from detectors.anomaly import PeerGroupDetector
from detectors.engine import decode_state
from detectors.pipeline import BatchProcessor
from riskflow.core.metrics import Metrics
from streams import faust_compat
from streams.batchtap import BatchTap, install
from streams.emitter import OutputRouter
from streams.flusher import StateFlusher
from streams.handler import BatchHandler, levels
from streams.peerdrift import PeerDriftObserver
from streams.statecache import StateCache
from streams.topics import Topics


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
    store = table.data
    cache = state_cache if isinstance(state_cache, StateCache) else StateCache(state_cache)
    changelog = table.changelog_topic.get_topic_name()
    router = OutputRouter(
        lambda: app.producer,
        alerts=topics.alerts.get_topic_name(),
        shadow_alerts=topics.shadow_alerts.get_topic_name() if topics.shadow_alerts is not None else None,
        links=topics.links.get_topic_name(),
        deadletter=topics.deadletter.get_topic_name(),
        late=topics.late.get_topic_name() if topics.late is not None else None,
        sent_counter=faust_compat.sent_counter(app.monitor),
    )
    handler = BatchHandler(
        processor,
        cache,
        store,
        router,
        metrics,
        generation=lambda: app.consumer_generation_id,
        lag=lambda records: consumer_lag(app, records),
        before_batch=before_batch,
        drift=PeerDriftObserver(peer, metrics) if peer is not None and metrics is not None else None,
    )
    flusher = StateFlusher(cache, store, router, changelog, metrics)
    install(app, BatchTap(topics.inputs.topics, handler, flusher))

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
                levels(
                    (key.decode(), (decode_state(raw), part))
                    for key, raw in list(store.items())
                    if (part := (murmur2(key) & 0x7FFFFFFF) % n) in owned
                )
            )

        table.on_recovery_completed = recount_levels  # type: ignore[method-assign]

    @app.agent(topics.inputs, name="riskflow-detect")
    async def detect(stream: faust.StreamT) -> None:
        # Declares the subscription, so that Faust assigns the input partitions
        # together with the table's; the records reach the handler through the
        # batch tap and never this stream.
        async for _ in stream:
            raise RuntimeError("input records must arrive through streams.batchtap")

    return detect


def consumer_lag(app: faust.App, records: list[Any]) -> dict[str, int]:
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
