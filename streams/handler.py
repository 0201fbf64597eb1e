"""The batch handler: one fetched batch of input records through the pipeline, its outputs out.

The batch tap (``streams/batchtap.py``) hands :class:`BatchHandler` each ``getmany`` result
of the input topics (up to ``RISKFLOW_BATCH_SIZE`` records) as the list of aiokafka records.
The handler reads entity states (decoded in ``streams/statecache.py``, else from the table's
bytes), runs :class:`detectors.pipeline.BatchProcessor`, delivers the alerts, links, dead
letters and late records (:class:`streams.emitter.OutputRouter`, awaited), marks the changed
states dirty for the next flush (:class:`streams.flusher.StateFlusher`) and records the
batch's metrics. Order matters for the no-loss guarantee without transactions: alerts
delivered → states written → offsets acknowledged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from operator import attrgetter
from typing import Any

from detectors.engine import EntityState, decode_state
from detectors.pipeline import PROCESSING_ERROR, BatchProcessor, BatchResult, RollbackFailed
from riskflow.core.deadletter import dead_letter
from riskflow.core.metrics import Metrics
from streams.emitter import OutputRouter
from streams.peerdrift import PeerDriftObserver
from streams.statecache import StateCache

log = logging.getLogger(__name__)
_timestamp = attrgetter("timestamp")  # a Kafka record's timestamp (ms), read in C per batch


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
        res.model_scores += one.model_scores
    return res


class BatchHandler:
    """``await handler(records)``: one fetched batch (aiokafka records, in partition order).

    ``store``: the table's bytes (entity id → encoded state); ``cache``: the decoded states,
    dirty and clean, in front of it. ``generation``: the consumer generation now (a change
    drops the cache); ``lag``: per input topic, the consumer lag after ``records``.
    ``before_batch``: awaited before each batch (rule-pack switches, lane rebuilds,
    streams/rules_control.py). ``drift``: the peer-drift observer, if the peer-group model runs.

    >>> import asyncio
    >>> from detectors.rules import load_pack
    >>> from detectors.factory import build_processor
    >>> from detectors.pipeline import RawMessage
    >>> from streams.emitter import OutputRouter
    >>> sent = []
    >>> class Producer:
    ...     async def send(self, topic, key, value, partition, timestamp, headers):
    ...         sent.append(topic)
    ...         return asyncio.sleep(0)
    >>> router = OutputRouter(Producer, alerts="a", shadow_alerts=None, links="l", deadletter="d", late=None)
    >>> handler = BatchHandler(build_processor(load_pack(), anomaly=False), StateCache(10), {}, router, None)
    >>> asyncio.run(handler([RawMessage(b"not json", "riskflow.fund-events", 0, 0, None)]))
    >>> sent
    ['d']
    """

    def __init__(
        self,
        processor: BatchProcessor,
        cache: StateCache,
        store: Mapping[bytes, bytes],
        router: OutputRouter,
        metrics: Metrics | None,
        *,
        generation: Callable[[], int] = lambda: 0,
        lag: Callable[[list[Any]], dict[str, int]] = lambda records: {},
        before_batch: Callable[[], Awaitable[None]] | None = None,
        drift: PeerDriftObserver | None = None,
    ) -> None:
        self.processor = processor
        self.cache = cache
        self.store = store
        self.router = router
        self.metrics = metrics
        self.generation = generation
        self.lag = lag
        self.before_batch = before_batch
        self.drift = drift

    def get_state(self, entity_id: str) -> EntityState | None:
        """An entity's state as this worker has it: decoded in the cache, else the table's bytes."""
        state = self.cache.get(entity_id)
        if state is not None:
            return state
        raw = self.store.get(entity_id.encode())
        return decode_state(raw) if raw is not None else None

    async def __call__(self, records: list[Any]) -> None:
        try:
            await self.handle(records)
        except BaseException:
            # Failed or cancelled half-way: the pipeline mutated cached states in place for
            # events whose offsets were not acknowledged. Back to the table's bytes.
            self.cache.clear()
            raise

    async def handle(self, records: list[Any]) -> None:
        """The batch: processed, its outputs delivered, its states dirty, its metrics kept."""
        if self.before_batch is not None:
            await self.before_batch()
        cache = self.cache
        cache.check_generation(self.generation())  # a rebalance drops the cache
        started = time.perf_counter()
        res = process_batch(self.processor, records, self.get_state)
        evaluated = time.perf_counter()
        await self.router.emit(res)
        decided_at = time.time()
        # The changed states stay dirty until the next flush (the batch tap asks
        # StateFlusher.due after this batch); their offsets wait for it.
        mark = cache.mark
        for eid, (state, partition) in res.states.items():
            mark(eid, state, partition)
        self.router.count_sent(res)
        metrics = self.metrics
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
                lag_by_topic=self.lag(records),
            )
            metrics.levels.update(levels(res.states.items()))
            if res.max_event_ts:
                metrics.event_time_lag.set(max(0.0, time.time() - res.max_event_ts))
        if self.drift is not None:
            self.drift.observe(res.model_scores)


def levels(states: Iterable[tuple[str, tuple[EntityState, int]]]) -> Iterator[tuple[str, str, str, int]]:
    """(entity id, risk level, region, partition) of changed entity states, for the level gauge."""
    for eid, (state, partition) in states:
        yield eid, state.risk.level if state.risk is not None else "green", state.region, partition
