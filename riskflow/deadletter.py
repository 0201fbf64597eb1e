"""The dead-letter record: a rejected message with its reason and where it came from.

>>> rec = dead_letter(b"{oops", "malformed_json", "truncated", "t", 0, 7, b"PF-1")
>>> rec["reason"], rec["offset"], rec["original"]
('malformed_json', 7, '{oops')
"""

from __future__ import annotations

import base64
from typing import Any

import msgspec

from riskflow.alerts import utc_now_iso

DEADLETTER_SCHEMA = "riskflow.deadletter/v1"


def dead_letter(
    value: bytes,
    reason: str,
    detail: str,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
) -> dict[str, Any]:
    """A JSON-ready record. ``original_b64`` always holds the exact bytes;
    ``original`` repeats them as text when they are valid UTF-8."""
    try:
        text: str | None = value.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return {
        "schema": DEADLETTER_SCHEMA,
        "reason": reason,
        "detail": detail,
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "key": key.decode("utf-8", "replace") if key is not None else None,
        "original": text,
        "original_b64": base64.b64encode(value).decode("ascii"),
        "rejected_at": utc_now_iso(),
    }


def encode_dead_letter(rec: dict[str, Any]) -> bytes:
    return msgspec.json.encode(rec)
