"""Whole fetched batches of the input topics, taken off Faust's fetch loop.

Faust turns every fetched record into a Message, an Event and a stream item,
with sensor calls and task hand-offs on the way: ~100 µs of CPU per event
before an agent sees it (``shared/KAFKA-NOTES.md``), and ``take_events`` does
not avoid it. RiskFlow keeps Faust for everything *around* the hot path —
group membership and partition assignment, the changelog-backed table and its
recovery, offset commits, the producer — and replaces only the per-record
dispatch of its own input topics: :func:`install` swaps Faust's fetch loop
(``Consumer._drain_messages``) for one that hands each ``getmany`` result for
those topics to a batch handler as the list of aiokafka records, and lets
every other topic (table changelogs during recovery) take Faust's usual path.

Offsets stay under Faust's commit machinery, batch-wise: the records of a
batch are marked acknowledged only *after* the handler returned, i.e. after
its alerts were delivered and its states written (see ``streams/agents.py``);
Faust's periodic commit then commits them. A handler that raises acknowledges
nothing and stops the worker: the batch is read again after a restart.
While a batch is in flight, a marker sits among the consumer's unacknowledged
messages, so a rebalance or a shutdown (``Consumer.wait_empty``) waits for the
batch to finish before it commits and gives partitions away.

"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, cast

from faust.transport import consumer as _faust_consumer
from mode.utils.futures import notify

from riskflow.gctune import tune

Handler = Callable[[list[Any]], Awaitable[None]]

_original_drain = _faust_consumer.Consumer._drain_messages


class BatchTap:
    """Where the fetch loop sends the records of ``topics``: ``await handler(records)``.

    >>> async def handle(records): ...
    >>> tap = BatchTap({"riskflow.fund-events"}, handle)
    >>> "riskflow.fund-events" in tap.topics
    True
    """

    def __init__(self, topics: Iterable[str], handler: Handler) -> None:
        self.topics = frozenset(topics)
        self.handler = handler
        self.tuned = False  # garbage collector tuned for the hot path (riskflow/gctune.py)


class _InFlight:
    """Stands for a batch among the consumer's unacknowledged messages."""

    __slots__ = ("__weakref__", "acked", "refcount")

    def __init__(self) -> None:
        self.acked = False
        self.refcount = 1

    def __repr__(self) -> str:
        return "<riskflow batch in flight>"


def install(app: Any, tap: BatchTap) -> None:
    """Route ``tap.topics`` of ``app`` through ``tap`` (once per app)."""
    app.riskflow_tap = tap


async def _drain_messages(self: Any, fetcher: Any) -> None:  # pragma: no cover - runs in the worker
    tap: BatchTap | None = getattr(self.app, "riskflow_tap", None)
    if tap is None:
        return await _original_drain(self, fetcher)
    callback = self.callback
    consumer_should_stop = self._stopped.is_set
    fetcher_should_stop = fetcher._stopped.is_set
    read_offset = self._read_offset
    acks_enabled_for = self.app.topics.acks_enabled_for
    tap_topics = tap.topics
    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            generation = self.app.consumer_generation_id
            records, active = await self._wait_next_records(1.0)
            await asyncio.sleep(0)
            if not records or self.should_stop:
                continue
            if not self.flow_active or self.app.consumer_generation_id != generation:
                # A rebalance began: drop what was fetched (not acked, so it is
                # fetched again from the committed offsets).
                await self.perform_seek()
                continue
            buffered = self._buffered_partitions
            batch: list[Any] = []
            spans: list[tuple[Any, list[Any]]] = []
            for tp, recs in records.items():
                if not recs or not (active is None or tp in active or tp in buffered):
                    continue
                self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                if tp.topic in tap_topics:
                    r_offset = read_offset.get(tp)
                    if r_offset is not None:
                        # As Faust: after a seek the read offset is the committed one (>=).
                        if recs[0].offset < r_offset:
                            recs = [r for r in recs if r.offset >= r_offset]
                            if not recs:
                                continue
                        if r_offset and recs[0].offset - r_offset > 1:
                            await self._add_gap(tp, r_offset + 1, recs[0].offset)
                    batch.extend(recs)
                    spans.append((tp, recs))
                    continue
                for rec in recs:  # Faust's own path: one message at a time
                    message = self._to_message(tp, rec)
                    offset = message.offset
                    r_offset = read_offset.get(tp)
                    if r_offset is None or offset >= r_offset:
                        if r_offset and offset - r_offset > 1 and acks_enabled_for(message.topic):
                            await self._add_gap(tp, r_offset + 1, offset)
                        await self.wait_first(callback(message), self.suspend_flow.wait())
                        read_offset[tp] = offset
            if batch:
                await _run_batch(self, tap, batch, spans)
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


async def _run_batch(self: Any, tap: BatchTap, batch: list[Any], spans: list[tuple[Any, list[Any]]]) -> None:
    if not tap.tuned:  # start-up is over: freeze what it built, fewer collector passes
        tap.tuned = True
        tune()
    marker = _InFlight()
    self._unacked_messages.add(marker)
    try:
        await tap.handler(batch)
        # Done and durable: now the offsets may be committed.
        for tp, recs in spans:
            committed = self._committed_offset[tp]
            offsets = [r.offset for r in recs if committed is None or r.offset >= committed]
            if offsets:
                self._acked[tp].extend(offsets)
                self._acked_index[tp].update(offsets)
                self._n_acked += len(offsets)
            self._read_offset[tp] = recs[-1].offset
    finally:
        marker.acked = True
        self._unacked_messages.discard(marker)
        notify(self._waiting_for_ack)
    commit_every = self._commit_every
    if commit_every is not None and self._n_acked >= commit_every:
        self._n_acked = 0
        await self.commit()


_faust_consumer.Consumer._drain_messages = cast(Any, _drain_messages)  # type: ignore[method-assign]
