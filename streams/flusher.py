"""The state flusher: the batch tap's :class:`~streams.batchtap.Flusher` for entity states.

The entity states a batch changed stay dirty in process (``streams/statecache.py``: for this
worker they are the truth). A flush writes them to the table's changelog — one record per
changed entity per flush, encoded between batches, sent straight to the producer and awaited
behind the next batches (``streams/batchtap.py``) — and only once that write has landed are the
offsets of the batches it covers acknowledged. The table's bytes are written only once the
changelog acknowledged them, so they never hold a state the changelog lacks.

A flush is encoded in slices (:data:`SLICE` states, or as many as the batch before them had
events), one after each batch or idle turn of the batch tap's fetch loop
(:meth:`StateFlusher.step`), so that the ~1,500 states a second
of a 2,000 events/s stream (~23 µs each) do not stop the stream for tens of ms at once: a
batch fetched meanwhile waits one slice at most. A state encoded in a later slice holds the
batches processed since the flush began too — each of them finished, its alerts delivered —
and is ahead of the offsets the flush acknowledges, which a state allows (an event read
again is skipped by the offsets its entity's state records, ``already_applied``).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, MutableMapping

from detectors.engine import EntityState, encode_state
from riskflow.core.metrics import Metrics
from streams.emitter import Out, OutputRouter, deliver
from streams.statecache import StateCache

log = logging.getLogger(__name__)

#: States encoded per slice of a flush: ~3 ms of CPU at ~23 µs a state (bench/latency.py).
SLICE = 128


class StateFlusher:
    """Writes the dirty states of ``cache`` to ``changelog`` (and then into ``store``, the
    table's bytes), through ``router``'s producer.

    >>> from streams.emitter import OutputRouter
    >>> router = OutputRouter(object, alerts="a", shadow_alerts=None, links="l", deadletter="d", late=None)
    >>> flusher = StateFlusher(StateCache(10), {}, router, "entity-state-changelog", None)
    >>> flusher.due(), flusher.start("batch")  # nothing dirty: offsets need not wait, nothing to write
    ('batch', None)
    """

    def __init__(
        self,
        cache: StateCache,
        store: MutableMapping[bytes, bytes],
        router: OutputRouter,
        changelog: str,
        metrics: Metrics | None,
    ) -> None:
        self.cache = cache
        self.store = store
        self.router = router
        self.changelog = changelog
        self.metrics = metrics
        self._encode_slice: Callable[[int], None] | None = None  # of the write in flight, while a slice is left

    def due(self) -> str | None:
        # Nothing dirty: every pending batch's states are written (or it changed none,
        # e.g. all dead letters), so its offsets need not wait.
        return self.cache.due() if self.cache.dirty else "batch"

    def start(self, reason: str) -> Awaitable[None] | None:
        """Take the dirty states, encode a first slice of them now, and return their write
        (None: nothing to write); the batch tap encodes the rest a slice at a time between
        batches (:meth:`step`), or at once (:meth:`finish`) before it waits for the write.

        Called between batches, so every slice holds the events of processed batches only,
        whose alerts are delivered; the batches after it may change the same objects
        while the write is in flight (they are dirty again then, for the next flush)."""
        cache = self.cache
        if not cache.dirty:
            return None
        self.finish()  # (the tap lands one flush before it starts the next)
        epoch = cache.epoch
        taken = cache.take()
        rest = list(taken.items())
        queued: list[list[Out]] = []  # encoded slices, their sends not started yet
        written: list[Out] = []
        progress = asyncio.Event()  # a slice was encoded (or the states dropped)
        dropped = False

        def encode_slice(size: int = SLICE) -> None:
            nonlocal dropped
            if cache.epoch != epoch:  # dropped meanwhile (a failed batch, a rebalance): not written
                rest.clear()
                dropped = True
            else:
                part = rest[-size:]
                del rest[-size:]
                encoded = self.encoded(part, taken)
                written.extend(encoded)
                queued.append(encoded)
            progress.set()
            if not rest:
                self._encode_slice = None

        self._encode_slice = encode_slice
        encode_slice(SLICE)
        changelog = self.changelog

        async def write() -> None:
            # States go straight to the producer and are awaited: durable before the offsets
            # they cover can be committed. (Table.send_changelog queues each record in Faust's
            # producer buffer, drained one message at a time, and stalls the stream whenever
            # 100 are pending; bench/pipeline.py measured it.)
            deliveries: list[asyncio.Future[None]] = []
            try:
                while True:
                    while queued:
                        sends = self.router.sends(queued.pop(0))
                        deliveries.append(asyncio.ensure_future(deliver(sends, "entity states")))
                    if not rest:
                        break
                    progress.clear()
                    await progress.wait()
                if dropped:
                    raise asyncio.CancelledError  # its offsets are not acknowledged: read again
                await asyncio.gather(*deliveries)
            except BaseException:
                for d in deliveries:
                    d.cancel()
                raise
            store = self.store
            for _, key, value, _ in written:  # the table's bytes only once the changelog has them
                store[key] = value  # type: ignore[index]  # (state records are keyed)
            cache.written(taken, epoch)
            self.router.count(changelog, len(written))
            if self.metrics is not None:
                self.metrics.state_flushes.labels(reason=reason).inc()
                self.metrics.states_written.inc(len(written))

        return write()

    def step(self, batch: int = 0) -> None:
        """Encode the next slice of the write in flight, if any is left (between batches): the
        larger of :data:`SLICE` and ``batch``, the size of the batch just handled — a slice then
        costs about half of that batch (~23 µs a state, ~46 µs an event), and a backlog's
        large batches finish a flush in a step or two, its write still landing behind them."""
        if self._encode_slice is not None:
            self._encode_slice(max(SLICE, batch))

    def finish(self) -> None:
        """Encode what is left of the write in flight, if any, at once (between batches: before
        the batch tap waits for that write to land, or starts the next flush). A write whose
        states were dropped meanwhile ends cancelled, its offsets unacknowledged."""
        while self._encode_slice is not None:
            self._encode_slice(sys.maxsize)  # all that is left

    def encoded(
        self, part: list[tuple[str, tuple[EntityState, int]]], taken: dict[str, tuple[EntityState, int]]
    ) -> list[Out]:
        """The changelog records of ``part`` (entity id, (state, partition)) of ``taken``."""
        changelog = self.changelog
        try:
            return [(changelog, eid.encode(), encode_state(state), partition) for eid, (state, partition) in part]
        except Exception:
            return self.encodable(dict(part), taken)

    def discard(self) -> None:
        self.cache.clear()

    def encodable(
        self, part: dict[str, tuple[EntityState, int]], taken: dict[str, tuple[EntityState, int]]
    ) -> list[Out]:
        """The records of the states of ``part`` that encode. A state that does not (a detector
        put a value msgpack cannot hold in it: a bug) is not written, leaves ``taken`` and is
        dropped from memory, so the entity goes on from its last written state; raising here
        instead would stop the worker at every restart."""
        out: list[Out] = []
        for eid, (state, partition) in part.items():
            try:
                out.append((self.changelog, eid.encode(), encode_state(state), partition))
            except Exception as exc:
                log.error(
                    "entity %s: its state cannot be encoded (%r); not written, it goes on from its last written state",
                    eid,
                    exc,
                )
                del taken[eid]
                self.cache.drop(eid)
        return out
