"""Shared by several test modules (moved out of test_contagion.py, so no test imports another)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import msgspec

from detectors.engine import EntityState
from detectors.factory import build_processor
from detectors.pipeline import BatchProcessor, RawMessage
from detectors.risk import RiskConfig
from detectors.risk.contagion import LinkMessage, encode_link
from detectors.rules import load_pack
from riskflow.core.schema import parse_event
from riskflow.sim import DEFAULT_START
from riskflow.sim.emit import format_cst


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


LINKS = "links"


def _at(value: bytes, minutes: float) -> bytes:
    """The event ``value`` moved ``minutes`` later."""
    d = json.loads(value)
    d["event_time"] = (dt.datetime.fromisoformat(d["event_time"]) + dt.timedelta(minutes=minutes)).isoformat()
    return json.dumps(d).encode()


def _plain(alerts: list[Any]) -> list[dict[str, Any]]:
    out = []
    for a in alerts:
        d = msgspec.to_builtins(a)
        d.pop("detected_at")
        out.append(d)
    return out


def _ad(n: str, minutes: float) -> bytes:
    payload = {"channel": "w", "guaranteed": n in ("ad2", "ad3")}
    ad = raw("advertisement.published", payload, "PF-9", "private_fund", 1, n)
    return _at(ad, minutes)


class _Store(dict[str, EntityState]):
    """A worker's table: ``run`` processes a batch and writes its states back."""

    def run(self, bp: BatchProcessor, msgs: list[RawMessage]) -> Any:
        res = bp.process(msgs, self.get)
        self.update({k: s for k, (s, _) in res.states.items()})
        return res


def _fall(store: _Store) -> LinkMessage:
    """Fund PF-9 (partition 0) links to its manager PFM-1 (partition 1), which falls: its push."""
    bp = build_processor(load_pack(), anomaly=False, links_topic=LINKS)
    res = store.run(bp, [RawMessage(fund_registered("PF-9", "PFM-1", "f1", 1), "events", 0, 0, None)])
    store.run(bp, [RawMessage(encode_link(m), LINKS, 0, 0, m.to.encode()) for m in res.links])
    (push,) = store.run(bp, [RawMessage(lost_contact("PFM-1", "m1", 1), "events", 1, 0, None)]).links
    return push


def adder(out: list[dict[str, Any]], prefix: str) -> Callable[[float, str, str, str, str, dict[str, Any]], None]:
    """``ev(hour, entity, kind, event type, source, payload)`` appends that event to ``out``,
    ``hour`` hours after the simulation's start, with the id ``<prefix>-<n>``."""

    def ev(hour: float, eid: str, kind: str, etype: str, source: str, payload: dict[str, Any]) -> None:
        when = DEFAULT_START + dt.timedelta(hours=hour)
        out.append(
            {
                "schema": "riskflow.event/v1",
                "event_id": f"{prefix}-{len(out)}",
                "event_type": etype,
                "entity_id": eid,
                "entity_kind": kind,
                "region": "330100",
                "event_time": format_cst(int(when.timestamp())),
                "source": source,
                "payload": payload,
            }
        )

    return ev
