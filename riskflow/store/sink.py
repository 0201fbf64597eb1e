"""The alert sink: ``riskflow.alerts`` -> the alert store, at least once, idempotently.

The sink reads a batch, upserts it in one database transaction and only then
commits the batch's consumer offsets. A crash between the two re-delivers the
batch, which the upsert-by-id turns into a no-op: no alert is lost, none is
stored twice. A database that is down is retried (the offsets wait with it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import CommitFailedError, KafkaError

from riskflow.alerts import Alert, decode_alert
from riskflow.store.base import AlertStore
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
    # ``bootstrap`` may be the full client config (riskflow.kafka.client_config: SASL/TLS).
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
                reopened = await asyncio.to_thread(store.expire_snoozes)
                if reopened and on_change:
                    on_change(reopened)
                next_snooze_check = time.monotonic() + snooze_check_every
            batches = await consumer.getmany(timeout_ms=200, max_records=max_batch)
            if not batches:
                continue
            alerts: list[Alert] = []
            invalid = 0
            for msgs in batches.values():
                for m in msgs:
                    try:
                        alerts.append(decode_alert(m.value))
                    except (msgspec.DecodeError, msgspec.ValidationError, TypeError):
                        invalid += 1
            st.received += len(alerts)
            st.batches += 1
            if invalid:
                st.invalid += invalid
                if metrics is not None:
                    metrics.invalid.inc(invalid)
                log.warning("alert sink: skipped %d undecodable messages on %s", invalid, topic)
            changed = await _store_with_retry(store, alerts, stop, retry_delay, st, metrics)
            if changed is None:  # stopping while the database is down: offsets stay uncommitted
                break
            st.changed += len(changed)
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


async def _store_with_retry(
    store: AlertStore,
    alerts: list[Alert],
    stop: asyncio.Event,
    delay: float,
    st: SinkStats,
    metrics: StoreMetrics | None = None,
) -> list[str] | None:
    while True:
        try:
            started = time.perf_counter()
            changed = await asyncio.to_thread(store.upsert_alerts, alerts)
            if metrics is not None:
                metrics.wrote(alerts=len(alerts), changed=len(changed), seconds=time.perf_counter() - started)
            return changed
        except Exception as e:
            st.store_errors += 1
            if metrics is not None:
                metrics.write_errors.inc()
            log.error("alert sink: store write failed (%s: %s); retrying in %.1fs", type(e).__name__, e, delay)
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
                return None
            except TimeoutError:
                delay = min(delay * 2, 30.0)
