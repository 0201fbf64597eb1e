"""The alert record emitted on ``riskflow.alerts`` and its deterministic id.

An alert id depends only on what fired (detector id, entity, and the
detector's own key for the finding), never on wall-clock time, worker or
replay speed: a replay, a restart or a redelivered batch re-creates the same
id, and every sink upserts by it.

>>> alert_id("pf.guaranteed_return", "PF-1", "ev-9") == alert_id("pf.guaranteed_return", "PF-1", "ev-9")
True
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
from typing import Any, Final

import msgspec

ALERT_SCHEMA: Final = "riskflow.alert/v1"
SEVERITIES: Final = ("low", "medium", "high", "critical")


def alert_id(detector_id: str, entity_id: str, key: str) -> str:
    """A 32-hex-digit id from what fired: same finding, same id."""
    raw = f"{detector_id}\x1f{entity_id}\x1f{key}".encode()
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


class Alert(msgspec.Struct, kw_only=True, omit_defaults=False):
    """One officer-facing finding. ``detected_at`` is the only wall-clock field."""

    alert_id: str
    schema: str = ALERT_SCHEMA
    entity_id: str
    entity_kind: str
    region: str
    rule_id: str
    severity: str
    title_zh: str
    title_en: str
    dimension: str = ""
    mode: str = "live"
    evidence: dict[str, Any] = msgspec.field(default_factory=dict)
    event_id: str = ""
    event_time: str
    detected_at: str = ""
    rule_pack_version: str = ""
    model_version: str = ""
    # Risk context (filled by the risk index, detectors/risk): level 风险等级
    # (red/orange/yellow/green), index 风险指数 0-100, tags 风险标签, people
    # affected 影响人数 and CNY involved 影响金额.
    risk_level: str = ""
    risk_index: float = 0.0
    risk_tags: list[str] = msgspec.field(default_factory=list)
    # Which dimensions make up the index and by how many points (dimension -> points,
    # ``contagion`` for what a linked entity adds); they sum to ``risk_index`` within rounding.
    risk_dimensions: dict[str, float] = msgspec.field(default_factory=dict)
    affected_people: int = 0
    affected_amount: float = 0.0
    # Episode folding: the same alert_id is re-emitted with a higher revision as
    # repeated hits fold into it; sinks keep the highest revision.
    revision: int = 1
    episode: dict[str, Any] | None = None

    def to_json(self) -> bytes:
        return msgspec.json.encode(self)


def build_alert(
    rule_id: str,
    entity_id: str,
    key: str,
    *,
    entity_kind: str,
    region: str,
    severity: str,
    title_zh: str,
    title_en: str,
    event_time: str,
    detected_at: str,
    **fields: Any,
) -> Alert:
    """The one place an :class:`Alert` is made: its id from what fired (``rule_id``,
    ``entity_id`` and the finding's ``key``, see :func:`alert_id`), the remaining
    fields as given (``dimension``, ``evidence``, ``event_id``, ``revision`` ...).

    >>> a = build_alert("r", "PF-1", "ev-9", entity_kind="private_fund", region="330100",
    ...                 severity="high", title_zh="t", title_en="t", event_time="", detected_at="")
    >>> a.alert_id == alert_id("r", "PF-1", "ev-9") and a.rule_id == "r"
    True
    """
    return Alert(
        alert_id=alert_id(rule_id, entity_id, key),
        entity_id=entity_id,
        entity_kind=entity_kind,
        region=region,
        rule_id=rule_id,
        severity=severity,
        title_zh=title_zh,
        title_en=title_en,
        event_time=event_time,
        detected_at=detected_at,
        **fields,
    )


@functools.lru_cache(maxsize=4096)  # an episode's bounds recur in each of its revisions
def iso(ts: float) -> str:
    """Event-time POSIX seconds as RFC 3339 UTC (deterministic, no wall clock)."""
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).isoformat()


def decode_alert(data: bytes) -> Alert:
    return msgspec.json.decode(data, type=Alert)


def utc_now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")
