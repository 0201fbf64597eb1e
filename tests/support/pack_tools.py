"""Shared by several test modules (moved out of test_rules_pack.py, so no test imports another)."""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any

from detectors.rules import load_pack


def event(n: int, entity: str, kind: str, day: float, etype: str, payload: dict[str, Any]) -> bytes:
    t = T0 + _dt.timedelta(days=day)
    return json.dumps(
        {
            "schema": "riskflow.event/v1",
            "event_id": f"{entity}-{n}",
            "event_type": etype,
            "entity_id": entity,
            "entity_kind": kind,
            "region": "330100",
            "event_time": t.isoformat(),
            "source": "test",
            "payload": {**BASE[etype], **payload},
        }
    ).encode()


PACK = load_pack()


T0 = _dt.datetime(2025, 1, 6, 10, 0, tzinfo=_dt.timezone(_dt.timedelta(hours=8)))


BASE: dict[str, dict[str, Any]] = {
    "entity.changed": {"field": "legal_rep"},
    "report.prudential": {"period_end": "2024-12-31"},
    "fund.registered": {"fund_id": "F", "manager_id": "M", "fund_type": "equity", "structure": "contractual"},
    "fund.subscription": {"fund_id": "F", "investor_id": "I0", "investor_type": "individual", "amount": 2e6},
    "fund.redemption_requested": {"fund_id": "F", "request_id": "R1", "investor_id": "I0", "amount": 1e5},
    "fund.redemption_paid": {"fund_id": "F", "request_id": "R1", "amount": 1e5},
    "fund.nav_reported": {"fund_id": "F", "nav": 1.0, "period_end": "2024-12-31"},
    "filing.submitted": {"filing": "quarterly", "period_end": "2024-12-31"},
    "advertisement.published": {"channel": "roadshow"},
    "complaint.filed": {"channel": "12345", "category": "other"},
    "lawsuit.filed": {"role": "defendant", "cause": "loan_dispute"},
    "opinion.published": {"sentiment": 0.0},
    "flow.transfer": {"direction": "in", "amount": 1000.0},
    "amac.notice": {"notice": "cancelled"},
    "enforcement.action": {"action": "warning"},
    "grid.report": {"observation": "normal"},
}

RULES = {r.id: r for r in PACK.detectors}
