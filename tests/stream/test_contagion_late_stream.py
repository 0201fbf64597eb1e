"""Late contagion on the real path: ``riskflow replay --speed max`` of the funds' history, then of
their managers' (the managers' partitions lagging the funds' by the whole history): every push
reaches its fund after the fund's own events passed its time, is re-placed, and the alerts a sink
keeps end as ``riskflow backtest`` gives them, with the corrections marked."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec

from riskflow.backtest import backtest
from riskflow.core.schema import encode_event
from tests.support.contagion_events import adder
from tests.support.kafka_fixtures import Stack


def history(managers: int = 2) -> list[dict[str, Any]]:
    """Each manager has two funds (the second also names it as its parent) advertising a
    guaranteed return at hours 1 and 5 and publishing an opinion every half hour to hour 8; the
    manager loses contact at hour 3 (its push applies at hour 4)."""
    out: list[dict[str, Any]] = []

    ev = adder(out, "late")

    for m in range(managers):
        mid = f"PFM-330100-L{m:04d}"
        reg = {"name": f"L{m}", "registered_capital": 1e7, "legal_rep": "张伟", "address": "杭州"}
        ev(0.1, mid, "private_fund_manager", "entity.registered", "market_regulation", reg)
        for f in range(2):
            fid = f"PF-330100-L{m:02d}{f:02d}"
            parent = {"parent_id": mid} if f else {}
            reg = {"name": fid, "registered_capital": 1e7, "legal_rep": "李强", "address": "杭州", **parent}
            ev(0.2, fid, "private_fund", "entity.registered", "market_regulation", reg)
            fund = {"fund_id": fid, "manager_id": mid, "fund_type": "securities", "structure": "contractual"}
            ev(0.3, fid, "private_fund", "fund.registered", "amac", {**fund, "target_size": 5e7})
            for k in range(2, 17):
                hour = k / 2
                if hour in (1.0, 5.0):
                    ad = {"channel": "wechat", "guaranteed": True}
                    ev(hour, fid, "private_fund", "advertisement.published", "advertising_monitor", ad)
                else:
                    ev(hour, fid, "private_fund", "opinion.published", "public_opinion", {"sentiment": 0.1})
        ev(3.0, mid, "private_fund_manager", "amac.notice", "amac", {"notice": "lost_contact"})
    out.sort(key=lambda e: e["event_time"])
    return out


def kept(alerts: list[dict]) -> dict[str, tuple[Any, ...]]:
    """Per alert id, its last revision as a sink keeps it (not the withdrawn): rule, severity,
    level, index, exposure, tags."""
    best: dict[str, dict] = {}
    for a in alerts:
        if a["alert_id"] not in best or a["revision"] > best[a["alert_id"]]["revision"]:
            best[a["alert_id"]] = a
    return {
        k: (a["rule_id"], a["severity"], a["risk_level"], a["risk_index"], a["affected_amount"], a["risk_tags"])
        for k, a in best.items()
        if not a["evidence"].get("withdrawn")
    }


def replay(stack: Stack, path: Path) -> None:
    env = dict(os.environ, **stack.env)
    cmd = [sys.executable, "-m", "riskflow", "replay", str(path), "--speed", "max", "--no-progress"]
    rp = subprocess.run(cmd, env=env, capture_output=True, timeout=180)
    assert rp.returncode == 0, rp.stderr.decode()[-2000:]


def test_lagging_managers_pushes_are_replaced_live_as_the_backtest(stack: Stack, tmp_path: Path) -> None:
    events = history()
    lines = [encode_event(e) for e in events]
    out: list[dict] = []
    backtest(lines, [], settings=stack.settings, on_alert=lambda a: out.append(msgspec.to_builtins(a)))
    expected = kept(out)
    funds_raised = [v for v in expected.values() if v[0] == "pf.guaranteed_return" and "risk.contagion" in v[5]]
    assert funds_raised  # in event time, the funds' later alerts carry their manager's fall

    funds = tmp_path / "funds.jsonl"
    funds.write_bytes(b"\n".join(v for v, e in zip(lines, events, strict=True) if e["entity_kind"] == "private_fund"))
    managers = tmp_path / "managers.jsonl"
    managers.write_bytes(
        b"\n".join(v for v, e in zip(lines, events, strict=True) if e["entity_kind"] != "private_fund")
    )
    worker = stack.start_worker()
    ready = time.monotonic() + 120
    while "Worker ready" not in worker.log_text() and time.monotonic() < ready:
        time.sleep(0.2)
    replay(stack, funds)
    topic = stack.settings.topic_alerts
    first = stack.consume(topic, min_count=4, timeout=120, settle=5)  # the funds' own alerts are out
    assert first
    replay(stack, managers)
    deadline = time.monotonic() + 240
    while True:
        got = [msgspec.json.decode(v) for v in stack.consume(topic, min_count=len(first) + 1, timeout=120, settle=5)]
        if kept(got) == expected or time.monotonic() > deadline:
            break
    assert kept(got) == expected, worker.log_text()[-3000:]
    # The funds' alerts sent before their manager's push came were corrected, and say so.
    corrections = [a for a in got if "replaced" in a["evidence"]]
    assert corrections and all(a["evidence"]["replaced"]["cause"] == "contagion" for a in corrections)
    assert {a["entity_id"] for a in corrections} == {
        e["entity_id"] for e in events if e["entity_kind"] == "private_fund"
    }
    assert worker.proc.poll() is None
