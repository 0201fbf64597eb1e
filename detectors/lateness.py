"""Late events: the lateness gate and the late-event ledger record (pure; no I/O).

**What "late" means.** Each entity has an event-time high-water mark: the
largest ``event_time`` of its events processed so far
(``EntityState.watermark``). An event is *late* when it is older than that
mark minus the allowed lateness (``RISKFLOW_ALLOWED_LATENESS``, seconds of
event time)::

    late  <=>  event.ts < state.watermark - allowed_lateness

The decision depends only on the entity's own history in input order (one
entity lives on one partition, read in order), never on batch boundaries,
wall-clock time or replay speed, so a backtest and the live worker classify
the same events as late.

**Within the lateness** an out-of-order event goes through the detectors like
any other. The window kinds (``window``, ``change_frequency``, ``surge``)
keep day buckets and fold it into its own day, so their aggregates are those
of event-time order. ``sequence``, ``series`` and ``absence`` keep a bounded
recent history by event time and give the result of event-time order too
(``series`` and ``absence`` correct a finding an arrival order got wrong; see
their modules). What such a
bounded state cannot place is recorded in the ledger (``beyond_lateness:
false``, action ``bounded`` with the rule's ``reason``), and so is an event
for a day the daily anomaly model has already scored (``window_closed``). See docs/reliability.md,
"Late and out-of-order events" for what still follows arrival order.

One thing a window cannot do out of order: count an event whose day is
already older than the window's oldest day (e.g. an event 6.5 days behind in
a 7-day window). Such an event is processed as usual by every other rule and
also recorded in the ledger (``beyond_lateness: false``) with those windows
as ``window_closed``, so that nothing is dropped silently.

**Beyond the lateness** an event is never dropped silently. It is recorded in
the late-event ledger (:class:`LateRecord`, on the ``riskflow.late`` topic,
counted by ``riskflow_late_events_total{event_type}``) with every rule it
would have touched and what was done about each (:data:`ACTIONS`):

- ``reevaluated``: the rule's state still covers the event's time (a window
  or surge whose retained days include the event's day, or a stateless
  threshold rule): the event is folded in and the rule evaluated again. A
  new crossing is a new alert; a window that had already fired and whose
  value changed gets a *correction*: a signal (score 0, so no extra weight in
  the risk index) that the risk index folds into the rule's open episode and
  that the engine issues as a new revision of that episode's alert, with a
  note of what changed.
- ``window_closed``: the window has moved past the event's day; its state
  no longer holds that day, so nothing can be re-evaluated.
- ``order_dependent``: the kind's state cannot take an event this far out of
  order (``series``, ``sequence``, ``absence``, the anomaly models); applying it
  would corrupt the state, so it is not applied.
- ``bounded`` (within the lateness only): an order-sensitive rule's bounded
  state no longer holds what placing the event needs (``reason`` says what).

Duplicates are dropped before the gate (a redelivered late event is a
duplicate, not a second ledger entry).

>>> is_late(watermark=1000.0, ts=400.0, allowed=600.0)
False
>>> is_late(watermark=1000.0, ts=399.0, allowed=600.0)
True
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from typing import Any

import msgspec

from detectors.anomaly.daily import DailyAnomaly
from detectors.base import Detector, Signal
from detectors.rules.base import day_of, match
from detectors.rules.surge import SurgeRule
from detectors.rules.threshold import ThresholdRule
from detectors.rules.window import WindowRule
from riskflow.core.schema import Event

LATE_SCHEMA = "riskflow.late/v1"
#: Default allowed lateness: 7 days of event time. Filings pile up over a long public
#: holiday (the Spring Festival and National Day "golden weeks" are 7 days), and an
#: entity's late filings after one must still count in its windows.
DEFAULT_ALLOWED_LATENESS = 7 * 86400.0
ACTIONS = ("reevaluated", "window_closed", "order_dependent", "bounded")


class LateRule(msgspec.Struct, kw_only=True):
    """One rule a late event would have touched, and what was done about it."""

    rule_id: str
    kind: str
    action: str  # one of ACTIONS
    window_days: int | None = None
    value_before: float | None = None  # the rule's window value before / after the late event
    value_after: float | None = None
    reason: str | None = None  # for ``bounded``: what the rule's bounded state no longer holds


class LateRecord(msgspec.Struct, kw_only=True):
    """A late-event ledger entry (one per late event; keyed by entity id on the ledger topic).

    >>> r = LateRecord(event_id="e1", entity_id="PF-1", entity_kind="private_fund", region="330100",
    ...     event_type="complaint.filed", event_time="2025-01-01T00:00:00+08:00",
    ...     entity_watermark="2025-02-01T00:00:00+08:00", late_by_seconds=2678400.0,
    ...     allowed_lateness_seconds=604800.0)
    >>> decode_late(encode_late(r)).late_by_seconds
    2678400.0
    """

    schema: str = LATE_SCHEMA
    event_id: str
    entity_id: str
    entity_kind: str
    region: str
    event_type: str
    event_time: str
    entity_watermark: str  # the entity's event-time high-water mark when the event arrived
    late_by_seconds: float  # watermark - event time
    allowed_lateness_seconds: float
    #: False: within the lateness, processed as usual, but some window could not count it
    beyond_lateness: bool = True
    #: True: the event ran ahead of its partition's event time by more than the allowed skew
    #: (then ``entity_watermark`` is the partition's, ``allowed_lateness_seconds`` the skew)
    ahead: bool = False
    rules: list[LateRule] = msgspec.field(default_factory=list)
    alerts: list[str] = msgspec.field(default_factory=list)  # ids of the alerts issued or revised
    event: msgspec.Raw = msgspec.Raw(b"null")  # the event as received (set by the pipeline), for a replay


_encoder = msgspec.json.Encoder()


def encode_late(record: LateRecord) -> bytes:
    return _encoder.encode(record)


def decode_late(data: bytes) -> LateRecord:
    return msgspec.json.decode(data, type=LateRecord)


def is_late(*, watermark: float, ts: float, allowed: float) -> bool:
    """The gate: older than the entity's high-water mark minus the allowed lateness."""
    return ts < watermark - allowed


