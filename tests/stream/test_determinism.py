"""Backtest = live: the same history gives the same alerts offline, through a live worker fed by
``riskflow replay --speed max``, and through ``riskflow replay --speed 3600`` -- with a
non-default risk configuration (``RISKFLOW_RISK_CONFIG``) and LPR constant (``RISKFLOW_LPR_1Y``),
which both must honour.

At ``--speed 3600`` the history also holds manager -> fund contagion whose funds keep having
events of their own while their manager falls: each push crosses its dependent's own events,
and must land at the same place among them live (through the links topic) as offline. At
``--speed max`` the whole history waits as one backlog, which the worker takes in batches
spanning more event time than the contagion delay: a push can then arrive after its time
(docs/risk.md, "Timing"), so that run holds only contagion to entities without events.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from riskflow.backtest import backtest
from riskflow.core.schema import encode_event
from riskflow.sim import DEFAULT_START, simulate
from riskflow.sim.emit import format_cst
from tests.support.kafka_fixtures import Stack

COMPRESS = 120  # 40 simulated days -> 8 hours of event time: 8 s of wall time at --speed 3600
RISK_YAML = Path(__file__).parents[2] / "detectors" / "risk" / "risk.yaml"


def _squeezed() -> list[dict[str, Any]]:
    """A simulated history squeezed into a few hours of event time, still in event-time order."""
    events, labels = simulate(entities=30, days=40, seed=3)
    assert labels
    t0 = DEFAULT_START.timestamp()
    out = []
    for e in events:
        t = dt.datetime.fromisoformat(e["event_time"]).timestamp()
        out.append({**e, "event_time": format_cst(int(t0 + (t - t0) / COMPRESS))})
    return out


def web(managers: int = 4, funds: int = 3) -> list[dict[str, Any]]:
    """Managers that fall (lost contact, then suspended) four hours in, each with funds that
    have events every 15 minutes throughout (an ad every hour), two registered before the fall, one after it
    (its link is answered by a push); odd funds also name the manager as their parent."""
    out: list[dict[str, Any]] = []

    def ev(hour: float, eid: str, kind: str, etype: str, source: str, payload: dict[str, Any]) -> None:
        when = DEFAULT_START + dt.timedelta(hours=hour)
        out.append(
            {
                "schema": "riskflow.event/v1",
                "event_id": f"det-web-{len(out)}",
                "event_type": etype,
                "entity_id": eid,
                "entity_kind": kind,
                "region": "330100",
                "event_time": format_cst(int(when.timestamp())),
                "source": source,
                "payload": payload,
            }
        )

    for m in range(managers):
        mid = f"PFM-330100-D{m:04d}"
        reg = {"name": f"D{m}", "registered_capital": 1e7, "legal_rep": "张伟", "address": "杭州"}
        ev(0.2 + 0.05 * m, mid, "private_fund_manager", "entity.registered", "market_regulation", reg)
        for f in range(funds):
            fid = f"PF-330100-D{m:02d}{f:02d}"
            start = 0.5 + 0.1 * m if f < 2 else 4.5 + 0.1 * m
            parent = {"parent_id": mid} if f % 2 else {}
            reg = {"name": fid, "registered_capital": 1e7, "legal_rep": "李强", "address": "杭州", **parent}
            ev(start, fid, "private_fund", "entity.registered", "market_regulation", reg)
            fund = {"fund_id": fid, "manager_id": mid, "fund_type": "securities", "structure": "contractual"}
            ev(start + 0.01, fid, "private_fund", "fund.registered", "amac", {**fund, "target_size": 5e7})
            k = 0
            while start + 0.3 + k / 4 < 10.0:  # every 15 minutes: an ad, or an opinion
                hour = start + 0.3 + k / 4
                if k % 4 == 0:
                    ad = {"channel": "wechat", "guaranteed": False}
                    ev(hour, fid, "private_fund", "advertisement.published", "advertising_monitor", ad)
                else:
                    ev(hour, fid, "private_fund", "opinion.published", "public_opinion", {"sentiment": 0.1})
                k += 1
        ev(4.0 + 0.1 * m, mid, "private_fund_manager", "amac.notice", "amac", {"notice": "lost_contact"})
        action = {"action": "suspension", "reason": "fraud"}
        ev(4.3 + 0.1 * m, mid, "private_fund_manager", "enforcement.action", "regulator_report", action)
    return out


def history(contagion: bool) -> list[bytes]:
    events = _squeezed() + (web() if contagion else [])
    events.sort(key=lambda e: dt.datetime.fromisoformat(e["event_time"]))
    return [encode_event(e) for e in events]


def risk_config(tmp_path: Path) -> Path:
    """A modified copy of the shipped risk configuration: other bounds, factors and delay."""
    doc = yaml.safe_load(RISK_YAML.read_text(encoding="utf-8"))
    doc.update(orange=55, yellow=35, half_life_days=20, contagion_delay_hours=3)
    doc["contagion_factors"] = {**doc["contagion_factors"], "manager": 0.8}
    path = tmp_path / "risk.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


def emitted(alerts: list[dict]) -> set[tuple[Any, ...]]:
    """Every alert revision emitted, as a sink sees it: id, revision, severity, level, index,
    exposure and rule (the wall-clock ``detected_at`` aside; a revision read twice counts once)."""
    return {
        (
            a["alert_id"],
            a.get("revision", 1),
            a["rule_id"],
            a["severity"],
            a.get("risk_level", ""),
            a.get("risk_index"),
            a.get("affected_amount"),
            a.get("affected_people"),
        )
        for a in alerts
    }


@pytest.mark.parametrize("speed", ["max", "3600"])
def test_backtest_equals_live_worker(stack: Stack, tmp_path: Path, speed: str) -> None:
    stack.env["RISKFLOW_RISK_CONFIG"] = str(risk_config(tmp_path))
    stack.env["RISKFLOW_LPR_1Y"] = "0.02"
    lines = history(contagion=speed != "max")
    path = tmp_path / "history.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    out: list[dict] = []
    backtest(lines, [], settings=stack.settings, on_alert=lambda a: out.append(msgspec.to_builtins(a)))
    expected = emitted(out)
    assert len({x[0] for x in expected}) >= 10
    # the settings are honoured: the shipped configuration and LPR give other alerts
    default: list[dict] = []
    backtest(lines, [], on_alert=lambda a: default.append(msgspec.to_builtins(a)))
    assert emitted(default) != expected
    if speed != "max":
        # pushes that cross their funds' own events: the funds' own alerts carry the contagion
        raised = [a for a in out if a["entity_id"].startswith("PF-330100-D") and "risk.contagion" in a["risk_tags"]]
        assert any(a["rule_id"] == "risk.contagion" for a in raised)
        assert any(a["rule_id"] not in ("risk.contagion", "risk.level") for a in raised)

    worker = stack.start_worker()
    if speed != "max":
        # In time, the links come back within the delay (3 s of wall time at this speed); not
        # while the worker is still starting and the history waits as a backlog.
        ready = time.monotonic() + 120
        while "Worker ready" not in worker.log_text() and time.monotonic() < ready:
            time.sleep(0.2)
    env = dict(os.environ, **stack.env)
    rp = subprocess.run(
        [sys.executable, "-m", "riskflow", "replay", str(path), "--speed", speed, "--no-progress"],
        env=env,
        capture_output=True,
        timeout=180,
    )
    assert rp.returncode == 0, rp.stderr.decode()[-2000:]
    # A loaded machine can pause the worker longer than the consumer's quiet period: read again
    # (from the start) until the alerts match or the worker has had ample time.
    deadline = time.monotonic() + 240
    while True:
        raw = stack.consume(stack.settings.topic_alerts, min_count=len(expected), timeout=120, settle=5)
        got = emitted([msgspec.json.decode(v) for v in raw])
        if got == expected or time.monotonic() > deadline:
            break
    missing, extra = sorted(expected - got)[:5], sorted(got - expected)[:5]
    assert got == expected, (
        f"{len(expected - got)} missing {missing}, {len(got - expected)} extra {extra}\n" + (worker.log_text()[-3000:])
    )
