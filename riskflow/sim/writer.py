"""Write a simulated history: events as JSONL (gzip when the name ends in ``.gz``), labels as JSONL.

>>> import tempfile, os, gzip
>>> from riskflow.sim import generate
>>> d = tempfile.mkdtemp()
>>> n = write_events(generate(20, 30, seed=2).events, os.path.join(d, "e.jsonl.gz"))
>>> n == sum(1 for _ in gzip.open(os.path.join(d, "e.jsonl.gz")))
True
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

_CHUNK = 20_000


def _open(path: str | Path) -> BinaryIO:
    p = Path(path)
    if p.suffix == ".gz":
        return gzip.open(p, "wb", compresslevel=3)  # type: ignore[return-value]
    return open(p, "wb")


def write_events(events: Iterable[tuple[int, dict[str, Any]]], path: str | Path) -> int:
    """Encode and write events in chunks; returns the count."""
    enc = msgspec.json.Encoder()
    n = 0
    chunk: list[dict[str, Any]] = []
    with _open(path) as f:
        for _, ev in events:
            chunk.append(ev)
            if len(chunk) >= _CHUNK:
                f.write(enc.encode_lines(chunk))
                n += len(chunk)
                chunk.clear()
        f.write(enc.encode_lines(chunk))
        n += len(chunk)
    return n


def write_labels(labels: Iterable[dict[str, Any]], path: str | Path) -> int:
    enc = msgspec.json.Encoder()
    n = 0
    with _open(path) as f:
        for lab in labels:
            f.write(enc.encode(lab) + b"\n")
            n += 1
    return n
