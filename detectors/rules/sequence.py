"""``sequence``: event A, then at least ``count`` events B within ``within_days``.

E.g. a high-return advertisement followed by a burst of subscriptions within
30 days. Each A opens an episode (at most ``MAX_OPEN`` kept, the oldest
dropped first); each B counts towards every open episode it falls in; an
episode fires once (key: A's event id) when its count reaches ``count``.

**Out of order (within the allowed lateness).** The outcome is that of
event-time order: an episode fires iff at least ``count`` B events fall in
``[A, A + within_days]``, whatever order they arrived in, with the same key
and evidence. For that the state keeps, bounded:

- episodes until their end is more than :data:`HORIZON` behind the rule's
  newest event (a late B can still count towards them), not only until a
  newer B passes their end;
- the times of the newest ``min(count, MAX_THEN)`` B events within
  :data:`HORIZON`, so an A that arrives after its B events counts them. With
  ``within_days`` at least the lateness, these always suffice: if ``count``
  B events follow the late A, the newest ``count`` do.

What the bounds can lose (more than ``MAX_OPEN`` A events open at once, more
B events than kept, a lateness configured above :data:`HORIZON`) is reported
by :meth:`SequenceRule.cannot_place`, and the engine writes such an
out-of-order event to the late ledger (``bounded``, with the reason) rather
than miss it silently. Events in event-time order behave exactly as before.

>>> spec = {"id": "x", "name_zh": "宣传后募集激增", "name_en": "Ad then inflow", "kind": "sequence",
...     "severity": "high", "dimension": "inducement", "rationale": "r", "source": "s",
...     "params": {"first": {"event_type": "advertisement.published"},
...                "then": {"event_type": "fund.subscription"}, "count": 10, "within_days": 30}}
>>> sorted(SequenceRule(spec).event_types)
['advertisement.published', 'fund.subscription']
"""

from __future__ import annotations

import bisect
from typing import Any

from detectors.base import Signal
from detectors.rules.base import DAY, Matcher, Rule
from riskflow.core.schema import Event

MAX_OPEN = 8
MAX_THEN = 32
#: How far behind its newest event the state still places an event exactly: the default
#: allowed lateness (``detectors.lateness.DEFAULT_ALLOWED_LATENESS``, 7 days).
HORIZON = 7 * DAY


class SequenceRule(Rule):
    kind = "sequence"

    def configure(self, params: dict[str, Any]) -> None:
        self.check_unknown(params, {"first", "then", "count", "within_days"})
        steps = []
        for name in ("first", "then"):
            step = params.get(name)
            if not isinstance(step, dict):
                raise self.fail(f"params.{name}", "must be a mapping with event_type and optional when")
            et = self.event_type_param(step, "event_type")
            steps.append((et, self.conditions(step.get("when"), f"params.{name}.when", et)))
        (self.first_type, self.first_when), (self.then_type, self.then_when) = steps
        if self.first_type == self.then_type:
            raise self.fail("params.then.event_type", "must differ from first.event_type")
        self.count = int(self.number(params, "count", minimum=1))
        self.within = self.number(params, "within_days", minimum=0) * DAY
        self.event_types = frozenset({self.first_type, self.then_type})
        self.keep_then = min(self.count, MAX_THEN)
        # compiled once here (None: no conditions); only whether they hold matters, not the evidence
        self._first = Matcher(self.first_when) if self.first_when else None
        self._then = Matcher(self.then_when) if self.then_when else None

    def init_state(self) -> Any:
        # o: open episodes [a_ts, a_event_id, count, fired]; w: newest event time seen;
        # b: times of the newest B events (sorted); x / y: the newest time an episode / a B
        # time was dropped at (an out-of-order event at or before it may have needed it)
        return {"o": []}

    def _step(self, event: Event) -> int:
        """1: a counting A, 2: a counting B, 0: neither."""
        if event.event_type == self.first_type:
            return 0 if self._first is not None and not self._first.holds(event.payload) else 1
        return 0 if self._then is not None and not self._then.holds(event.payload) else 2

    def _fired(self, ep: list[Any]) -> Signal:
        return self.signal(ep[1], {"first_event_id": ep[1], "count": self.count, "within_days": self.within / DAY})

    def process(self, state: Any, event: Event) -> tuple[Any, list[Signal]]:
        step = self._step(event)
        if not step:
            return state, []
        episodes: list[list[Any]] = state["o"]
        ts = event.ts
        w = state.get("w", ts)
        signals = []
        if step == 1:
            ep: list[Any] = [ts, event.event_id, 0, 0]
            if ts < w:  # out of order: count the B events that arrived before it
                ep[2] = sum(1 for b in state.get("b", ()) if ts <= b <= ts + self.within)
                if ep[2] >= self.count:
                    ep[3] = 1
                    signals.append(self._fired(ep))
            episodes.append(ep)
            episodes.sort(key=lambda e: e[0])
            if len(episodes) > MAX_OPEN:
                for old in episodes[:-MAX_OPEN]:
                    state["x"] = max(state.get("x", 0.0), min(old[0] + self.within, ts))
                del episodes[:-MAX_OPEN]
        else:
            for open_ep in episodes:
                if open_ep[0] <= ts <= open_ep[0] + self.within:
                    open_ep[2] += 1
                    if open_ep[2] >= self.count and not open_ep[3]:
                        open_ep[3] = 1
                        signals.append(self._fired(open_ep))
            times: list[float] = state.setdefault("b", [])
            bisect.insort(times, ts)
            if len(times) > self.keep_then:
                state["y"] = max(state.get("y", 0.0), times.pop(0))
        if ts > w or "w" not in state:
            state["w"] = w = max(w, ts)
            self._prune(state, w - HORIZON)
        return state, signals

    def _prune(self, state: dict[str, Any], floor: float) -> None:
        """Forget what no event within :data:`HORIZON` can change."""
        episodes = state["o"]
        if episodes and episodes[0][0] + self.within < floor:
            keep = [ep for ep in episodes if ep[0] + self.within >= floor]
            for ep in episodes[: len(episodes) - len(keep)]:
                state["x"] = max(state.get("x", 0.0), ep[0] + self.within)
            episodes[:] = keep
        times = state.get("b")
        if times and times[0] < floor:
            i = bisect.bisect_left(times, floor)
            state["y"] = max(state.get("y", 0.0), times[i - 1])
            del times[:i]

    def cannot_place(self, state: Any, event: Event) -> str | None:
        """Why an out-of-order event cannot be applied as in event-time order (None: it can)."""
        step = self._step(event)
        ts = event.ts
        if step == 1:
            if len(state["o"]) >= MAX_OPEN:
                return f"{MAX_OPEN} '{self.first_type}' episodes already open: the oldest is dropped"
            n = sum(1 for b in state.get("b", ()) if ts <= b <= ts + self.within)
            if ts <= state.get("y", 0.0) and n < self.count:
                return f"'{self.then_type}' events it would count are no longer kept"
        elif step == 2 and ts <= state.get("x", 0.0):
            return f"a '{self.first_type}' episode it may fall in is no longer kept"
        return None