def _iso(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, _dt.UTC).isoformat()


def window_value(rule: WindowRule, state: dict[str, Any]) -> float | None:
    """The aggregate a window rule's state holds now (None: undefined, e.g. a ratio's tiny base)."""
    if rule.agg == "distinct":
        return float(len(state.get("d", {})))
    value = rule.bucket_value(state.get("b", []))
    return None if value is None else float(value)


def _counts(rule: WindowRule | SurgeRule, event: Event) -> bool:
    et = rule.event_type
    return event.event_type == et and (not rule.when or match(rule.when, event.payload) is not None)


def reevaluate(
    detectors: Sequence[Detector], dstates: dict[str, Any], event: Event
) -> tuple[list[tuple[Detector, Signal]], list[tuple[Detector, Signal]], list[LateRule]]:
    """Apply a late event where the state allows (see the module docstring).

    Updates ``dstates`` in place; returns (new findings, corrections, ledger lines)."""
    hits: list[tuple[Detector, Signal]] = []
    corrections: list[tuple[Detector, Signal]] = []
    lines: list[LateRule] = []
    for det in detectors:
        kind = getattr(det, "kind", "detector")
        if isinstance(det, ThresholdRule):
            _, signals = det.process(None, event)
            hits.extend((det, s) for s in signals)
            lines.append(LateRule(rule_id=det.id, kind=kind, action="reevaluated"))
            continue
        if isinstance(det, WindowRule):
            if det.scope_type is not None and event.event_type == det.scope_type:
                # "the last such event decides": a late scope event cannot be placed in order
                lines.append(LateRule(rule_id=det.id, kind=kind, action="order_dependent"))
                continue
            if not _counts(det, event):
                continue  # the rule would not have counted it
            st = dstates.get(det.id) or det.init_state()
            line = LateRule(rule_id=det.id, kind=kind, action="window_closed", window_days=det.window_days)
            lines.append(line)
            if day_of(event.ts) < st["t"] - det.window_days + 1:
                continue
            was_on = st["on"]
            line.value_before = window_value(det, st)
            st, signals = det.process(st, event)
            dstates[det.id] = st
            line.action, line.value_after = "reevaluated", window_value(det, st)
            hits.extend((det, s) for s in signals)
            if was_on and not signals and line.value_after != line.value_before:
                ev = {
                    "agg": det.agg,
                    "value": line.value_after,
                    "value_before": line.value_before,
                    "threshold": det.threshold,
                    "window_days": det.window_days,
                    "late_event_id": event.event_id,
                    "late_event_time": event.event_time.isoformat(),
                    "note": f"revised: a late event ({event.event_id}, {event.event_time.isoformat()}) falls in "
                    f"the {det.window_days}-day window; {det.agg} {line.value_before:g} -> {line.value_after:g}",
                }
                corrections.append((det, Signal(det.id, event.event_id, det.severity, 0.0, ev)))
            continue
        if isinstance(det, SurgeRule):
            if not _counts(det, event):
                continue
            st = dstates.get(det.id) or det.init_state()
            line = LateRule(rule_id=det.id, kind=kind, action="window_closed", window_days=det.span)
            lines.append(line)
            if day_of(event.ts) <= st["t"] - det.span:
                continue
            st, signals = det.process(st, event)
            dstates[det.id] = st
            line.action = "reevaluated"
            hits.extend((det, s) for s in signals)
            continue
        lines.append(LateRule(rule_id=det.id, kind=kind, action="order_dependent"))
    note = f"found on re-evaluation after a late event ({event.event_id}, {event.event_time.isoformat()})"
    for _, sig in hits:
        sig.evidence["note"] = note
    return hits, corrections, lines


