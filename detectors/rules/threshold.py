"""``threshold``: one event whose payload meets every condition fires the rule.

Parameters: ``event_type`` and ``when``, a list of ``{field, op, value}``
with ``op`` one of ``< <= > >= == != in``. A field that is absent (or null)
never matches, so a report that omits a ratio cannot breach a limit on it.
Evidence lists the fields the conditions read.
"""

from __future__ import annotations

import operator
from typing import Any

from detectors.base import Signal
from detectors.rules.base import Rule, check_event_type
from riskflow.schema import Event

OPS = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
    "in": lambda a, b: a in b,
}


class ThresholdRule(Rule):
    kind = "threshold"

    def configure(self, params: dict[str, Any]) -> None:
        self.event_type = check_event_type(self, "params.event_type", params.get("event_type"))
        self.event_types = frozenset({self.event_type})
        when = params.get("when")
        if not isinstance(when, list) or not when:
            raise self.fail("params.when", "a non-empty list of conditions is required")
        self.conditions: list[tuple[str, Any, Any]] = []
        for i, c in enumerate(when):
            if not isinstance(c, dict) or not {"field", "op", "value"} <= set(c):
                raise self.fail(f"params.when[{i}]", "needs field, op and value")
            if c["op"] not in OPS:
                raise self.fail(f"params.when[{i}].op", f"unknown op; known: {sorted(OPS)}")
            self.conditions.append((str(c["field"]), OPS[c["op"]], c["value"]))

    def score_one(self, state: Any, event: Event) -> list[Signal]:
        p = event.payload
        evidence: dict[str, Any] = {}
        for field, op, value in self.conditions:
            got = getattr(p, field, None)
            if got is None:
                return []
            try:
                if not op(got, value):
                    return []
            except TypeError:
                return []
            evidence[field] = got
        return [Signal(self.id, event.event_id, self.severity, 1.0, evidence)]
