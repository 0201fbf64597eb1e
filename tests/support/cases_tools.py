"""Shared by several test modules (moved out of test_cases_store.py, so no test imports another)."""

from __future__ import annotations

from typing import Any

from riskflow.core.alerts import Alert

E1, E2 = "PFM-330100-0001", "PFM-330200-0002"


def alert(aid: str, level: str, index: float, entity: str = E1, rule: str = "pf.guaranteed_return", **kw: Any) -> Alert:
    base: dict[str, Any] = dict(
        alert_id=aid,
        entity_id=entity,
        entity_kind="private_fund_manager",
        region="330100",
        rule_id=rule,
        severity="high",
        title_zh="承诺保本保收益",
        title_en="Guaranteed-return promise",
        event_time="2025-04-01T10:00:00+08:00",
        risk_level=level,
        risk_index=index,
        affected_people=12,
        affected_amount=3.5e6,
    )
    base.update(kw)
    return Alert(**base)
