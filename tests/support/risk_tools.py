"""Shared by several test modules (moved out of test_risk.py, so no test imports another)."""

from __future__ import annotations

import json

from detectors.engine import Engine, EntityState
from detectors.rules import build_rule
from riskflow.core.schema import parse_event


def complaint(category: str, day: float, n: int | str, amount: float | None = None, **kw: object):
    return ev("complaint.filed", {"channel": "12345", "category": category, "amount_involved": amount}, day, n, **kw)


def run(eng: Engine, events, state: EntityState | None = None):
    alerts = []
    for e in events:
        out = eng.process(state, e)
        state = out.state
        alerts += out.alerts
    return state, alerts


def rule(rid: str, event_type: str, field: str, value: object, severity: str, dimension: str, **kw: object):
    spec = {
        "id": rid,
        "name_zh": "测试",
        "name_en": "Test",
        "kind": "threshold",
        "severity": severity,
        "dimension": dimension,
        "rationale": "test",
        "source": "test",
        "params": {"event_type": event_type, "when": [{"field": field, "op": "==", "value": value}]},
        **kw,
    }
    return build_rule(spec, "<test>")


def ev(event_type: str, payload: dict, day: float, n: int | str, entity: str = "PF-1", **over: object):
    import datetime as dt

    t = dt.datetime.fromtimestamp(T0 + day * DAY, dt.UTC).isoformat()
    d = {
        "schema": "riskflow.event/v1",
        "event_id": f"e{n}",
        "event_type": event_type,
        "entity_id": entity,
        "entity_kind": "private_fund",
        "region": "330100",
        "event_time": t,
        "source": "test",
        "payload": payload,
        **over,
    }
    return parse_event(json.dumps(d).encode())


DAY = 86400.0


T0 = 1_735_689_600.0  # 2025-01-01T00:00:00Z

RULES = [
    rule("t.fraud", "complaint.filed", "category", "fraud", "critical", "complaints"),
    rule("t.refused", "complaint.filed", "category", "redemption_refused", "high", "complaints"),
    rule("t.other", "complaint.filed", "category", "other", "medium", "complaints"),
    rule("t.ad", "advertisement.published", "guaranteed", True, "high", "inducement"),
    rule("t.shadow", "complaint.filed", "category", "lost_contact", "critical", "complaints", mode="shadow"),
]
