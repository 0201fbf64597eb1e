"""``change_frequency``: too many ``entity.changed`` of the listed fields in a window.

A frequent turnover of legal representative, executives or address is a
classic sign of a shell being prepared to abscond. Parameters: ``fields``
(e.g. ``[legal_rep, executive, address]``), ``window_days``, ``threshold``
(at least this many changes). A ``window`` count underneath: the same
bounded day buckets, the same once-per-episode firing.

>>> spec = {"id": "x", "name_zh": "频繁变更", "name_en": "Frequent changes", "kind": "change_frequency",
...     "severity": "medium", "dimension": "operational_anomaly", "rationale": "r", "source": "s",
...     "params": {"fields": ["legal_rep", "executive", "address"], "window_days": 180, "threshold": 3}}
>>> ChangeFrequencyRule(spec).threshold
3
"""

from __future__ import annotations

from typing import Any

from detectors.rules.window import WindowRule

FIELDS = ("legal_rep", "address", "shareholder", "executive", "business_scope", "registered_capital")


class ChangeFrequencyRule(WindowRule):
    kind = "change_frequency"

    def configure(self, params: dict[str, Any]) -> None:
        self.check_unknown(params, {"fields", "window_days", "threshold"})
        fields = params.get("fields")
        if not isinstance(fields, list) or not fields or any(f not in FIELDS for f in fields):
            raise self.fail("params.fields", f"a non-empty list of {FIELDS}")
        super().configure(
            {
                "event_type": "entity.changed",
                "when": [{"field": "field", "op": "in", "value": list(fields)}],
                "agg": "count",
                "window_days": params.get("window_days"),
                "op": ">=",
                "threshold": params.get("threshold"),
            }
        )
