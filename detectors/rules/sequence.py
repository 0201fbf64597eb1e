"""``sequence``: event A, then at least ``count`` events B within ``within_days``.

E.g. a high-return advertisement followed by a burst of subscriptions within
30 days. Each A opens an episode (at most ``MAX_OPEN`` kept, the oldest
dropped first); each B counts towards every open episode it falls in; an
episode fires once (key: A's event id) when its count reaches ``count``.

>>> spec = {"id": "x", "name_zh": "宣传后募集激增", "name_en": "Ad then inflow", "kind": "sequence",
...     "severity": "high", "dimension": "inducement", "rationale": "r", "source": "s",
...     "params": {"first": {"event_type": "advertisement.published"},
...                "then": {"event_type": "fund.subscription"}, "count": 10, "within_days": 30}}
>>> sorted(SequenceRule(spec).event_types)
['advertisement.published', 'fund.subscription']
"""

from __future__ import annotations

from typing import Any

from detectors.base import Signal
from detectors.rules.base import DAY, Rule, match
from riskflow.schema import Event

MAX_OPEN = 8


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

    def init_state(self) -> Any:
        return {"o": []}  # open episodes: [a_ts, a_event_id, count, fired]

    def process(self, state: Any, event: Event) -> tuple[Any, list[Signal]]:
        episodes: list[list[Any]] = state["o"]
        ts = event.ts
        if event.event_type == self.first_type:
            if self.first_when and match(self.first_when, event.payload) is None:
                return state, []
            episodes.append([ts, event.event_id, 0, 0])
            episodes.sort(key=lambda e: e[0])
            del episodes[:-MAX_OPEN]
            return state, []
        if self.then_when and match(self.then_when, event.payload) is None:
            return state, []
        signals = []
        for ep in episodes:
            if ep[0] <= ts <= ep[0] + self.within:
                ep[2] += 1
                if ep[2] >= self.count and not ep[3]:
                    ep[3] = 1
                    signals.append(
                        self.signal(ep[1], {"first_event_id": ep[1], "count": ep[2], "within_days": self.within / DAY})
                    )
        episodes[:] = [ep for ep in episodes if ts <= ep[0] + self.within or ep[0] > ts]
        return state, signals
