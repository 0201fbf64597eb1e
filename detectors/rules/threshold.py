"""``threshold``: one event whose payload meets every condition fires the rule.

Parameters: ``event_type`` and ``when``, a list of ``{field, op, value}``
(ops: ``< <= > >= == != in not_in any_in``; ``field`` may be a ratio
``a/b`` of two payload fields; ``value`` may be ``{const: lpr_1y, times: 4}``).
A field that is absent (or null) never matches, so a report that omits a
ratio cannot breach a limit on it. Evidence lists the fields the conditions
read. The alert key is the event id: one alert per offending event.

>>> r = ThresholdRule({"id": "x", "name_zh": "资本充足率", "name_en": "CAR", "kind": "threshold",
...     "severity": "high", "dimension": "financial_soundness", "rationale": "r", "source": "s",
...     "params": {"event_type": "report.prudential",
...                "when": [{"field": "capital_adequacy_ratio", "op": "<", "value": 0.08}]}})
>>> sorted(r.event_types)
['report.prudential']
"""

from __future__ import annotations

from typing import Any

from detectors.base import Signal
from detectors.rules.base import Matcher, Rule
from riskflow.core.schema import Event


class ThresholdRule(Rule):
    kind = "threshold"

    def configure(self, params: dict[str, Any]) -> None:
        self.check_unknown(params, {"event_type", "when"})
        self.event_type = self.event_type_param(params, "event_type")
        self.event_types = frozenset({self.event_type})
        self.when = self.conditions(params.get("when"), "params.when", self.event_type, required=True)
        self._when = Matcher(self.when)

    def score_one(self, state: Any, event: Event) -> list[Signal]:
        evidence = self._when.match(event.payload)
        if evidence is None:
            return []
        return [Signal(self.id, event.event_id, self.severity, 1.0, evidence)]

    def process(self, state: Any, event: Event) -> tuple[Any, list[Signal]]:
        # The engine's call: no state to learn, so straight to the decision (one call, not three).
        evidence = self._when.match(event.payload)
        if evidence is None:
            return state, []
        return state, [Signal(self.id, event.event_id, self.severity, 1.0, evidence)]
