"""Per-entity evaluation: the one code path shared by the live worker and the backtest.

The engine owns no I/O. Given an entity's state (or ``None`` for a new
entity) and a validated event, it drops re-sent events, runs every detector
that applies, and turns their signals into :class:`riskflow.core.alerts.Alert`
records with deterministic ids. The caller persists the returned state (a
changelog-backed table when live, a dict in a backtest) and emits the alerts.

>>> from riskflow.core.schema import parse_event
>>> from detectors.rules import load_pack
>>> eng = Engine(load_pack().detectors)
>>> raw = (b'{"schema": "riskflow.event/v1", "event_id": "e1", "event_type": "amac.notice",'
...        b' "entity_id": "PFM-1", "entity_kind": "private_fund_manager", "region": "330100",'
...        b' "event_time": "2025-04-01T10:00:00+08:00", "source": "amac", "payload": {"notice": "lost_contact"}}')
>>> out = eng.process(None, parse_event(raw))
>>> [a.rule_id for a in out.alerts]
['pf.amac_lost_contact']
>>> eng.process(out.state, parse_event(raw)).duplicate
True
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
from collections.abc import Callable, Sequence
from typing import Any

from detectors import lateness as _lateness
from detectors.base import Detector, Signal
from detectors.entity import EntityState, Outcome, StepFailed, decode_state, encode_state
from detectors.risk.scorer import RiskScorer
from riskflow.core.alerts import Alert, alert_id, build_alert, utc_now_iso
from riskflow.core.schema import Event, Payload

__all__ = ["Engine", "EntityState", "Outcome", "StepFailed", "decode_state", "encode_state"]

_DIGEST = 8  # bytes of an event-id digest kept for de-duplication
_blake2b = hashlib.blake2b


def _digest(event_id: str) -> bytes:
    return _blake2b(event_id.encode(), digest_size=_DIGEST).digest()


def _seen(blob: bytes, digest: bytes) -> bool:
    i = blob.find(digest)
    while i != -1:
        if i % _DIGEST == 0:
            return True
        i = blob.find(digest, i + 1)
    return False


#: one detector of an engine's per-event plan: (detector, its id, its process, its init_state)
_Step = tuple[Detector, str, Callable[[Any, Event], tuple[Any, list[Signal]]], Callable[[], Any]]


class Engine:
    """Runs a set of detectors over one entity's events.

    ``dedup_window`` is how many recent event ids per entity are remembered:
    an event whose id is among them is a duplicate (re-sent by a producer, or
    redelivered after a crash) and changes nothing. With a ``risk`` scorer,
    signals go through it (index, level, episodes) instead of each becoming an alert.
    """

    def __init__(
        self,
        detectors: Sequence[Detector],
        *,
        dedup_window: int = 64,
        pack_version: str = "",
        clock: Callable[[], str] = utc_now_iso,
        risk: RiskScorer | None = None,
        allowed_lateness: float | None = None,
    ) -> None:
        self.detectors = list(detectors)
        self.allowed_lateness = allowed_lateness  # None: no lateness gate
        self.dedup_window = dedup_window
        self.pack_version = pack_version
        self.clock = clock
        self.risk = risk

    def __reduce__(self) -> tuple[Any, ...]:
        # The constructor call (mypyc's native classes, in the compiled build, do not pickle by
        # themselves); the per-event plans are rebuilt on use.
        make = functools.partial(
            Engine,
            dedup_window=self.dedup_window,
            pack_version=self.pack_version,
            clock=self.clock,
            risk=self.risk,
            allowed_lateness=self.allowed_lateness,
        )
        return (make, (self._detectors,))

    @property
    def detectors(self) -> list[Detector]:
        return self._detectors

    @detectors.setter
    def detectors(self, detectors: Sequence[Detector]) -> None:
        # Replacing the detectors (a rule-pack switch keeping the anomaly detectors) drops the plans.
        self._detectors = list(detectors)
        self._by_type: dict[tuple[str, str], tuple[tuple[_Step, ...], bool]] = {}
        self._timed = [d for d in self._detectors if getattr(d, "timed", False)]

    def _for_event(self, event: Event) -> list[Detector]:
        return [step[0] for step in self._plan(event)[0]]

    def _plan(self, event: Event) -> tuple[tuple[_Step, ...], bool]:
        """The detectors that can react to this (event type, entity kind), in pack order, with
        their bound methods, and whether any is timed: built once per pair, then looked up."""
        key = (event.event_type, event.entity_kind)
        plan = self._by_type.get(key)
        if plan is None:
            steps = tuple((d, d.id, d.process, d.init_state) for d in self.detectors if d.applies_to(event))
            plan = self._by_type[key] = (steps, any(getattr(d, "timed", False) for d, *_ in steps))
        return plan

    def process(self, state: EntityState | None, event: Event) -> Outcome:
        if state is None:
            state = EntityState(entity_id=event.entity_id)
        if self.dedup_window:
            digest = _blake2b(event.event_id.encode(), digest_size=_DIGEST).digest()
            blob = state.recent_ids
            if digest in blob and _seen(blob, digest):
                return Outcome(state, [], duplicate=True)
            blob += digest
            ring = self.dedup_window * _DIGEST
            state.recent_ids = blob[-ring:] if len(blob) > ring else blob
        state.entity_kind = event.entity_kind
        state.region = event.region
        state.events += 1
        ts = event.ts
        allowed = self.allowed_lateness
        closed = None
        if ts < state.watermark and allowed is not None:
            try:
                if ts < state.watermark - allowed:
                    return self._late(state, event, allowed)
                closed = _lateness.closed_windows(self._for_event(event), state.detectors, event)
            except StepFailed:
                raise
            except Exception as exc:
                raise StepFailed("lateness", exc) from exc
        if ts > state.watermark:
            state.watermark = ts
        hits: list[tuple[Detector, Signal]] = []
        dstates = state.detectors
        plan = self._by_type.get((event.event_type, event.entity_kind))
        steps, timed = plan if plan is not None else self._plan(event)
        did = ""
        try:  # (free unless raised) a failure names the detector whose step was running
            for det, did, process, init_state in steps:
                new, signals = process(dstates.get(did) or init_state(), event)
                if new is None:
                    dstates.pop(did, None)
                else:
                    dstates[did] = new
                if signals:
                    hits += [(det, sig) for sig in signals]
            if timed:
                did = ""
                self._set_due(state)
        except Exception as exc:
            raise StepFailed(f"detector {did}" if did else "timers", exc) from exc
        out = self._emit(state, event, hits)
        try:
            if hits and any(sig.correction for _, sig in hits):  # an out-of-order event revised a finding
                self._revise(state, event, out, [(det, sig) for det, sig in hits if sig.correction])
            if closed and allowed is not None:  # within the lateness but too old for a window: ledgered
                out.late = _lateness.record(event, state.watermark, allowed, closed)
                out.late.beyond_lateness = False
                out.late.alerts = [a.alert_id for a in out.alerts]
        except Exception as exc:
            raise StepFailed("revision", exc) from exc
        return out

    def _emit(self, state: EntityState, event: Event, hits: list[tuple[Detector, Signal]]) -> Outcome:
        try:
            if self.risk is not None:
                alerts, links = self.risk.apply(state, event, hits, self._alert, self.clock)
                for a in alerts:  # the index's own alerts (risk.level, ...) name the pack too
                    if not a.rule_pack_version:
                        a.rule_pack_version = self.pack_version
                return Outcome(state, alerts, False, links)
            return Outcome(state, [self._alert(det, sig, event) for det, sig in hits])
        except Exception as exc:
            raise StepFailed("risk scorer" if self.risk is not None else "alert construction", exc) from exc

    def _late(self, state: EntityState, event: Event, allowed: float) -> Outcome:
        """An event beyond the allowed lateness: re-evaluate where the state allows, and
        describe it for the late-event ledger (detectors/lateness.py)."""
        try:
            hits, corrections, lines = _lateness.reevaluate(self._for_event(event), state.detectors, event)
        except Exception as exc:
            raise StepFailed("lateness", exc) from exc
        out = self._emit(state, event, hits + corrections)
        self._revise(state, event, out, corrections)
        out.late = _lateness.record(event, state.watermark, allowed, lines)
        out.late.alerts = [a.alert_id for a in out.alerts]
        return out

    def _revise(
        self, state: EntityState, event: Event, out: Outcome, corrections: list[tuple[Detector, Signal]]
    ) -> None:
        """A correction must reach the officers even when the risk index would not re-emit
        its episode yet (it re-emits at milestones): issue the episode's next revision. When
        the rule's alert already goes out for this event, the correction joins its evidence
        (``revised``)."""
        emitted = {a.rule_id: a for a in out.alerts}
        for det, sig in corrections:
            a = emitted.get(det.id)
            if a is not None:
                if a.evidence is not sig.evidence:
                    a.evidence = {**a.evidence, "revised": [*a.evidence.get("revised", ()), sig.evidence]}
                continue
            a = self._alert(det, sig, event)
            r = state.risk
            track = r.rules.get(det.id) if r is not None else None
            if track is not None:
                a.alert_id = alert_id(det.id, event.entity_id, track.key)
                a.revision = track.count
                a.risk_level, a.risk_index = r.level, r.index  # type: ignore[union-attr]
            out.alerts.append(a)
            emitted[det.id] = a

    def _set_due(self, state: EntityState) -> None:
        due = 0.0
        for det in self._timed:
            ds = state.detectors.get(det.id)
            d = det.next_deadline(ds) if ds is not None else None  # type: ignore[attr-defined]
            if d is not None and (not due or d < due):
                due = d
        state.due = due

    def advance(self, state: EntityState, watermark: float) -> Outcome:
        """Event time has passed ``watermark`` on the entity's partition: fire what is overdue.

        The findings carry no event of this entity; they are emitted as of the
        deadline that passed (a synthetic ``riskflow.deadline`` event at that time).
        """
        result = Outcome(state, [])
        for det in self._timed:
            ds = state.detectors.get(det.id)
            if ds is None:
                continue
            try:
                d = det.next_deadline(ds)  # type: ignore[attr-defined]
                if d is None or d >= watermark:
                    continue
                ds, signals = det.on_time(ds, watermark)  # type: ignore[attr-defined]
                state.detectors[det.id] = ds
                deadline_events = [(sig, self._deadline_event(state, sig)) for sig in signals]
            except Exception as exc:
                raise StepFailed(f"detector {det.id} (timed)", exc) from exc
            for sig, at in deadline_events:
                out = self._emit(state, at, [(det, sig)])
                result.alerts += out.alerts
                result.links += out.links
        try:
            self._set_due(state)
        except Exception as exc:
            raise StepFailed("timers", exc) from exc
        return result

    @staticmethod
    def _deadline_event(state: EntityState, sig: Signal) -> Event:
        at = _dt.datetime.fromisoformat(str(sig.evidence["due"]))
        return Event(
            event_id="",
            event_type="riskflow.deadline",
            entity_id=state.entity_id,
            entity_kind=state.entity_kind,
            region=state.region,
            event_time=at,
            source="riskflow",
            payload=Payload(),
            ts=at.timestamp(),
        )

    def _alert(self, det: Detector, sig: Signal, event: Event) -> Alert:
        d = det.describe
        return build_alert(
            sig.detector_id,
            event.entity_id,
            sig.key,
            entity_kind=event.entity_kind,
            region=event.region,
            severity=sig.severity,
            title_zh=d.name_zh,
            title_en=d.name_en,
            dimension=d.dimension,
            mode=det.mode,
            evidence=sig.evidence,
            event_id=event.event_id,
            event_time=event.event_time.isoformat(),
            detected_at=self.clock(),
            rule_pack_version=self.pack_version,
            model_version=getattr(det, "model_version", ""),
        )
