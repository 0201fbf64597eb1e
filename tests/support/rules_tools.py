"""Shared by several test modules (moved out of test_rules_control.py, so no test imports another)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from detectors.factory import build_processor
from detectors.rules import load_pack
from riskflow.core.metrics import RULE_PACK_REJECT_REASONS, Metrics
from streams.rules_control import RuleControl

PACK = load_pack()


def control(reg: CollectorRegistry) -> RuleControl:
    return RuleControl(
        {"bootstrap_servers": "k:9092"},
        "riskflow.rules",
        build_processor(PACK, anomaly=False),
        lambda p: build_processor(p, anomaly=False).engine,
        lambda: [],
        metrics=Metrics.create(reg),
    )


def rejected(reg: CollectorRegistry) -> dict[str, float]:
    return {
        r: reg.get_sample_value("riskflow_rule_pack_rejected_total", {"reason": r}) or 0.0
        for r in RULE_PACK_REJECT_REASONS
    }
