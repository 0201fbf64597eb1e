"""``series``: the shape of a reported value over time (e.g. a fund's NAV).

- ``test: jump`` — the value moved by more than ``max_change`` (relative) from
  the previous report: a sudden revaluation or a fabricated catch-up.
- ``test: smooth`` — the last ``points`` period returns are all positive and
  their standard deviation is below ``max_std``: returns too good and too
  steady to be market returns (the Madoff pattern).

State: the last ``points`` + 1 values (``jump`` keeps one). Fires per
offending report (key: its event id).

>>> spec = {"id": "x", "name_zh": "净值异常平滑", "name_en": "NAV too smooth", "kind": "series",
...     "severity": "medium", "dimension": "operational_anomaly", "rationale": "r", "source": "s",
...     "params": {"event_type": "fund.nav_reported", "field": "nav", "test": "smooth",
...                "points": 12, "max_std": 0.002}}
>>> SeriesRule(spec).keep
13
"""

from __future__ import annotations

import itertools
import statistics
from typing import Any

from detectors.base import Signal
from detectors.rules.base import Rule
from riskflow.schema import Event


class SeriesRule(Rule):
    kind = "series"

    def configure(self, params: dict[str, Any]) -> None:
        self.check_unknown(params, {"event_type", "field", "test", "max_change", "points", "max_std"})
        self.event_type = self.event_type_param(params, "event_type")
        self.event_types = frozenset({self.event_type})
        self.field = self.field_param(params, "field", self.event_type)
        self.test = params.get("test")
        if self.test == "jump":
            self.max_change = self.number(params, "max_change", minimum=0)
            self.keep = 2
        elif self.test == "smooth":
            self.points = int(self.number(params, "points", minimum=3))
            self.max_std = self.number(params, "max_std", minimum=0)
            self.keep = self.points + 1
        else:
            raise self.fail("params.test", "must be jump or smooth")

    def init_state(self) -> Any:
        return {"v": []}

    def process(self, state: Any, event: Event) -> tuple[Any, list[Signal]]:
        value = getattr(event.payload, self.field, None)
        if value is None:
            return state, []
        values: list[float] = state["v"]
        values.append(float(value))
        del values[: -self.keep]
        if self.test == "jump":
            if len(values) < 2 or values[0] <= 0:
                return state, []
            change = values[1] / values[0] - 1
            if abs(change) <= self.max_change:
                return state, []
            ev = {"previous": values[0], "value": values[1], "change": round(change, 6)}
            return state, [self.signal(event.event_id, ev)]
        if len(values) < self.keep or min(values[:-1]) <= 0:
            return state, []
        returns = [b / a - 1 for a, b in itertools.pairwise(values)]
        if min(returns) <= 0:
            return state, []
        std = statistics.pstdev(returns)
        if std >= self.max_std:
            return state, []
        ev = {"points": self.points, "std": round(std, 8), "mean_return": round(statistics.fmean(returns), 6)}
        return state, [self.signal(event.event_id, ev)]
