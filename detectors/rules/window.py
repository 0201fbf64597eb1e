"""``window``: an aggregate over a sliding event-time window crosses a threshold.

Parameters:

- ``event_type``, optional ``when`` (which events count);
- ``agg``: ``count``, ``sum`` (of ``field``), ``distinct`` (of ``field``, e.g.
  ``investor_id``) or ``ratio`` (``sum`` of ``field``, or count when no field,
  over the events that also meet ``numerator``, divided by the same over all
  counted events; ``min_denominator`` guards tiny bases);
- ``window_days`` (calendar days in CST, the current day included);
- ``op`` (``>=`` or ``>``) and ``threshold``;
- optional ``scope: {event_type, when}``: the rule only fires once the entity
  has sent a matching event of that type (e.g. a partnership fund's
  ``fund.registered``); the last such event decides.

The rule fires once when the aggregate crosses the threshold (alert key: the
crossing event's id) and re-arms when it falls back below.

State, bounded whatever the event rate: ``b`` day buckets ``[day, num, den]``
(at most ``window_days``); for ``distinct``, ``d`` maps a 64-bit hash of the
value to the last day it was seen, capped at ``threshold`` + 1 entries by
evicting the least recently seen. The cap keeps the decision exact: the ids in
the window are always the most recently seen ones, so "at least T distinct in
the window" holds iff at least T of the kept most-recent entries are in it.

>>> spec = {"id": "x", "name_zh": "投诉", "name_en": "Complaints", "kind": "window",
...     "severity": "medium", "dimension": "complaints", "rationale": "r", "source": "s",
...     "params": {"event_type": "complaint.filed", "agg": "count", "window_days": 30,
...                "op": ">=", "threshold": 5}}
>>> WindowRule(spec).window_days
30
"""

from __future__ import annotations

import functools
import hashlib
from operator import itemgetter
from typing import Any

from detectors.base import Signal
from detectors.rules.base import CST_OFFSET, DAY, Condition, Matcher, Rule
from riskflow.core.schema import Event

AGGS = ("count", "sum", "distinct", "ratio")
_NUM, _DEN = itemgetter(1), itemgetter(2)  # of a day bucket [day, num, den]


@functools.lru_cache(maxsize=4096)
def _text_hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") >> 1


def value_hash(value: Any) -> int:
    """63-bit hash of a value's text (memoised: two rules counting the same id hash it once)."""
    return _text_hash(str(value))


