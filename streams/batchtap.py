"""Whole fetched batches of the input topics, taken off Faust's fetch loop.

Faust turns every fetched record into a Message, an Event and a stream item,
with sensor calls and task hand-offs on the way: ~100 µs of CPU per event
before an agent sees it (docs/operations.md, "Broker notes"), and ``take_events`` does
not avoid it. RiskFlow keeps Faust for everything *around* the hot path —
group membership and partition assignment, the changelog-backed table and its
recovery, offset commits, the producer — and replaces only the per-record
dispatch of its own input topics: :func:`install` runs, for the app's consumer,
a fetch loop of its own instead of Faust's (through ``streams/faust_compat.py``,
where every private name of Faust this module relies on is named) that hands
each ``getmany`` result for those topics to a batch handler as the list of
aiokafka records, and lets every other topic (table changelogs during
recovery) take Faust's usual path.

Offsets stay under Faust's commit machinery, batch-wise: the records of a
batch are marked acknowledged only *after* the handler returned (its alerts
delivered) *and* the states it changed were written to the changelog. With a
:class:`Flusher` (``streams/flusher.py``) states are written once per flush,
not once per batch: processed batches wait, offsets only, in
``BatchTap.pending`` until the next flush, which is due by the flusher's
policy (after a batch, or on an idle fetch loop), and is always made before
Faust commits on a rebalance and before the fetch loop is stopped for
shutdown. A flush due after a batch runs *behind* the batches: the states are
encoded at once (between batches, so they hold only events whose alerts were
delivered), and while the broker acknowledges their write the next batches
run; the offsets the flush covers are acknowledged when its write has landed.
One write is in flight at a time: the next flush, and the flush before a
rebalance commit or a shutdown, first waits for it. So the order is: alerts
delivered → states written → offsets acknowledged; Faust's periodic commit
then commits them. Pending work is
never flushed into another consumer generation: there it is dropped (not
written, not acknowledged) and read again from the committed offsets. A
handler that raises drops all pending work too (the states it mutated may
hold events whose alerts were not delivered) and stops the worker: the
batches are read again after a restart. While a batch is in flight, a marker
sits among the consumer's unacknowledged messages, so a rebalance or a
shutdown (``Consumer.wait_empty``) waits for the batch to finish before it
commits and gives partitions away.

No input record is ever skipped. Faust treats a jump in a partition's offsets
as a gap (compaction, transaction markers) and commits past it; around a
rebalance, records fetched for a partition that was paused, revoked or just
re-assigned can be dropped by the fetch loop while the consumer's position
moves on, and the next fetch then starts past them. Committing past those
lost events for good (issue 8: a second worker joining mid-stream, the first
kept a partition, and its next batch started 12 offsets past the committed
one). So for the input topics a batch must start exactly where the partition's
processing stands — the offset after its last processed record in this
generation, else the committed offset. Any jump is read again from there, and
believed (as a real gap) only when a second read from there still starts at
the same offset. Records dropped unprocessed get their partition rewound.

"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from riskflow.core.gctune import tune
from streams import faust_compat as compat

log = logging.getLogger(__name__)

Handler = Callable[[list[Any]], Awaitable[None]]


class Flusher(Protocol):
    """Writes the entity states that processed batches changed (``streams/flusher.py``)."""

    def due(self) -> str | None:
        """Why the pending offsets may be acknowledged now, after a flush (a reason of
        ``riskflow.core.metrics.STATE_FLUSH_REASONS``; also when nothing is left to write), else None."""

    def start(self, reason: str) -> Awaitable[None] | None:
        """Take every changed state as it is now (encoded at once) and return the write of
        them, which completes once the broker acknowledged them all (None: nothing to write)."""

    def discard(self) -> None:
        """Forget every changed state unwritten (they are read again from the committed offsets)."""


class BatchTap:
    """Where the fetch loop sends the records of ``topics``: ``await handler(records)``.

    ``flusher``: states are written by it, once per flush, and offsets acknowledged
    after the flush; without one, after every batch.

    >>> async def handle(records): ...
    >>> tap = BatchTap({"riskflow.fund-events"}, handle)
    >>> "riskflow.fund-events" in tap.topics
    True
    """

    def __init__(self, topics: Iterable[str], handler: Handler, flusher: Flusher | None = None) -> None:
        self.topics = frozenset(topics)
        self.handler = handler
        self.flusher = flusher
        # Offsets processed (alerts delivered) but not acknowledged: their states await a flush.
        self.pending: dict[Any, list[int]] = {}
        self.pending_generation: int | None = None
        # Held by a batch (handler, flush) and by a flush on rebalance or shutdown.
        self.lock = asyncio.Lock()
        self.tuned = False  # garbage collector tuned for the hot path (riskflow/core/gctune.py)
        # Per input partition: (consumer generation, offset after the last processed record).
        self.next_offset: dict[Any, tuple[int, int]] = {}
        # Per input partition: (expected offset, first offset fetched) of a jump read again once.
        self.jumps: dict[Any, tuple[int, int]] = {}
        # The flush in flight behind the batches (its write, then its offsets acknowledged).
        self.landing: asyncio.Future[None] | None = None
        self.landing_offsets: tuple[dict[Any, list[int]], int | None] = ({}, None)  # what it acknowledges


def install(app: Any, tap: BatchTap) -> None:
    """Route ``tap.topics`` of ``app`` through ``tap`` (once per app; needs
    :func:`streams.faust_compat.install`).

    With a flusher, pending states are also written (and their offsets acknowledged)
    before Faust commits on a rebalance or a shutdown, and before it stops the fetch
    loop for shutdown or recovery (so that shutdown waits for the batch in flight
    instead of cancelling it): :func:`streams.faust_compat.settle_before_commit`."""

    async def fetch_loop(consumer: Any, fetcher: Any) -> None:
        await _drain_messages(consumer, fetcher, tap)

    compat.set_fetch_loop(app, fetch_loop)
    if tap.flusher is None:
        return

    async def settle() -> None:
        async with tap.lock:  # after the batch in flight, if any
            await _flush(app.consumer, tap, "shutdown" if app.should_stop else "rebalance")

    async def settle_before_stop() -> None:
        # A batch stuck in flight (e.g. a broker gone at shutdown) must not hold the stop
        # forever: after the session timeout the fetch loop is stopped as before, cancelling
        # the batch, which then drops the pending work (not acknowledged: read again).
        try:
            await asyncio.wait_for(settle(), app.conf.broker_session_timeout)
        except TimeoutError:
            log.warning("a batch in flight did not finish before shutdown; its records are read again")

    compat.settle_before_commit(app, settle, settle_before_stop)


async def _drain_messages(self: Any, fetcher: Any, tap: BatchTap) -> None:  # pragma: no cover - runs in the worker
    callback = self.callback
    consumer_should_stop, fetcher_should_stop = compat.stop_flags(self, fetcher)
    to_message, read_offset = compat.faust_message_path(self)
    acks_enabled_for = self.app.topics.acks_enabled_for
    tap_topics = tap.topics
    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            records, active = await compat.next_records(self, 1.0)
            await asyncio.sleep(0)
            if tap.pending and self.flow_active and tap.flusher is not None:
                # Checked on every turn, not only after a batch: on an idle stream (no record,
                # or a fetch of empty partitions) pending states age out all the same.
                reason = tap.flusher.due()
                if reason is not None:
                    async with tap.lock:
                        await _flush(self, tap, reason, behind=True)
            # As Faust's getmany: the generation current when the records are
            # handed over. (Taken before the wait, it dropped the first fetch
            # after an assignment, changelog records of a recovery included.)
            generation = self.app.consumer_generation_id
            if not records or self.should_stop:
                continue
            if not self.flow_active:
                # A rebalance began: drop what was fetched (not acked, so it is
                # fetched again from the committed offsets).
                try:
                    await self.perform_seek()
                except Exception as exc:  # as Faust's getmany: the assignment changed under the seek
                    log.warning("seek to committed offsets while the flow is stopped failed: %r", exc)
                continue
            buffered = compat.buffered_partitions(self)
            batch: list[Any] = []
            spans: list[tuple[Any, list[Any]]] = []
            for tp, recs in records.items():
                if not recs:
                    continue
                if tp.topic in tap_topics:
                    if not (active is None or tp in active or tp in buffered):
                        await _rewind(self, tp, recs[0].offset)  # paused or revoked meanwhile
                        continue
                    self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                    recs = await _in_sequence(self, tap, tp, recs, generation)
                    if recs:
                        batch.extend(recs)
                        spans.append((tp, recs))
                    continue
                if not (active is None or tp in active or tp in buffered):
                    continue
                self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                for rec in recs:  # Faust's own path: one message at a time
                    message = to_message(tp, rec)
                    offset = message.offset
                    r_offset = read_offset.get(tp)
                    if r_offset is None or offset >= r_offset:
                        if r_offset and offset - r_offset > 1 and acks_enabled_for(message.topic):
                            await compat.add_gap(self, tp, r_offset + 1, offset)
                        await self.wait_first(callback(message), self.suspend_flow.wait())
                        read_offset[tp] = offset
            if batch:
                if not self.flow_active or self.app.consumer_generation_id != generation:
                    # A rebalance began while the records above were handled: drop
                    # the batch unacknowledged, and rewind so that none is skipped.
                    for tp, recs in spans:
                        await _rewind(self, tp, recs[0].offset)
                    continue
                await _run_batch(self, tap, batch, spans, generation)
    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            return
        raise
    except Exception as exc:
        self.log.exception("batch fetch loop crashed: %r", exc)
        await self.crash(exc)
        raise


async def _rewind(self: Any, tp: Any, offset: int) -> None:
    """Seek ``tp`` back to ``offset`` (its first record dropped unprocessed), if still assigned."""
    if tp in self.assignment():
        try:
            await self.seek(tp, offset)
        except Exception as exc:  # revoked meanwhile: its next owner starts from the committed offset
            log.warning("input %s[%d]: could not rewind to %d (%r)", tp.topic, tp.partition, offset, exc)


async def _in_sequence(self: Any, tap: BatchTap, tp: Any, recs: list[Any], generation: int) -> list[Any]:
    """The records of ``recs`` to process now: those from where ``tp`` stands on.

    Where it stands: after the last record processed in this consumer generation,
    else the committed offset (a rebalance may have handed it to another worker and
    back, or re-read it from the changelog). Records below were processed already.
    A batch starting above is a jump: read again from where it stands, and believed
    (offsets without records: transaction markers, compaction, retention) only if the
    second read starts at the same offset."""
    held = tap.next_offset.get(tp)
    expected = held[1] if held is not None and held[0] == generation else compat.committed_offset(self, tp)
    if expected is None:  # nothing processed or committed yet: from where the consumer starts
        return recs
    if recs[0].offset < expected:
        recs = [r for r in recs if r.offset >= expected]
        if not recs:
            return recs
    first = recs[0].offset
    if first > expected:
        if tap.jumps.pop(tp, None) == (expected, first):
            await compat.add_gap(self, tp, expected, first - 1)
        else:
            tap.jumps[tp] = (expected, first)
            log.warning(
                "input %s[%d]: fetched from offset %d, expected %d; reading again from %d",
                tp.topic,
                tp.partition,
                first,
                expected,
                expected,
            )
            await _rewind(self, tp, expected)
            return []
    return recs


async def _run_batch(
    self: Any, tap: BatchTap, batch: list[Any], spans: list[tuple[Any, list[Any]]], generation: int
) -> None:
    if not tap.tuned:  # start-up is over: freeze what it built, fewer collector passes
        tap.tuned = True
        tune()
    marker = compat.InFlight()
    compat.hold(self, marker)
    try:
        async with tap.lock:
            if tap.pending and tap.pending_generation != generation:
                _drop(tap)  # left from before a rebalance: read again from the committed offsets
            try:
                await tap.handler(batch)
            except BaseException:
                await _drop_and_rewind(self, tap, generation)
                raise
            # Processed: the partition stands after these records in this generation ...
            pending = tap.pending
            for tp, recs in spans:
                compat.set_read_offset(self, tp, recs[-1].offset)
                tap.next_offset[tp] = (generation, recs[-1].offset + 1)
                offsets = pending.get(tp)
                if offsets is None:
                    offsets = pending[tp] = []
                offsets.extend([r.offset for r in recs])
            tap.pending_generation = generation
            # ... and its offsets are acknowledged once its states are durable.
            reason = "batch" if tap.flusher is None else tap.flusher.due()
            if reason is not None:
                await _flush(self, tap, reason, behind=True)
    finally:
        compat.release(self, marker)
    if compat.take_commit_due(self):
        await self.commit()


async def _flush(self: Any, tap: BatchTap, reason: str, *, behind: bool = False) -> None:
    """Write the pending states (``tap.lock`` held), then acknowledge the pending offsets.

    Never into another consumer generation: pending work from before a rebalance,
    or of a member the group no longer knows, is dropped, and its records are read
    again from the committed offsets. A flush in flight lands first (one write at a
    time: a later state of an entity is never overtaken by an earlier one, not even
    by a retry). The offsets are acknowledged when the write lands (:func:`_land`).
    ``behind``: return once the states are encoded and their write has started, and
    let the next batches run meanwhile — after a batch, not when Faust is about to
    commit (a rebalance, a shutdown: those wait for the whole write)."""
    await _landed(self, tap)
    if tap.pending and not (tap.pending_generation == self.app.consumer_generation_id == _group_generation(self)):
        _drop(tap)
        return
    write = tap.flusher.start(reason) if tap.flusher is not None else None
    pending, tap.pending = tap.pending, {}
    if write is None:
        _ack(self, pending)
        return
    tap.landing_offsets = (pending, tap.pending_generation)
    tap.landing = asyncio.ensure_future(_land(self, tap, write))
    if not behind:
        await _landed(self, tap)


async def _landed(self: Any, tap: BatchTap) -> None:
    """Wait until the flush in flight, if any, has landed (its offsets acknowledged).

    A write that was cancelled instead acknowledged nothing, and offsets must be
    acknowledged in order: Faust commits the first consecutive run of acknowledged
    offsets, and its check for a hole below that run lets a hole of one offset through,
    and any hole while the committed offset is 0 or unknown (Faust's commit rule,
    exercised by tests/stream/test_faust_compat.py). So everything pending after it is dropped too, and its
    partitions are read again from its first offsets."""
    landing = tap.landing
    if landing is None:
        return
    try:
        await asyncio.shield(landing)  # a waiter cancelled (shutdown) does not cancel the write
    except asyncio.CancelledError:
        if not landing.cancelled():
            raise
        lost, generation = tap.landing_offsets
        _drop(tap)
        for tp, offsets in lost.items():
            if offsets:
                if generation is not None:
                    tap.next_offset[tp] = (generation, offsets[0])
                await _rewind(self, tp, offsets[0])
    finally:
        if tap.landing is landing:
            tap.landing = None


async def _land(self: Any, tap: BatchTap, write: Awaitable[None]) -> None:
    """The write of a flush: once the broker has the states, their offsets
    (``tap.landing_offsets``) are acknowledged — if the consumer generation is still the
    one they were processed in."""
    await write
    pending, generation = tap.landing_offsets
    if generation == self.app.consumer_generation_id == _group_generation(self):
        _ack(self, pending)
    elif pending:
        log.info(
            "a state write landed after the consumer generation changed; its %d records are read again"
            " from the committed offsets",
            sum(map(len, pending.values())),
        )


def _ack(self: Any, pending: dict[Any, list[int]]) -> None:
    """Acknowledge processed offsets whose states are written (Faust commits them)."""
    for tp, offsets in pending.items():
        committed = compat.committed_offset(self, tp)
        if committed is not None:
            offsets = [o for o in offsets if o >= committed]
        if offsets:
            compat.acknowledge(self, tp, offsets)


def _group_generation(self: Any) -> int | None:
    """The member's generation as the group coordinator client holds it now
    (:func:`streams.faust_compat.group_generation`): reset as soon as the coordinator
    no longer knows the member (session expired, fenced by a newer generation), before
    it rejoins and revokes, when the partitions may already belong to another worker,
    whose states a late write would overwrite."""
    return compat.group_generation(self)


def _drop(tap: BatchTap) -> None:
    """Forget the pending work unwritten and unacknowledged."""
    if tap.pending:
        log.info(
            "dropped %d processed records of an earlier consumer generation before their states were written;"
            " they are read again from the committed offsets",
            sum(map(len, tap.pending.values())),
        )
    tap.pending = {}
    if tap.flusher is not None:
        tap.flusher.discard()


async def _drop_and_rewind(self: Any, tap: BatchTap, generation: int) -> None:
    """A batch failed: the pending batches' states are lost with it. Their partitions
    stand again at their first pending offset (read again from there)."""
    pending = tap.pending if tap.pending_generation == generation else {}
    _drop(tap)
    for tp, offsets in pending.items():
        if offsets:
            tap.next_offset[tp] = (generation, offsets[0])
            await _rewind(self, tp, offsets[0])
