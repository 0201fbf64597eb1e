"""The state flusher: the batch tap's :class:`~streams.batchtap.Flusher` for entity states.

The entity states a batch changed stay dirty in process (``streams/statecache.py``: for this
worker they are the truth). A flush writes them to the table's changelog — one record per
changed entity per flush, encoded at once, sent straight to the producer and awaited behind
the next batches (``streams/batchtap.py``) — and only once that write has landed are the
offsets of the batches it covers acknowledged. The table's bytes are written only once the
changelog acknowledged them, so they never hold a state the changelog lacks.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, MutableMapping

from detectors.engine import EntityState, encode_state
from riskflow.core.metrics import Metrics
from streams.emitter import Out, OutputRouter, deliver
from streams.statecache import StateCache

log = logging.getLogger(__name__)


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

    def due(self) -> str | None:
        # Nothing dirty: every pending batch's states are written (or it changed none,
        # e.g. all dead letters), so its offsets need not wait.
        return self.cache.due() if self.cache.dirty else "batch"

    def start(self, reason: str) -> Awaitable[None] | None:
        """Encode the dirty states now and return their write (None: nothing to write).

        Called between batches, so the bytes hold the events of processed batches only,
        whose alerts are delivered; the batches after it may change the same objects
        while the write is in flight (they are dirty again then, for the next flush)."""
        cache = self.cache
        if not cache.dirty:
            return None
        epoch = cache.epoch
        taken = cache.take()
        changelog = self.changelog
        # States go straight to the producer and are awaited: durable before the offsets
        # they cover can be committed. (Table.send_changelog queues each record in Faust's
        # producer buffer, drained one message at a time, and stalls the stream whenever
        # 100 are pending; bench/pipeline.py measured it.)
        try:
            encoded: list[Out] = [
                (changelog, eid.encode(), encode_state(state), partition) for eid, (state, partition) in taken.items()
            ]
        except Exception:
            encoded = self.encodable(taken)
        sends = self.router.sends(encoded)

        async def write() -> None:
            await deliver(sends, "entity states")
            store = self.store
            for _, key, value, _ in encoded:  # the table's bytes only once the changelog has them
                store[key] = value  # type: ignore[index]  # (state records are keyed)
            cache.written(taken, epoch)
            self.router.count(changelog, len(encoded))
            if self.metrics is not None:
                self.metrics.state_flushes.labels(reason=reason).inc()
                self.metrics.states_written.inc(len(encoded))

        return write()

    def discard(self) -> None:
        self.cache.clear()

    def encodable(self, taken: dict[str, tuple[EntityState, int]]) -> list[Out]:
        """The records of the states that encode. A state that does not (a detector put a value
        msgpack cannot hold in it: a bug) is not written and is dropped from memory, so the
        entity goes on from its last written state; raising here instead would stop the worker
        at every restart."""
        out: list[Out] = []
        for eid, (state, partition) in list(taken.items()):
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
