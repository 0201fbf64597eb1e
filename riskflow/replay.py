"""Replay an event file into the input topics, in event-time order, at any speed.

Each line is sent unchanged (a malformed line too: the worker dead-letters
it), keyed by ``entity_id``, to the fund or institution topic by
``entity_kind``. ``speed`` is event-time seconds per wall-clock second
(``None``: as fast as possible). Replaying never changes which alerts fire:
detectors run on event time.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
from aiokafka import AIOKafkaProducer

from riskflow.schema import topic_role
from riskflow.settings import Settings

log = logging.getLogger(__name__)


class _Head(msgspec.Struct):
    entity_id: str = ""
    entity_kind: str = ""
    event_time: str = ""


_head = msgspec.json.Decoder(_Head)


@dataclass(frozen=True)
class Routed:
    topic: str
    key: bytes | None
    value: bytes
    ts: float | None  # event time, POSIX seconds; None when unreadable


def read_lines(path: str | Path) -> Iterator[bytes]:
    p = Path(path)
    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rb") as f:
        for line in f:
            line = line.rstrip(b"\r\n")
            if line:
                yield line


def route(lines: Iterable[bytes], settings: Settings) -> Iterator[Routed]:
    import datetime as _dt

    for line in lines:
        try:
            h = _head.decode(line)
            ts: float | None = _dt.datetime.fromisoformat(h.event_time).timestamp() if h.event_time else None
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
            yield Routed(settings.topic_institution_events, None, line, None)
            continue
        topic = settings.topic_fund_events if topic_role(h.entity_kind) == "fund" else settings.topic_institution_events
        yield Routed(topic, h.entity_id.encode() or None, line, ts)


async def produce(
    records: Iterable[Routed],
    bootstrap: str,
    speed: float | None = None,
    on_sent: callable | None = None,  # type: ignore[valid-type]
) -> int:
    """Send records, pacing them by event time when ``speed`` is given. Returns the count."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    n = 0
    t0: float | None = None
    w0 = time.monotonic()
    try:
        for rec in records:
            if speed and rec.ts is not None:
                if t0 is None:
                    t0, w0 = rec.ts, time.monotonic()
                ahead = (rec.ts - t0) / speed - (time.monotonic() - w0)
                if ahead > 0.002:
                    await producer.flush()
                    await asyncio.sleep(ahead)
            await producer.send(rec.topic, rec.value, key=rec.key)
            n += 1
            if on_sent is not None:
                on_sent(n)
        await producer.flush()
    finally:
        await producer.stop()
    return n


def parse_speed(text: str) -> float | None:
    if text == "max":
        return None
    v = float(text)
    if v <= 0:
        raise ValueError("speed must be > 0 or 'max'")
    return v