class WindowRule(Rule):
    kind = "window"
    KNOWN = frozenset(
        {
            "event_type",
            "when",
            "agg",
            "field",
            "window_days",
            "op",
            "threshold",
            "numerator",
            "min_denominator",
            "scope",
        }
    )

    def configure(self, params: dict[str, Any]) -> None:
        self.check_unknown(params, set(self.KNOWN))
        self.event_type = self.event_type_param(params, "event_type")
        self.when = self.conditions(params.get("when"), "params.when", self.event_type)
        self.agg = params.get("agg")
        if self.agg not in AGGS:
            raise self.fail("params.agg", f"must be one of {AGGS}")
        self.field: str | None = None
        if self.agg in ("sum", "distinct") or (self.agg == "ratio" and params.get("field") is not None):
            self.field = self.field_param(params, "field", self.event_type)
        self.window_days = int(self.number(params, "window_days", minimum=1))
        self.op = params.get("op", ">=")
        if self.op not in (">=", ">"):
            raise self.fail("params.op", "must be >= or >")
        self.threshold = self.number(params, "threshold", minimum=0)
        self.numerator: list[Condition] = []
        self.min_denominator = 0.0
        if self.agg == "ratio":
            self.numerator = self.conditions(
                params.get("numerator"), "params.numerator", self.event_type, required=True
            )
            self.min_denominator = self.number(params, "min_denominator", default=0, minimum=0)
        elif "numerator" in params or "min_denominator" in params:
            raise self.fail("params.numerator", "only for agg: ratio")
        self.cap = int(self.threshold) + 1
        types = {self.event_type}
        self.scope_type: str | None = None
        self.scope_when: list[Condition] = []
        scope = params.get("scope")
        if scope is not None:
            if not isinstance(scope, dict):
                raise self.fail("params.scope", "must be a mapping with event_type and when")
            self.scope_type = self.event_type_param(scope, "event_type")
            self.scope_when = self.conditions(scope.get("when"), "params.scope.when", self.scope_type, required=True)
            types.add(self.scope_type)
        self.event_types = frozenset(types)
        # compiled once here, so that an event costs no loop over conditions (None: no conditions)
        self._when = Matcher(self.when) if self.when else None
        self._numerator = Matcher(self.numerator) if self.numerator else None
        self._scope = Matcher(self.scope_when) if self.scope_when else None

    # -- state ------------------------------------------------------------------------------
    def init_state(self) -> Any:
        return {"t": 0, "on": 0}

    def process(self, state: Any, event: Event) -> tuple[Any, list[Signal]]:
        et = event.event_type
        if et == self.scope_type:
            state["s"] = 1 if self._scope.holds(event.payload) else 0  # type: ignore[union-attr]
            if et != self.event_type:
                return state, []
        if et != self.event_type or (self._when is not None and not self._when.holds(event.payload)):
            return state, []
        day = int((event.ts + CST_OFFSET) // DAY)  # day_of, inlined
        moved = day > state["t"]
        if moved:
            state["t"] = day
        now = state["t"]
        oldest = now - self.window_days + 1
        if day < oldest:
            return state, []  # too late for the window
        value = self.fold(state, event, day, oldest, moved)
        if value is None:
            return state, []
        hit = value >= self.threshold if self.op == ">=" else value > self.threshold
        if not hit:
            state["on"] = 0
            return state, []
        if state["on"] or (self.scope_type is not None and not state.get("s")):
            return state, []
        state["on"] = 1
        evidence = {"agg": self.agg, "value": round(value, 6), "threshold": self.threshold}
        evidence["window_days"] = self.window_days
        return state, [self.signal(event.event_id, evidence)]

    def fold(self, state: dict[str, Any], event: Event, day: int, oldest: int, moved: bool = True) -> float | None:
        """Add the event to the state; return the aggregate over the window (None: undefined).

        ``moved``: the window's end day advanced with this event. When it did not, nothing
        can have left the window since the last fold (every fold leaves only days >=
        ``oldest``, and ``oldest`` moves only with the end day), so the rescan is skipped."""
        if self.agg == "distinct":
            seen: dict[int, int] = state.setdefault("d", {})
            h = value_hash(getattr(event.payload, self.field, None))  # type: ignore[arg-type]
            if seen.get(h, -1) < day:
                seen[h] = day
            if moved and min(seen.values()) < oldest:  # seen is never empty here
                for k in [k for k, d in seen.items() if d < oldest]:
                    del seen[k]
            while len(seen) > self.cap:
                # the least recently seen, the first of them in insertion order, as
                # min(seen, key=seen.__getitem__) picks it: the smallest day in C, then its first key
                oldest_day = min(seen.values())
                del seen[next(k for k, d in seen.items() if d == oldest_day)]
            return float(len(seen))
        if self.field is not None:
            amount = getattr(event.payload, self.field, None)
            if amount is None:
                return None
        else:
            amount = 1.0
        num = amount if (self._numerator is None or self._numerator.holds(event.payload)) else 0.0
        buckets: list[list[float]] = state.setdefault("b", [])
        if buckets and buckets[-1][0] == day:
            buckets[-1][1] += num
            buckets[-1][2] += amount
        else:
            buckets.append([day, num, amount])
            if len(buckets) > 1 and buckets[-2][0] > day:
                buckets.sort(key=lambda b: b[0])
                merged: list[list[float]] = []
                for b in buckets:
                    if merged and merged[-1][0] == b[0]:
                        merged[-1][1] += b[1]
                        merged[-1][2] += b[2]
                    else:
                        merged.append(b)
                buckets[:] = merged
        while buckets and buckets[0][0] < oldest:
            buckets.pop(0)
        return self.bucket_value(buckets)

    def bucket_value(self, buckets: list[list[float]]) -> float | None:
        """The sum (or ratio) over the kept day buckets; None when a ratio's base is too small."""
        # sum() over map(itemgetter): the same additions in the same order as a generator, in C
        total_num = sum(map(_NUM, buckets))
        if self.agg != "ratio":
            return total_num
        den = sum(map(_DEN, buckets))
        if den <= 0 or den < self.min_denominator:
            return None
        return total_num / den
