"""Officers' feedback closes the loop: cases opened from a simulated history (every alert revision
through the store's sink path), closed by the test, exported with ``riskflow cases export
--labels`` and fed to ``riskflow backtest --labels``, give the precision ``riskflow rules
quality`` shows; and there is exactly one case per institution that reached yellow or above."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec

from riskflow.core.alerts import decode_alert
from riskflow.core.schema import encode_event
from riskflow.sim import simulate
from riskflow.store import open_store
from riskflow.store.base import Incoming

CASE_LEVELS = ("yellow", "orange", "red")


def cli(store: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKFLOW_")}
    env["RISKFLOW_STORE_URL"] = store
    p = subprocess.run([sys.executable, "-m", "riskflow", *args], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
    return p


def test_exported_labels_give_the_backtest_the_precision_the_quality_view_shows(tmp_path: Path) -> None:
    events, truth = simulate(entities=300, days=200, seed=7)
    ev_file, alerts_file, labels_file = tmp_path / "events.jsonl", tmp_path / "alerts.jsonl", tmp_path / "labels.jsonl"
    ev_file.write_bytes(b"".join(encode_event(e) + b"\n" for e in events))
    store = str(tmp_path / "cases.sqlite3")
    cli(store, "backtest", str(ev_file), "--alerts-out", str(alerts_file))

    raw = alerts_file.read_bytes().splitlines()
    alerts = [decode_alert(x) for x in raw]
    with open_store(store) as s:
        for i in range(0, len(raw), 100):  # as the sink stores them: every revision, in batches
            s.write_batch([Incoming(x, decode_alert(x)) for x in raw[i : i + 100]])
        s.write_batch([Incoming(x, decode_alert(x)) for x in raw[:100]])  # a re-delivered batch
        cases = s.list_cases(limit=10_000)
        reached = {a.entity_id for a in alerts if a.risk_level in CASE_LEVELS}
        assert sorted(c.entity_id for c in cases) == sorted(reached), "exactly one case per institution at yellow+"
        assert len(reached) >= 10
        bad = {lab["entity_id"] for lab in truth if not lab.get("normal")}
        closed = {"confirmed": 0, "false_alarm": 0}
        for c in cases:  # officers judge: the truly failing ones confirmed, every other one a false alarm
            outcome = "confirmed" if c.entity_id in bad else "false_alarm"
            s.case_action(c.case_id, "close", actor="li.na", outcome=outcome, reason="reviewed")
            closed[outcome] += 1
    assert closed["confirmed"] and closed["false_alarm"], closed

    out = cli(store, "cases", "export", "--labels", str(labels_file)).stdout
    labels = [json.loads(x) for x in labels_file.read_text().splitlines()]
    assert out.startswith(f"wrote {len(cases)} labels") and len(labels) == len(cases)
    assert sum(1 for lab in labels if lab.get("normal")) == closed["false_alarm"]

    report: dict[str, Any] = msgspec.json.decode(
        cli(store, "backtest", str(ev_file), "--labels", str(labels_file), "--json").stdout
    )
    quality = json.loads(cli(store, "rules", "quality", "--json").stdout)
    assert report["precision"] is not None and 0 < report["precision"] < 1
    assert quality["all"]["precision"] == report["precision"]
    assert quality["all"]["closed"] == len(cases)
    assert quality["all"]["confirmed_share"] == round(closed["confirmed"] / len(cases), 4)
    assert quality["all"]["median_lead_days"] is not None
    per_rule = {k: v for k, v in quality.items() if k != "all"}
    assert sum(v["hits"] for v in per_rule.values()) == quality["all"]["hits"] == len({a.alert_id for a in alerts})
    assert sum(v["cases_opened"] for v in per_rule.values()) == len(cases)
    table = cli(store, "rules", "quality").stdout
    assert table.splitlines()[0].startswith("rule") and "risk.level" in table
