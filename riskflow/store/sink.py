"""The alert sink: ``riskflow.alerts`` -> the alert store, at least once, idempotently.

The sink reads a batch, upserts it in one database transaction and only then
commits the batch's consumer offsets. A crash between the two re-delivers the
batch, which the upsert-by-id turns into a no-op: no alert is lost, none is
stored twice. A database that is down is retried (the offsets wait with it).

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
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import CommitFailedError, KafkaError

from riskflow.core.alerts import decode_alert
from riskflow.core.textsafe import bounded
from riskflow.store.base import AlertStore, BatchResult, Incoming, error_class_name
from riskflow.store.metrics import StoreMetrics

log = logging.getLogger(__name__)


@dataclass
class SinkStats:
    """What a sink run did.

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


def decode_message(raw: bytes | None, source: str) -> Incoming:
    """A message of the alerts topic as the store takes it: decoded, or why it is not an alert.

    >>> decode_message(b"{not json", "riskflow.alerts/0@7").error_class
    'msgspec.DecodeError'
    """
    if raw is None:
        return Incoming(b"", None, source, "", "a message without a value")
    try:
        return Incoming(raw, decode_alert(raw), source)
    except Exception as e:  # whatever the bytes, the message is ledgered, never fatal
        return Incoming(raw, None, source, error_class_name(e), str(e))


async def run_sink(
    store: AlertStore,
    bootstrap: str | dict[str, Any],
    topic: str,
    group_id: str,
    *,
    stop: asyncio.Event,
    on_change: Callable[[list[str]], None] | None = None,
    session_timeout: float = 10.0,
    max_batch: int = 1000,
    retry_delay: float = 1.0,
    snooze_check_every: float = 30.0,
    stats: SinkStats | None = None,
    metrics: StoreMetrics | None = None,
) -> SinkStats:
    """Consume ``topic`` into ``store`` until ``stop`` is set; see the module doc.
    ``metrics``: counted per batch (riskflow/store/metrics.py)."""
    st = stats or SinkStats()
    # ``bootstrap`` may be the full client config (riskflow.core.kafka.client_config: SASL/TLS).
    kafka = bootstrap if isinstance(bootstrap, dict) else {"bootstrap_servers": bootstrap}
    consumer = AIOKafkaConsumer(
        topic,
        **kafka,
        group_id=group_id,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
        session_timeout_ms=int(session_timeout * 1000),
        heartbeat_interval_ms=max(100, int(session_timeout * 1000) // 4),
    )
    await consumer.start()
    log.info("alert sink: %s -> %s (group %s)", topic, store.dialect.describe(), group_id)
    next_snooze_check = 0.0
    try:
        while not stop.is_set():
            if time.monotonic() >= next_snooze_check:
                next_snooze_check = time.monotonic() + snooze_check_every
                try:
                    reopened = await asyncio.to_thread(store.expire_snoozes)
                except Exception as e:  # the database is down: the next check tries again
                    log.error("alert sink: snooze expiry failed (%s: %s)", type(e).__name__, bounded(str(e), 500))
                    next_snooze_check = time.monotonic() + retry_delay
                    reopened = []
                if reopened and on_change:
                    on_change(reopened)
            batches = await consumer.getmany(timeout_ms=200, max_records=max_batch)
            if not batches:
                continue
            items = [
                decode_message(m.value, f"{tp.topic}/{tp.partition}@{m.offset}")
                for tp, msgs in batches.items()
                for m in msgs
            ]
            invalid = sum(it.alert is None for it in items)
            st.received += len(items) - invalid
            st.batches += 1
            if invalid:
                st.invalid += invalid
                if metrics is not None:
                    metrics.invalid.inc(invalid)
            result = await _store_with_retry(store, items, stop, retry_delay, st, metrics)
            if result is None:  # stopping while the database is down: offsets stay uncommitted
                break
            changed = result.changed
            st.changed += len(changed)
            if result.rejects:
                st.rejected += len(result.rejects)
                _log_rejects(result, topic)
            if changed and on_change:
                on_change(changed)
            try:
                await consumer.commit()
                st.commits += 1
            except (CommitFailedError, KafkaError) as e:  # a rebalance: the batch comes again, harmlessly
                log.warning("alert sink: offset commit failed (%s); the batch will be re-delivered", e)
    finally:
        await consumer.stop()
    return st


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


async def _store_with_retry(
    store: AlertStore,
    items: Sequence[Incoming],
    stop: asyncio.Event,
    delay: float,
    st: SinkStats,
    metrics: StoreMetrics | None = None,
) -> BatchResult | None:
    """Write the batch until it is written (the store itself failing is retried) or ``stop``."""
    while True:
        try:
            started = time.perf_counter()
            result = await asyncio.to_thread(store.write_batch, items)
            if metrics is not None:
                refused = sum(r.reason != "undecodable" for r in result.rejects)
                stored = sum(it.alert is not None for it in items) - refused
                metrics.wrote(alerts=stored, changed=len(result.changed), seconds=time.perf_counter() - started)
                for r in result.rejects:
                    metrics.rejected.labels(reason=r.reason).inc()
            return result
        except Exception as e:
            st.store_errors += 1
            if metrics is not None:
                metrics.write_errors.inc()
            log.error(
                "alert sink: store write failed (%s: %s); retrying in %.1fs",
                type(e).__name__,
                bounded(str(e), 500),
                delay,
            )
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
                return None
            except TimeoutError:
                delay = min(delay * 2, 30.0)
