"""``series``: the shape of a reported value over time (e.g. a fund's NAV).

- ``test: jump`` — the value moved by more than ``max_change`` (relative) from
  the previous report: a sudden revaluation or a fabricated catch-up.
- ``test: smooth`` — the last ``points`` period returns are all positive and
  their standard deviation is below ``max_std``: returns too good and too
  steady to be market returns (the Madoff pattern).

"Previous" is by event time. Fires per offending report (key: its event id).

**State** (bounded): the reports of the last :data:`HORIZON` of event time
(at most :data:`MAX_RECENT`), with time, value and event id, and before them
only the ``keep - 1`` values a verdict needs (``jump`` keeps 1, ``smooth``
keeps ``points``).

**Out of order (within the allowed lateness).** A report older than the
newest is put in its place by event time and judged against its event-time
neighbours; the ``keep - 1`` reports after it are judged again. A verdict
that changes becomes a *correction* (``Signal.correction``, score 0): a
finding withdrawn (``withdrawn: true``) or its evidence changed, with
``before``, ``late_event_id`` and a ``note``; the engine issues it as the
next revision of the rule's alert (the weight the first finding put in the
risk index stays; the correction adds none). A later report that only now
offends is a new finding. So the latest word on every key is what event-time
order says. A report older than the kept ones (more than :data:`MAX_RECENT`
reports in the horizon, or a lateness above it) cannot be placed: it is not
applied, and :meth:`SeriesRule.cannot_place` tells the engine to ledger it.

>>> spec = {"id": "x", "name_zh": "净值异常平滑", "name_en": "NAV too smooth", "kind": "series",
...     "severity": "medium", "dimension": "operational_anomaly", "rationale": "r", "source": "s",
...     "params": {"event_type": "fund.nav_reported", "field": "nav", "test": "smooth",
...                "points": 12, "max_std": 0.002}}
>>> SeriesRule(spec).keep
13
"""

from __future__ import annotations

import bisect
import itertools
import statistics
from typing import Any

from detectors.base import Signal
from detectors.rules.base import DAY, Rule
from riskflow.core.schema import Event

#: How far behind its newest report the state still places a report exactly: the default
#: allowed lateness (``detectors.lateness.DEFAULT_ALLOWED_LATENESS``, 7 days).
HORIZON = 7 * DAY
MAX_RECENT = 8


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
        # v: values before the recent reports (oldest first); r: recent reports [ts, value,
        # event id] by event time; vt: time of the newest report moved out of r (0: none)
        return {"v": [], "r": []}

    def verdict(self, values: list[float], j: int) -> dict[str, Any] | None:
        """The evidence if report ``j`` of the (event-time ordered) ``values`` offends, else None."""
        if j < self.keep - 1:
            return None
        window = values[j - self.keep + 1 : j + 1]
        if self.test == "jump":
            if window[0] <= 0:
                return None
            change = window[1] / window[0] - 1
            if abs(change) <= self.max_change:
                return None
            return {"previous": window[0], "value": window[1], "change": round(change, 6)}
        if min(window[:-1]) <= 0:
            return None
        returns = [b / a - 1 for a, b in itertools.pairwise(window)]
        if min(returns) <= 0:
            return None
        std = statistics.pstdev(returns)
        if std >= self.max_std:
            return None
        return {"points": self.points, "std": round(std, 8), "mean_return": round(statistics.fmean(returns), 6)}

    def process(self, state: Any, event: Event) -> tuple[Any, list[Signal]]:
        value = getattr(event.payload, self.field, None)
        if value is None:
            return state, []
        ctx: list[float] = state["v"]
        recent: list[list[Any]] = state.setdefault("r", [])  # (a state from before has only "v")
        ts = event.ts
        point = [ts, float(value), event.event_id]
        if not recent or ts >= recent[-1][0]:
            if ts < state.get("vt", ts):
                return state, []  # older than reports no longer kept: cannot_place
            recent.append(point)
            values = ctx + [p[1] for p in recent]
            found = self.verdict(values, len(values) - 1)
            self._prune(state, ts - HORIZON)
            return state, [self.signal(event.event_id, found)] if found else []
        if ts < state.get("vt", ts):
            return state, []
        before = ctx + [p[1] for p in recent]
        i = bisect.bisect_right([p[0] for p in recent], ts)
        recent.insert(i, point)
        after = ctx + [p[1] for p in recent]
        pos = len(ctx) + i
        signals: list[Signal] = []
        findings: list[Signal] = []
        found = self.verdict(after, pos)
        if found:
            findings.append(self.signal(event.event_id, found))
        late = {"late_event_id": event.event_id, "late_event_time": event.event_time.isoformat()}
        for j in range(pos + 1, min(pos + self.keep, len(after))):
            was, now = self.verdict(before, j - 1), self.verdict(after, j)
            if was == now:
                continue
            key = recent[j - len(ctx)][2]
            if was is None:
                note = f"found when a late report ({event.event_id}, {late['late_event_time']}) took its place"
                findings.append(self.signal(key, {**(now or {}), **late, "note": note}))
                continue
            if now is None:
                ev = {"withdrawn": True, "before": was, **late}
                ev["note"] = (
                    f"withdrawn: a late report ({event.event_id}, {late['late_event_time']}) comes before "
                    f"report {key} in event time; judged against it, {key} no longer offends"
                )
            else:
                ev = {**now, "before": was, **late}
                ev["note"] = (
                    f"revised: a late report ({event.event_id}, {late['late_event_time']}) comes before "
                    f"report {key} in event time; its evidence is judged again"
                )
            signals.append(Signal(self.id, key, self.severity, 0.0, ev, correction=True))
        self._prune(state, recent[-1][0] - HORIZON)  # bounded even if only older reports arrive
        # corrections first: the finding, if any, is what the rule's alert shows
        return state, signals + findings

    def _prune(self, state: dict[str, Any], floor: float) -> None:
        """Move reports older than the horizon (or beyond MAX_RECENT) out of the recent list."""
        recent = state["r"]
        n = 0
        while n < len(recent) - 1 and (recent[n][0] < floor or len(recent) - n > MAX_RECENT):
            n += 1
        if n:
            state["vt"] = recent[n - 1][0]
            ctx = state["v"]
            ctx += [p[1] for p in recent[:n]]
            del ctx[: -(self.keep - 1)]
            del recent[:n]

    def cannot_place(self, state: Any, event: Event) -> str | None:
        """Why an out-of-order report cannot be judged against its event-time neighbours."""
        if getattr(event.payload, self.field, None) is None or event.ts >= state.get("vt", event.ts):
            return None
        return "older than the reports the series still keeps"
