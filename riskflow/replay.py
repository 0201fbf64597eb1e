"""Replay an event file into the input topics, in event-time order, at any speed.

Input: JSONL (one event per line) or CSV (layout below), either optionally
gzip-compressed (``.gz``). Each event is sent unchanged (a malformed line too:
the worker dead-letters it), keyed by ``entity_id``, to the fund or the
institution topic by ``entity_kind``. ``speed`` is event-time seconds per
wall-clock second (``None``: as fast as possible); pacing keeps the relative
spacing of event times. Replaying never changes which alerts fire: detectors
run on event time.

CSV layout: a header row, then one event per row, with the columns
``event_id, event_type, entity_id, entity_kind, region, event_time, source,
payload`` (any order; an optional ``schema`` column, default
``riskflow.event/v1``); ``payload`` holds the payload as a JSON object.

Resuming: every few thousand events the producer is flushed (the broker has
acknowledged everything sent) and the number of input lines done is written
to a checkpoint file; ``--resume`` skips them. Events sent after the last
checkpoint may be sent twice; the worker drops them as duplicates by
``event_id``.

>>> import tempfile, os
>>> p = os.path.join(tempfile.mkdtemp(), "e.csv")
>>> _ = open(p, "w").write('event_id,event_type,entity_id,entity_kind,region,event_time,source,payload\\n'
...     'e1,amac.notice,PF-1,private_fund,330100,2025-01-01T10:00:00+08:00,amac,"{""notice"": ""lost_contact""}"\\n')
>>> [msgspec.json.decode(x)["payload"] for x in read_events(p)]
[{'notice': 'lost_contact'}]
"""

from __future__ import annotations

import asyncio
import csv
import datetime as _dt
import gzip
import io
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import msgspec

from riskflow.core.schema import SCHEMA_ID, topic_role
from riskflow.core.settings import Settings

log = logging.getLogger(__name__)

CSV_COLUMNS = ("event_id", "event_type", "entity_id", "entity_kind", "region", "event_time", "source", "payload")


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
    index: int = 0  # 1-based number of the input line (for checkpoints)


class EventFile:
    """An event file (JSONL or CSV, optionally gzip) read line by line, with its read position."""

    def __init__(self, path: str | Path, fmt: str | None = None) -> None:
        self.path = Path(path)
        name = self.path.name[:-3] if self.path.name.endswith(".gz") else self.path.name
        self.format = fmt or ("csv" if name.endswith(".csv") else "jsonl")
        self.size = self.path.stat().st_size
        self._raw: IO[bytes] | None = None

    def position(self) -> int:
        """Bytes of the (compressed) file consumed so far."""
        try:
            return self._raw.tell() if self._raw is not None else 0
        except (OSError, ValueError):
            return self.size

    def __iter__(self) -> Iterator[bytes]:
        with open(self.path, "rb") as raw:
            self._raw = raw
            f: IO[bytes] = gzip.GzipFile(fileobj=raw) if self.path.suffix == ".gz" else raw  # type: ignore[assignment]
            if self.format == "csv":
                yield from _csv_lines(io.TextIOWrapper(f, encoding="utf-8", newline=""))
            else:
                for line in f:
                    line = line.rstrip(b"\r\n")
                    if line:
                        yield line


def _csv_lines(text: IO[str]) -> Iterator[bytes]:
    reader = csv.DictReader(text)
    missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"CSV header lacks column(s): {', '.join(missing)}")
    enc = msgspec.json.Encoder()
    for row in reader:
        obj: dict[str, Any] = {"schema": row.get("schema") or SCHEMA_ID}
        for c in CSV_COLUMNS[:-1]:
            obj[c] = row[c]
        obj["payload"] = msgspec.Raw((row["payload"] or "{}").encode())
        yield enc.encode(obj)


def read_events(path: str | Path, fmt: str | None = None) -> Iterator[bytes]:
    """Every event of a JSONL or CSV file (gzip when it ends in ``.gz``) as one JSON line."""
    return iter(EventFile(path, fmt))


def read_lines(path: str | Path) -> Iterator[bytes]:
    """Lines of a JSONL(.gz) file (kept for callers of the first version)."""
    return read_events(path, "jsonl")


def parse_time(text: str) -> float:
    """RFC 3339 or a date (midnight, UTC+8) as POSIX seconds."""
    if len(text) == 10:
        text += "T00:00:00+08:00"
    t = _dt.datetime.fromisoformat(text)
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.timezone(_dt.timedelta(hours=8)))
    return t.timestamp()


def route(
    lines: Iterable[bytes],
    settings: Settings,
    *,
    start: float | None = None,
    end: float | None = None,
    skip: int = 0,
) -> Iterator[Routed]:
    """Topic and key of each line; keeps events with ``start <= event_time < end``; skips the first ``skip`` lines."""
    fund, inst = settings.topic_fund_events, settings.topic_institution_events
    sliced = start is not None or end is not None
    for i, line in enumerate(lines, 1):
        if i <= skip:
            continue
        try:
            h = _head.decode(line)
            ts: float | None = _dt.datetime.fromisoformat(h.event_time).timestamp() if h.event_time else None
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError, ArithmeticError, RecursionError):
            # Not an event the worker will accept (it dead-letters it with the reason): sent
            # as it is, unkeyed; a line nested too deep for the decoder's stack included.
            h, ts = _Head(), None
        if sliced and (ts is None or (start is not None and ts < start) or (end is not None and ts >= end)):
            continue
        topic = fund if topic_role(h.entity_kind) == "fund" else inst
        yield Routed(topic, h.entity_id.encode() or None, line, ts, i)


