"""``absence``: something expected did not happen in time — fired by event time, not timers.

Two forms:

- ``form: match`` — a ``start`` event (e.g. ``fund.redemption_requested``)
  expects an ``expect`` event with the same ``key`` field value (e.g.
  ``request_id`` on ``fund.redemption_paid``) within ``within_days``. Alert
  key: the key value (one alert per unpaid request).
- ``form: schedule`` — once an entity has been seen, every ``period``
  (``month``, ``quarter``, ``year``) end expects an ``expect`` event (e.g.
  ``filing.submitted``) whose ``period_end`` falls in that period, within
  ``grace_days`` after it. ``consecutive`` missed periods in a row fire once
  (alert key: the period end of the last one); a filing resets the run. The
  entity's schedule starts with the first period ending after its first event.

**Semantics.** A deadline *d* fires when event time passes it (``t > d``): an
expected event at exactly *d* is on time; one that arrives after *d* is late
and the alert stands. Event time advances in two ways, both deterministic:
the entity's own events (checked before the event is applied), and the
watermark of the input partition the entity lives on — the largest event
time seen there, so an entity that goes silent still fires once others on
its partition move past its deadline. The batch pipeline
(:mod:`detectors.pipeline`) keeps the per-partition watermark and a deadline
index and calls :meth:`on_time`; the result depends only on the order of
events within each partition, never on batch boundaries or replay speed.

State is bounded: at most ``MAX_OPEN`` open expectations (``match``; the
oldest is fired early as overflow would otherwise lose it — by then the
entity is alerting anyway), or one period cursor plus a few filed periods and
the periods last judged missed and filed (``schedule``).

**Out of order (within the allowed lateness).** Time never moves back: a late
event fires nothing that a newer one did not, and reopens nothing. The
outcome is that of event-time order:

- ``match``: an expected event that arrives *before* its start (in arrival
  order) is kept (at most ``MAX_KEPT``, for :data:`HORIZON` of event time),
  so the start that arrives after it is answered, not opened. An expected
  event on time by event time (start <= t <= due) that arrives after its
  deadline already fired (the entity's or the partition's time passed it)
  withdraws that finding: a correction (``Signal.correction``, score 0,
  ``withdrawn: true``, ``before``, ``late_event_id``, a ``note``) that the
  engine issues as the next revision of the rule's alert; fired deadlines are
  kept for :data:`HORIZON` for that.
- ``schedule``: the schedule starts from the entity's *earliest* event: an
  earlier event that arrives late moves the start back while no period has
  been judged yet (filings for the earlier period that arrived before it are
  kept meanwhile, if filed by that period's due time: a later one never counts
  for it, as by event time the period is judged first). A filing on time by
  event time for the period just judged missed, arriving after that judgement,
  resets the run as it would have, and withdraws the finding if the miss had
  fired one; one for the period last judged filed changes nothing.

What the bounds cannot place (an older period, kept items overflowing, a
lateness configured above :data:`HORIZON`) is reported by
:meth:`AbsenceRule.cannot_place` for the late ledger (``bounded``).

>>> spec = {"id": "x", "name_zh": "赎回逾期未兑付", "name_en": "Redemption unpaid", "kind": "absence",
...     "severity": "high", "dimension": "operational_anomaly", "rationale": "r", "source": "s",
...     "params": {"form": "match", "within_days": 30,
...                "start": {"event_type": "fund.redemption_requested", "key": "request_id"},
...                "expect": {"event_type": "fund.redemption_paid", "key": "request_id"}}}
>>> r = AbsenceRule(spec)
>>> st = {"o": [["R-1", 100.0, "e1"]]}
>>> r.on_time(st, 100.0)[1], len(r.on_time(st, 100.5)[1])
([], 1)
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

from detectors.base import Signal
from detectors.rules.base import CST_OFFSET, DAY, Rule, day_of, match
from riskflow.core.schema import Event

MAX_OPEN = 256
MAX_KEPT = 16
#: How far behind its newest event the state still places an event exactly: the default
#: allowed lateness (``detectors.lateness.DEFAULT_ALLOWED_LATENESS``, 7 days).
HORIZON = 7 * DAY
_EPOCH = _dt.date(1970, 1, 1).toordinal()
_CST = _dt.timezone(_dt.timedelta(hours=8))
_MONTHS = {"month": 1, "quarter": 3, "year": 12}


def period_end(day: _dt.date, period: str) -> _dt.date:
    """The last day of the ``period`` containing ``day``."""
    step = _MONTHS[period]
    month = ((day.month - 1) // step + 1) * step
    nxt = _dt.date(day.year + (month == 12), month % 12 + 1, 1)
    return nxt - _dt.timedelta(days=1)


def _iso(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, _CST).isoformat()


class AbsenceRule(Rule):
    kind = "absence"
    timed = True

    def configure(self, params: dict[str, Any]) -> None:
        self.form = params.get("form")
        if self.form == "match":
            self.check_unknown(params, {"form", "start", "expect", "within_days"})
            self.start_type, self.start_when, self.start_key = self._step(params, "start", keyed=True)
            self.expect_type, self.expect_when, self.expect_key = self._step(params, "expect", keyed=True)
            self.within = self.number(params, "within_days", minimum=0) * DAY
            self.event_types = frozenset({self.start_type, self.expect_type})
        elif self.form == "schedule":
            self.check_unknown(params, {"form", "period", "grace_days", "expect", "consecutive"})
            self.period: str = params.get("period", "")
            if self.period not in _MONTHS:
                raise self.fail("params.period", f"must be one of {sorted(_MONTHS)}")
            self.grace_days = int(self.number(params, "grace_days", minimum=0))
            self.consecutive = int(self.number(params, "consecutive", default=1, minimum=1))
            self.expect_type, self.expect_when, _ = self._step(params, "expect", keyed=False)
            if "period_end" not in self.expect_payload_fields:
                raise self.fail("params.expect.event_type", "the expected event must carry period_end")
            if self.entity_kinds is None:
                raise self.fail("entity_kinds", "a schedule applies to named entity kinds")
            self.event_types = None  # any event shows the entity exists and moves its time on
        else:
            raise self.fail("params.form", "must be match or schedule")

    def _step(self, params: dict[str, Any], name: str, *, keyed: bool) -> tuple[str, list[Any], str]:
        step = params.get(name)
        if not isinstance(step, dict):
            raise self.fail(f"params.{name}", "must be a mapping with event_type")
        et = self.event_type_param(step, "event_type")
        when = self.conditions(step.get("when"), f"params.{name}.when", et)
        key = self.field_param(step, "key", et) if keyed else ""
        from riskflow.core.schema import CATALOGUE

        self.expect_payload_fields = set(CATALOGUE[et].__struct_fields__)
        return et, when, key

    # -- per event ---------------------------------------------------------------------------
    def init_state(self) -> Any:
        return {"o": []} if self.form == "match" else {}

    def process(self, state: Any, event: Event) -> tuple[Any, list[Signal]]:
        # on_time fires only what is due before the event (a deadline before ``event.ts``): when the
        # next deadline is not, it would return the state untouched and no signal, so it is not called.
        due = self.next_deadline(state)
        state, signals = self.on_time(state, event.ts) if due is not None and due < event.ts else (state, [])
        et = event.event_type
        p: Any = event.payload
        ts = event.ts
        if self.form == "match":
            opened: list[list[Any]] = state["o"]
            w = state.get("w", ts)
            if et == self.start_type and (not self.start_when or match(self.start_when, p) is not None):
                key = str(getattr(p, self.start_key))
                if ts < w and self._answered(state, key, ts):
                    pass  # out of order: its expected event arrived first, in time
                elif all(o[0] != key for o in opened):
                    opened.append([key, ts + self.within, event.event_id])
                    opened.sort(key=lambda o: o[1])
                    if len(opened) > MAX_OPEN:
                        signals += self._fire(opened.pop(0))
            elif et == self.expect_type and (not self.expect_when or match(self.expect_when, p) is not None):
                key = str(getattr(p, self.expect_key))
                n = len(opened)
                opened[:] = [o for o in opened if o[0] != key]
                if len(opened) == n:
                    signals += self._unmatched(state, key, event)
            if ts > w or "w" not in state:
                state["w"] = max(w, ts)
                self._prune(state, state["w"] - HORIZON)
            return state, signals
        if "p" not in state:
            state.update(p=self._start(ts), f=[], m=0, s=ts)
        elif ts < state.get("s", ts):
            if self._initial(state):
                state["p"] = min(state["p"], self._start(ts))
            state["s"] = ts
        if et == self.expect_type and (not self.expect_when or match(self.expect_when, p) is not None):
            pe = period_end(p.period_end, self.period).toordinal()
            # A period before the cursor is kept only while no period has been judged, in case the
            # start moves back to it, and only if filed by its due time: in event-time order that
            # period is judged before any later filing for it is seen. (From the cursor on, a filing
            # is never past its period's due time: on_time above has moved the cursor past those.)
            if pe >= state["p"] or (self._initial(state) and ts <= self._due(pe)):
                if pe not in state["f"]:
                    state["f"] = sorted([*state["f"], pe])[-8:]
            elif ts <= self._due(pe) and state.get("l", (None,))[0] == pe:
                signals += self._filed_late(state, event)
        return state, signals

    def _start(self, ts: float) -> int:
        """The first period of a schedule whose first event is at ``ts``."""
        first = _dt.datetime.fromordinal(day_of(ts) + _EPOCH).date()
        end = period_end(first, self.period)
        if end == first:
            end = period_end(first + _dt.timedelta(days=1), self.period)
        return end.toordinal()

    def _initial(self, state: dict[str, Any]) -> bool:
        """No period judged yet (a state from before, without ``s``, counts as judged)."""
        return "s" in state and state["p"] == self._start(state["s"])

    def _answered(self, state: dict[str, Any], key: str, ts: float) -> bool:
        """A late start: did its expected event arrive before it, in time? (consumed if so)"""
        kept = state.get("e") or []
        for i, (k, t) in enumerate(kept):
            if k == key and ts <= t <= ts + self.within:
                del kept[i]
                return True
        return False

    def _unmatched(self, state: dict[str, Any], key: str, event: Event) -> list[Signal]:
        """An expected event that answers nothing open: it withdraws a deadline that fired
        although it was in time, or is kept for a start that may arrive after it."""
        fired = state.get("x") or []
        for i, item in enumerate(fired):
            if item[0] != key:
                continue
            due = item[1]
            if not due - self.within <= event.ts <= due:
                return []  # late by event time too: the finding stands
            del fired[i]
            [was] = self._fire(item)
            ev = {"withdrawn": True, "before": was.evidence, **self._late(event)}
            ev["note"] = (
                f"withdrawn: {self.expect_type} {key} ({event.event_id}, {event.event_time.isoformat()}) was in "
                f"time for the deadline {_iso(due)}; it arrived after event time had passed the deadline"
            )
            return [Signal(self.id, key, self.severity, 0.0, ev, correction=True)]
        kept = state.setdefault("e", [])
        kept.append([key, event.ts])
        if len(kept) > MAX_KEPT:
            kept.sort(key=lambda k: k[1])
            state["y"] = max(state.get("y", 0.0), kept.pop(0)[1])
        return []

    def _filed_late(self, state: dict[str, Any], event: Event) -> list[Signal]:
        """The filing for the period just judged missed, in time by event time: as it would have."""
        pe, fired = state.pop("l")
        state["m"] = 0
        state["k"] = pe  # now as judged filed
        if not fired:
            return []
        end = _dt.date.fromordinal(pe)
        was = {"period_end": end.isoformat(), "missed_in_a_row": self.consecutive, "due": _iso(self._due(pe))}
        was["grace_days"] = self.grace_days
        ev = {"withdrawn": True, "before": was, **self._late(event)}
        ev["note"] = (
            f"withdrawn: the {self.expect_type} for {end.isoformat()} ({event.event_id}, "
            f"{event.event_time.isoformat()}) was in time; it arrived after the period was judged missed"
        )
        return [Signal(self.id, end.isoformat(), self.severity, 0.0, ev, correction=True)]

    @staticmethod
    def _late(event: Event) -> dict[str, Any]:
        return {"late_event_id": event.event_id, "late_event_time": event.event_time.isoformat()}

    def _prune(self, state: dict[str, Any], floor: float) -> None:
        """Forget kept expected events and fired deadlines that no event within the horizon can touch."""
        for name, at, lost in (("e", 1, "y"), ("x", 1, "z")):
            kept = state.get(name)
            if kept and min(k[at] for k in kept) < floor:
                gone = [k[at] for k in kept if k[at] < floor]
                state[lost] = max(state.get(lost, 0.0), *gone)
                kept[:] = [k for k in kept if k[at] >= floor]

    def cannot_place(self, state: Any, event: Event) -> str | None:
        """Why an out-of-order event cannot be applied as in event-time order (None: it can)."""
        et, ts = event.event_type, event.ts
        p: Any = event.payload
        if self.form == "match":
            if et == self.start_type and ts <= state.get("y", 0.0):
                return f"'{self.expect_type}' events it may be answered by are no longer kept"
            if et == self.expect_type and ts <= state.get("z", 0.0):
                return "a deadline it may have answered in time is no longer kept"
            return None
        if "p" not in state:
            return None
        if ts < state.get("s", ts) and not self._initial(state) and self._start(ts) < self._start(state["s"]):
            return "the schedule started from a later event and has judged a period since"
        if et == self.expect_type and (not self.expect_when or match(self.expect_when, p) is not None):
            pe = period_end(p.period_end, self.period).toordinal()
            judged = pe < state["p"] and not self._initial(state)
            if judged and ts <= self._due(pe) and pe not in (state.get("l", (None,))[0], state.get("k")):
                return f"the outcome of the period ending {_dt.date.fromordinal(pe).isoformat()} is no longer kept"
        return None

    # -- as event time passes ----------------------------------------------------------------
    def next_deadline(self, state: Any) -> float | None:
        if self.form == "match":
            opened = state.get("o") if state else None
            return opened[0][1] if opened else None
        if not state or "p" not in state:
            return None
        return self._due(state["p"])

    def _due(self, period_ordinal: int) -> float:
        # midnight (CST) after the period's last day, plus the grace days
        return (period_ordinal - _EPOCH + 1 + self.grace_days) * DAY - CST_OFFSET

    def on_time(self, state: Any, watermark: float) -> tuple[Any, list[Signal]]:
        signals: list[Signal] = []
        if self.form == "match":
            opened = state["o"]
            while opened and opened[0][1] < watermark:
                item = opened.pop(0)
                signals += self._fire(item)
                fired = state.setdefault("x", [])  # kept: an expected event in time may still arrive
                fired.append(item)
                if len(fired) > MAX_KEPT:
                    state["z"] = max(state.get("z", 0.0), fired.pop(0)[1])
            return state, signals
        while "p" in state and self._due(state["p"]) < watermark:
            p = state["p"]
            if p in state["f"]:
                state["f"].remove(p)
                state["m"] = 0
                state.pop("l", None)
                state["k"] = p  # judged filed: a second filing for it changes nothing
            else:
                state["m"] += 1
                state["l"] = [p, 0]  # judged missed: a filing in time may still arrive
                if state["m"] == self.consecutive:
                    end = _dt.date.fromordinal(p)
                    ev = {"period_end": end.isoformat(), "missed_in_a_row": state["m"], "due": _iso(self._due(p))}
                    ev["grace_days"] = self.grace_days
                    signals.append(self.signal(end.isoformat(), ev))
                    state["l"][1] = 1
            state["p"] = period_end(_dt.date.fromordinal(p) + _dt.timedelta(days=1), self.period).toordinal()
            state["f"] = [f for f in state["f"] if f >= state["p"]]
        return state, signals

    def _fire(self, item: list[Any]) -> list[Signal]:
        key, due, started = item
        ev = {self.start_key: key, "start_event_id": started, "due": _iso(due), "within_days": self.within / DAY}
        return [self.signal(key, ev)]
