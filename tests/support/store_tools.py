"""Shared by several test modules (moved out of test_store.py, so no test imports another)."""

from __future__ import annotations

from typing import Any

from riskflow.core.alerts import Alert


def make_alert(aid: str = "a1", **kw: Any) -> Alert:
    base: dict[str, Any] = dict(
        alert_id=aid,
        entity_id="PFM-330100-0001",
        entity_kind="private_fund_manager",
        region="330100",
        rule_id="pf.guaranteed_return",
        severity="high",
        title_zh="承诺保本保收益",
        title_en="Guaranteed-return promise",
        event_time="2025-04-01T10:00:00+08:00",
        detected_at="2026-11-27T10:00:00.000+00:00",
        evidence={"guaranteed": True},
        risk_level="orange",
        risk_index=65.0,
    )
    base.update(kw)
    return Alert(**base)
