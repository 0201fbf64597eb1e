"""The store sink: ``riskflow.alerts`` -> the alert store, at least once, idempotently.

The sink takes a batch, upserts it in one database transaction and only then does the
shared loop (riskflow/sinks/base.py) commit the batch's consumer offsets. A crash between
the two re-delivers the batch, which the upsert-by-id turns into a no-op: no alert is
lost, none is stored twice. A database that is down is retried (the offsets wait with it).

A record is not an outage: a message that is no alert, or an alert the database
refuses for its content (a NUL in an id, a number out of range), goes to the
store-rejects ledger (``AlertStore.write_batch``), is counted by reason in
``riskflow_store_rejected_total``, and the batch commits with every other alert
stored. One bad record never holds up the ones after it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from riskflow.core.textsafe import bounded
from riskflow.sinks.base import Sink, consume, decode_message
from riskflow.store.base import AlertStore, BatchResult, Incoming
from riskflow.store.metrics import StoreMetrics

log = logging.getLogger(__name__)

__all__ = ["SinkStats", "StoreSink", "decode_message", "run_sink"]


@dataclass
class SinkStats:
    """What a store sink run did.

    >>> SinkStats().received
    0
    """

    received: int = 0
    changed: int = 0
    invalid: int = 0
    batches: int = 0
    commits: int = 0
    store_errors: int = 0
    rejected: int = 0  # records written to the store-rejects ledger (undecodable ones included)


class StoreSink(Sink):
    """Alerts into an :class:`AlertStore`, in consumer group ``group_id``; see the module doc.

    ``on_change``: called with the ids a batch changed (the feed's live updates);
    ``metrics``: counted per batch (riskflow/store/metrics.py).
    """

    name = "store"

    def __init__(
        self,
        store: AlertStore,
        group_id: str,
        *,
        stop: asyncio.Event | None = None,
        on_change: Callable[[list[str]], None] | None = None,
        session_timeout: float = 10.0,
        max_batch: int = 1000,
        retry_delay: float = 1.0,
        snooze_check_every: float = 30.0,
        stats: SinkStats | None = None,
        metrics: StoreMetrics | None = None,
    ) -> None:
        self.store = store
        self.group_id = group_id
        self.stop = stop or asyncio.Event()
        self.on_change = on_change
        self.session_timeout = session_timeout
        self.max_batch = max_batch
        self.retry_delay = retry_delay
        self.snooze_check_every = snooze_check_every
        self.stats = stats or SinkStats()
        self.metrics = metrics
        self.topic = ""
        self._next_snooze_check = 0.0

    @classmethod
    def example(cls, workdir: Path) -> StoreSink:
        from riskflow.store import open_store

        return cls(open_store(str(workdir / "alerts.sqlite3")), "contract", retry_delay=0.01)

    async def open(self, topic: str) -> None:
        self.topic = topic
        log.info("alert sink: %s -> %s (group %s)", topic, self.store.dialect.describe(), self.group_id)

    async def tick(self) -> None:
        if time.monotonic() < self._next_snooze_check:
            return
        self._next_snooze_check = time.monotonic() + self.snooze_check_every
        try:
            reopened = await asyncio.to_thread(self.store.expire_snoozes)
        except Exception as e:  # the database is down: the next check tries again
            log.error("alert sink: snooze expiry failed (%s: %s)", type(e).__name__, bounded(str(e), 500))
            self._next_snooze_check = time.monotonic() + self.retry_delay
            return
        if reopened and self.on_change:
            self.on_change(reopened)

    async def handle(self, batch: Sequence[Incoming]) -> bool:
        st = self.stats
        invalid = sum(it.alert is None for it in batch)
        st.received += len(batch) - invalid
        st.batches += 1
        if invalid:
            st.invalid += invalid
            if self.metrics is not None:
                self.metrics.invalid.inc(invalid)
        result = await self._store_with_retry(batch)
        if result is None:  # stopping while the database is down: offsets stay uncommitted
            return False
        st.changed += len(result.changed)
        if result.rejects:
            st.rejected += len(result.rejects)
            _log_rejects(result, self.topic)
        if result.changed and self.on_change:
            self.on_change(result.changed)
        return True

    def committed(self) -> None:
        self.stats.commits += 1

    async def close(self) -> None:
        """The store stays open: it belongs to whoever passed it in."""

    async def _store_with_retry(self, items: Sequence[Incoming]) -> BatchResult | None:
        """Write the batch until it is written (the store itself failing is retried) or ``stop``."""
        delay, metrics = self.retry_delay, self.metrics
        while True:
            try:
                started = time.perf_counter()
                result = await asyncio.to_thread(self.store.write_batch, items)
                if metrics is not None:
                    refused = sum(r.reason != "undecodable" for r in result.rejects)
                    stored = sum(it.alert is not None for it in items) - refused
                    metrics.wrote(alerts=stored, changed=len(result.changed), seconds=time.perf_counter() - started)
                    for r in result.rejects:
                        metrics.rejected.labels(reason=r.reason).inc()
                return result
            except Exception as e:
                self.stats.store_errors += 1
                if metrics is not None:
                    metrics.write_errors.inc()
                log.error(
                    "alert sink: store write failed (%s: %s); retrying in %.1fs",
                    type(e).__name__,
                    bounded(str(e), 500),
                    delay,
                )
                try:
                    await asyncio.wait_for(self.stop.wait(), timeout=delay)
                    return None
                except TimeoutError:
                    delay = min(delay * 2, 30.0)


def _log_rejects(result: BatchResult, topic: str) -> None:
    first = result.rejects[0]
    reasons = Counter(r.reason for r in result.rejects)
    log.warning(
        "alert sink: %d records on %s to the store-rejects ledger (%s); first: %s id %s (%s: %s)",
        len(result.rejects),
        topic,
        ", ".join(f"{k} {v}" for k, v in sorted(reasons.items())),
        first.source,
        first.alert_id,
        first.error_class,
        first.error[:200],
    )


async def run_sink(
    store: AlertStore,
    bootstrap: str | dict[str, Any],
    topic: str,
    group_id: str,
    *,
    stop: asyncio.Event,
    **options: Any,
) -> SinkStats:
    """Consume ``topic`` into ``store`` until ``stop`` is set: a :class:`StoreSink` (``options``:
    its keyword arguments, e.g. ``on_change``, ``metrics``, ``stats``) in the shared loop."""
    sink = StoreSink(store, group_id, stop=stop, **options)
    await consume(sink, bootstrap, topic, stop=stop)
    return sink.stats
