"""``surge``: recent activity far above the entity's own baseline.

Counts matching events in the last ``recent_days`` and compares with the
average per ``recent_days`` over the ``baseline_days`` before them: fires when
``recent >= factor * baseline_average`` **and** ``recent >= floor`` (the floor
keeps a quiet entity's first two complaints from being a "surge"). Fires once
per episode (key: the crossing event's id), re-arms when it subsides.

State: day buckets ``[day, count]`` over ``recent_days + baseline_days`` days.

>>> spec = {"id": "x", "name_zh": "投诉激增", "name_en": "Complaint surge", "kind": "surge",
...     "severity": "high", "dimension": "complaints", "rationale": "r", "source": "s",
...     "params": {"event_type": "complaint.filed", "recent_days": 7, "baseline_days": 90,
...                "factor": 3, "floor": 3}}
>>> SurgeRule(spec).span
97
"""

from __future__ import annotations

from bisect import bisect_right
from operator import itemgetter
from typing import Any

from detectors.base import Signal
from detectors.rules.base import CST_OFFSET, DAY, Matcher, Rule
from riskflow.core.schema import Event

_DAY_OF, _COUNT = itemgetter(0), itemgetter(1)  # of a day bucket [day, count]


class SurgeRule(Rule):
    kind = "surge"

    def configure(self, params: dict[str, Any]) -> None:
        self.check_unknown(params, {"event_type", "when", "recent_days", "baseline_days", "factor", "floor"})
        self.event_type = self.event_type_param(params, "event_type")
        self.event_types = frozenset({self.event_type})
        self.when = self.conditions(params.get("when"), "params.when", self.event_type)
        self.recent_days = int(self.number(params, "recent_days", minimum=1))
        self.baseline_days = int(self.number(params, "baseline_days", minimum=1))
        self.factor = self.number(params, "factor", minimum=1)
        self.floor = self.number(params, "floor", minimum=1)
        self.span = self.recent_days + self.baseline_days
        self._when = Matcher(self.when) if self.when else None

    def init_state(self) -> Any:
        return {"t": 0, "on": 0, "b": []}

    def process(self, state: Any, event: Event) -> tuple[Any, list[Signal]]:
        if self._when is not None and not self._when.holds(event.payload):
            return state, []
        day = int((event.ts + CST_OFFSET) // DAY)  # day_of, inlined
        if day > state["t"]:
            state["t"] = day
        now = state["t"]
        if day <= now - self.span:
            return state, []
        # The buckets are kept sorted by day, one per day: today's is almost always the last.
        buckets: list[list[int]] = state["b"]
        if buckets and buckets[-1][0] == day:
            buckets[-1][1] += 1
        else:
            for b in buckets:
                if b[0] == day:
                    b[1] += 1
                    break
            else:
                buckets.append([day, 1])
                if len(buckets) > 1 and buckets[-2][0] > day:
                    buckets.sort(key=_DAY_OF)
        while buckets and buckets[0][0] <= now - self.span:
            buckets.pop(0)
        cut = now - self.recent_days
        i = bisect_right(buckets, cut, key=_DAY_OF)  # buckets[i:] are the recent days (day > cut)
        recent = sum(map(_COUNT, buckets[i:]))  # whole numbers: exact in any order
        if recent < self.floor:
            state["on"] = 0
            return state, []
        # the baseline only now: most events stop at the floor
        base = sum(map(_COUNT, buckets[:i]))
        expected = base * self.recent_days / self.baseline_days
        if recent < self.factor * expected:
            state["on"] = 0
            return state, []
        if state["on"]:
            return state, []
        state["on"] = 1
        evidence = {
            "recent": recent,
            "recent_days": self.recent_days,
            "baseline_average": round(expected, 3),
            "baseline_days": self.baseline_days,
            "factor": self.factor,
            "floor": self.floor,
        }
        return state, [self.signal(event.event_id, evidence)]
