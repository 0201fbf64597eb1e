"""Shared by several test modules (moved out of test_contagion.py, so no test imports another)."""

from __future__ import annotations

import datetime as dt
import json

from detectors.factory import build_processor
from detectors.pipeline import RawMessage
from detectors.risk import RiskConfig
from detectors.rules import load_pack
from riskflow.core.schema import parse_event


def fund_registered(fund: str, manager: str, n: str = "f1", day: float = 0) -> bytes:
    payload = {"fund_id": fund, "manager_id": manager, "fund_type": "equity", "structure": "contractual"}
    return raw("fund.registered", payload, fund, "private_fund", day, n, region="330200")


def lost_contact(manager: str, n: str = "m1", day: float = 1) -> bytes:
    return raw("amac.notice", {"notice": "lost_contact"}, manager, "private_fund_manager", day, n)


def quiet_day(entity: str, kind: str, n: str, day: float) -> bytes:
    return raw("opinion.published", {"sentiment": 0.1}, entity, kind, day, n)


def raw(event_type: str, payload: dict, entity: str, kind: str, day: float, n: str, region: str = "330100") -> bytes:
    d = {
        "schema": "riskflow.event/v1",
        "event_id": n,
        "event_type": event_type,
        "entity_id": entity,
        "entity_kind": kind,
        "region": region,
        "event_time": f"2025-03-{1 + int(day):02d}T10:00:00+08:00",
        "source": "test",
        "payload": payload,
    }
    return json.dumps(d).encode()


def offline(values: list[bytes], **cfg: object):
    bp = build_processor(load_pack(), anomaly=False, risk=RiskConfig(**cfg))  # type: ignore[arg-type]
    return bp.process([RawMessage(v, "f", 0, i, None) for i, v in enumerate([*values, *ticks(values)])], {}.get)


def ticks(history: list[bytes]) -> list[bytes]:
    """Two days after ``history``, a day apart: two, as one event far ahead of its partition's
    time (a gap beyond the allowed skew) does not move it alone."""
    later = tick(history)
    return [later, tick([later], "tick2")]


def tick(history: list[bytes], n: str = "tick") -> bytes:
    """An event on another entity a day after ``history``: its partition's time then passes every
    pending push's (pushes land in event time, once the dependent's partition passes their ``at``)."""
    last = max(parse_event(v).event_time for v in history)
    d = json.loads(quiet_day("TICK-0", "enterprise", n, 0))
    d["event_time"] = (last + dt.timedelta(days=1)).isoformat()
    return json.dumps(d).encode()
