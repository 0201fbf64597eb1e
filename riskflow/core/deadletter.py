"""The dead-letter record: a rejected message with its reason and where it came from.

The original message is kept once — as text when it is valid UTF-8, else as base64 — and cut to
at most ``limit`` bytes of JSON (by default the largest event accepted,
:data:`riskflow.core.schema.DEFAULT_MAX_BYTES`), with its full length and SHA-256 digest, so that a
dead letter always fits what a Kafka broker accepts (1 MB by default) whatever came in.
:func:`original_bytes` gives the kept bytes back.

>>> rec = dead_letter(b"{oops", "malformed_json", "truncated", "t", 0, 7, b"PF-1")
>>> rec["reason"], rec["offset"], rec["original"], rec["truncated"]
('malformed_json', 7, '{oops', False)
>>> big = dead_letter(b"x" * 100_000, "oversized", "too big", "t", 0, 8, None, limit=1000)
>>> len(big["original"]), big["original_bytes"], big["truncated"]
(998, 100000, True)
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import msgspec

from riskflow.core.alerts import utc_now_iso
from riskflow.core.schema import DEFAULT_MAX_BYTES

DEADLETTER_SCHEMA = "riskflow.deadletter/v1"
#: Longest ``detail`` and ``key`` kept (characters); a reason's detail is a line, not a payload.
MAX_DETAIL = 2048
MAX_KEY = 1024

_json = msgspec.json.Encoder()


def dead_letter(
    value: bytes,
    reason: str,
    detail: str,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    *,
    limit: int = DEFAULT_MAX_BYTES,
) -> dict[str, Any]:
    """A JSON-ready record: ``original`` (text) or ``original_b64`` (when the bytes are not
    UTF-8) holds the message, cut to ``limit`` bytes of JSON when it is larger
    (``truncated``); ``original_bytes`` and ``original_sha256`` describe the whole of it."""
    value = bytes(value)
    rec: dict[str, Any] = {
        "schema": DEADLETTER_SCHEMA,
        "reason": reason,
        "detail": detail[:MAX_DETAIL],
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "key": key.decode("utf-8", "replace")[:MAX_KEY] if key is not None else None,
        "original_bytes": len(value),
        "original_sha256": hashlib.sha256(value).hexdigest(),
        "truncated": False,
        "rejected_at": utc_now_iso(),
    }
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        kept = value[: max(0, limit - 2) // 4 * 3]
        rec["original_b64"] = base64.b64encode(kept).decode("ascii")
        rec["truncated"] = len(kept) < len(value)
        return rec
    size = len(_json.encode(text))
    if size > limit:
        # JSON escapes can make text longer than its bytes: cut in proportion, then shrink
        # until it fits (a few rounds at most).
        cut = len(value) * max(0, limit - 2) // max(1, size - 2)
        while True:
            text = value[:cut].decode("utf-8", "ignore")
            if len(_json.encode(text)) <= limit or cut == 0:
                break
            cut = cut * 9 // 10
        rec["truncated"] = True
    rec["original"] = text
    return rec


def original_bytes(rec: dict[str, Any]) -> bytes:
    """The bytes of the original message a dead letter kept (all of them unless ``truncated``)."""
    if rec.get("original_b64") is not None:
        return base64.b64decode(rec["original_b64"])
    return str(rec.get("original") or "").encode("utf-8")


def encode_dead_letter(rec: dict[str, Any]) -> bytes:
    return _json.encode(rec)