def closed_windows(detectors: Sequence[Detector], dstates: dict[str, Any], event: Event) -> list[LateRule]:
    """The windows that would count an out-of-order event but whose oldest day is past its day,
    and the order-sensitive rules whose bounded state cannot place it (``cannot_place``).

    Called before the event is applied, only for events older than the entity's mark."""
    lines: list[LateRule] = []
    day = day_of(event.ts)
    for det in detectors:
        if isinstance(det, WindowRule):
            span = det.window_days
        elif isinstance(det, SurgeRule):
            span = det.span
        elif isinstance(det, DailyAnomaly):
            if day < det.open_day(dstates.get(det.id)):
                why = "its day is already scored: left out of the daily metrics"
                lines.append(LateRule(rule_id=det.id, kind=det.kind, action="window_closed", window_days=1, reason=why))
            continue
        else:
            place = getattr(det, "cannot_place", None)
            st = dstates.get(det.id)
            if place is not None and st is not None and (why := place(st, event)) is not None:
                kind = getattr(det, "kind", "detector")
                lines.append(LateRule(rule_id=det.id, kind=kind, action="bounded", reason=why))
            continue
        st = dstates.get(det.id)
        if st is not None and _counts(det, event) and day < st["t"] - span + 1:
            lines.append(LateRule(rule_id=det.id, kind=det.kind, action="window_closed", window_days=span))
    return lines


def ahead_record(event: Event, lane_watermark: float, max_skew: float) -> LateRecord:
    """The ledger entry of an event that ran more than ``max_skew`` ahead of its partition's
    event time (``ahead``; ``late_by_seconds`` is negative): processed for its own entity, but
    it did not move the partition's time (detectors/pipeline.Lane)."""
    rec = record(event, lane_watermark, max_skew, [])
    rec.beyond_lateness = False
    rec.ahead = True
    return rec


def record(event: Event, watermark: float, allowed: float, lines: list[LateRule]) -> LateRecord:
    return LateRecord(
        event_id=event.event_id,
        entity_id=event.entity_id,
        entity_kind=event.entity_kind,
        region=event.region,
        event_type=event.event_type,
        event_time=event.event_time.isoformat(),
        entity_watermark=_iso(watermark),
        late_by_seconds=round(watermark - event.ts, 3),
        allowed_lateness_seconds=allowed,
        rules=lines,
    )
