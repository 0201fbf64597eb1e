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

from typing import Any

from detectors.base import Signal
from detectors.rules.base import Rule, day_of, match
from riskflow.schema import Event


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

    def init_state(self) -> Any:
        return {"t": 0, "on": 0, "b": []}

    def process(self, state: Any, event: Event) -> tuple[Any, list[Signal]]:
        if self.when and match(self.when, event.payload) is None:
            return state, []
        day = day_of(event.ts)
        if day > state["t"]:
            state["t"] = day
        now = state["t"]
        if day <= now - self.span:
            return state, []
        buckets: list[list[int]] = state["b"]
        for b in buckets:
            if b[0] == day:
                b[1] += 1
                break
        else:
            buckets.append([day, 1])
            buckets.sort(key=lambda b: b[0])
        while buckets and buckets[0][0] <= now - self.span:
            buckets.pop(0)
        cut = now - self.recent_days
        recent = sum(c for d, c in buckets if d > cut)
        base = sum(c for d, c in buckets if d <= cut)
        expected = base * self.recent_days / self.baseline_days
        if recent < self.floor or recent < self.factor * expected:
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