@dataclass
class Checkpoint:
    """Input lines acknowledged by the broker, saved as JSON next to the replay."""

    path: Path
    file: str
    size: int
    lines_done: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def save(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        doc = {"file": self.file, "size": self.size, "lines_done": self.lines_done, **self.extra}
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, self.path)

    @classmethod
    def load(cls, path: Path, file: str, size: int) -> Checkpoint:
        doc = json.loads(path.read_text())
        if doc.get("size") != size:
            raise ValueError(f"checkpoint {path} was written for a different file ({doc.get('file')})")
        return cls(path, file, size, int(doc["lines_done"]))


class Progress:
    """A progress line on stderr: share done, events, rate and ETA (``\\r``-updated on a terminal)."""

    def __init__(self, source: EventFile | None, stream: IO[str] = sys.stderr, every: float = 0.5) -> None:
        self.source = source
        self.stream = stream
        self.tty = stream.isatty()
        self.every = every if self.tty else 5.0
        self.t0 = time.monotonic()
        self.last = 0.0
        self.n = 0

    def update(self, n: int, ts: float | None, force: bool = False) -> None:
        now = time.monotonic()
        self.n = n
        if not force and now - self.last < self.every:
            return
        self.last = now
        el = max(now - self.t0, 1e-9)
        frac = self.source.position() / self.source.size if self.source and self.source.size else None
        bar = ""
        eta = ""
        if frac is not None:
            frac = min(frac, 1.0)
            filled = int(frac * 24)
            bar = f"[{'#' * filled}{'.' * (24 - filled)}] {frac:6.1%} "
            if frac > 0:
                rem = el * (1 - frac) / frac
                eta = f" ETA {int(rem) // 60}:{int(rem) % 60:02d}"
        when = (
            _dt.datetime.fromtimestamp(ts, _dt.timezone(_dt.timedelta(hours=8))).strftime(" @%Y-%m-%d %H:%M")
            if ts
            else ""
        )
        text = f"replay {bar}{n:,} events {n / el:,.0f}/s{eta}{when}"
        self.stream.write(("\r" + text + "\x1b[K") if self.tty else text + "\n")
        self.stream.flush()

    def close(self) -> None:
        self.update(self.n, None, force=True)
        if self.tty:
            self.stream.write("\n")


async def produce(
    records: Iterable[Routed],
    bootstrap: str | dict[str, Any],
    speed: float | None = None,
    on_sent: Callable[[int], None] | None = None,
    *,
    checkpoint: Checkpoint | None = None,
    progress: Progress | None = None,
    stop: asyncio.Event | None = None,
    flush_every: int = 5000,
) -> int:
    """Send records, pacing them by event time when ``speed`` is given. Returns the count sent.

    With a ``checkpoint``, the producer is flushed every ``flush_every`` records
    (and at the end, or when ``stop`` is set) and the checkpoint saved with the
    last input line the broker has acknowledged.
    """
    from aiokafka import AIOKafkaProducer

    # ``bootstrap``: host:port list, or the full client config (riskflow.core.kafka.client_config: SASL/TLS)
    kafka = bootstrap if isinstance(bootstrap, dict) else {"bootstrap_servers": bootstrap}
    producer = AIOKafkaProducer(**kafka, linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    n = 0
    t0: float | None = None
    high = float("-inf")
    w0 = time.monotonic()
    last_index = checkpoint.lines_done if checkpoint else 0
    last_ts: float | None = None

    async def commit() -> None:
        await producer.flush()
        if checkpoint is not None and last_index > checkpoint.lines_done:
            checkpoint.lines_done = last_index
            checkpoint.save()

    try:
        for rec in records:
            if stop is not None and stop.is_set():
                break
            if speed and rec.ts is not None:
                if t0 is None:
                    t0, w0 = rec.ts, time.monotonic()
                if rec.ts > high:
                    high = rec.ts
                ahead = (high - t0) / speed - (time.monotonic() - w0)
                if ahead > 0.002:
                    await commit()
                    if stop is not None:
                        try:
                            await asyncio.wait_for(stop.wait(), ahead)
                            break
                        except TimeoutError:
                            pass
                    else:
                        await asyncio.sleep(ahead)
            await producer.send(rec.topic, rec.value, key=rec.key)
            n += 1
            last_index = rec.index
            if rec.ts is not None:
                last_ts = rec.ts
            if on_sent is not None:
                on_sent(n)
            if checkpoint is not None and n % flush_every == 0:
                await commit()
            if progress is not None and n % 256 == 0:
                progress.update(n, last_ts)
        await commit()
    finally:
        await producer.stop()
        if progress is not None:
            progress.update(n, last_ts, force=True)
    return n


def parse_speed(text: str) -> float | None:
    if text == "max":
        return None
    v = float(text)
    if v <= 0:
        raise ValueError("speed must be > 0 or 'max'")
    return v
