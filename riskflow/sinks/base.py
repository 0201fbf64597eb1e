"""The sink interface and the one consumer loop every alert sink runs in.

:func:`consume` reads the alerts topic, decodes each message (an alert, or why it is not
one: :func:`decode_message`), hands each fetched batch to the sink's :meth:`Sink.handle`
and, for a sink in a consumer group, commits the batch's offsets only after ``handle``
says the batch is handled. It stops when ``stop`` is set. A sink implements only what
is its own: what to do with a batch, what to do on every poll (:meth:`Sink.tick`), and
how it builds itself for the contract tests (:meth:`Sink.example`).

>>> sorted(SINKS)
['store', 'terminal']
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import CommitFailedError, KafkaError

from riskflow.core.alerts import decode_alert
from riskflow.core.registry import Registry
from riskflow.store.base import Incoming, error_class_name

log = logging.getLogger(__name__)

#: name -> class: every module of ``riskflow/sinks/`` is imported on the first read, and each
#: :class:`Sink` subclass with a ``name`` joins as it is defined (riskflow/core/registry.py).
SINKS: Registry[Sink] = Registry("riskflow.sinks", "alert sink")


def decode_message(raw: bytes | None, source: str) -> Incoming:
    """A message of the alerts topic as a sink takes it: decoded, or why it is not an alert.

    >>> decode_message(b"{not json", "riskflow.alerts/0@7").error_class
    'msgspec.DecodeError'
    >>> decode_message(None, "riskflow.alerts/0@8").error
    'a message without a value'
    """
    if raw is None:
        return Incoming(b"", None, source, "", "a message without a value")
    try:
        return Incoming(raw, decode_alert(raw), source)
    except Exception as e:  # whatever the bytes, the message is handed on as undecodable, never fatal
        return Incoming(raw, None, source, error_class_name(e), str(e))


class Sink:
    """Base of every alert sink: what it does with a batch of the alerts topic.

    ``group_id`` set: the sink's consumer group commits the offsets of each handled batch,
    so a restart goes on where it stopped (at least once; a sink is idempotent by
    ``alert_id`` and ``revision``). ``None``: every run reads the topic from the beginning
    and commits nothing. ``label`` starts the sink's log lines.
    """

    name: ClassVar[str] = ""
    label: ClassVar[str] = "alert sink"
    group_id: str | None = None
    session_timeout: float = 10.0
    max_batch: int | None = None

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        SINKS.add(cls.name, cls)

    @classmethod
    def example(cls, workdir: Path) -> Sink:
        """A sink of this kind that writes only under ``workdir``, for the sink contract
        (tests/unit/test_sinks.py; river's ``_unit_test_params`` plays the same part)."""
        raise NotImplementedError(f"{cls.__name__}.example: every sink needs one for the sink contract")

    async def open(self, topic: str) -> None:
        """Called once the consumer has started on ``topic``, before the first batch."""

    async def tick(self) -> None:
        """Called on every poll, with or without messages (periodic work, e.g. snooze expiry)."""

    async def handle(self, batch: Sequence[Incoming]) -> bool:
        """Deal with one batch, undecodable records included (``alert is None``), without
        raising for any record. ``True``: handled, the offsets may be committed; ``False``:
        the sink gave up because it is stopping, and the batch must come again."""
        raise NotImplementedError

    def committed(self) -> None:
        """Called after the offsets of a handled batch were committed."""

    async def close(self) -> None:
        """Called once when the loop ends, whatever the reason."""


async def consume(sink: Sink, bootstrap: str | dict[str, Any], topic: str, *, stop: asyncio.Event | None) -> None:
    """Run ``sink`` over ``topic`` until ``stop`` is set (for ever if ``None``); see the module doc.
    ``bootstrap``: the servers, or the full client config (riskflow.core.kafka.client_config: SASL/TLS)."""
    kafka = bootstrap if isinstance(bootstrap, dict) else {"bootstrap_servers": bootstrap}
    group: dict[str, Any] = {}
    if sink.group_id is not None:
        ms = int(sink.session_timeout * 1000)
        group = {"session_timeout_ms": ms, "heartbeat_interval_ms": max(100, ms // 4)}
    consumer = AIOKafkaConsumer(
        topic,
        **kafka,
        group_id=sink.group_id,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
        **group,
    )
    await consumer.start()
    try:
        await sink.open(topic)
        while stop is None or not stop.is_set():
            await sink.tick()
            batches = await consumer.getmany(timeout_ms=200, max_records=sink.max_batch)
            if not batches:
                continue
            batch = [
                decode_message(m.value, f"{tp.topic}/{tp.partition}@{m.offset}")
                for tp, msgs in batches.items()
                for m in msgs
            ]
            if not await sink.handle(batch):  # stopping before the batch was handled: it stays uncommitted
                break
            if sink.group_id is None:
                continue
            try:
                await consumer.commit()
                sink.committed()
            except (CommitFailedError, KafkaError) as e:  # a rebalance: the batch comes again, harmlessly
                log.warning("%s: offset commit failed (%s); the batch will be re-delivered", sink.label, e)
    finally:
        try:
            await sink.close()
        finally:
            await consumer.stop()
