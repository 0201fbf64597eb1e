"""``riskflow alerts list/show/ack/...`` against a store file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from riskflow.cli import main
from riskflow.store import open_store
from tests.kafka_fixtures import Stack
from tests.test_store import make_alert


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    target = str(tmp_path / "alerts.sqlite3")
    monkeypatch.setenv("RISKFLOW_STORE_URL", target)
    with open_store(target) as s:
        s.upsert_alerts(
            [
                make_alert("a1", risk_level="red", risk_index=90.0),
                make_alert("a2", region="330300", risk_level="yellow", event_time="2025-04-05T10:00:00+08:00"),
            ]
        )
    return target


def test_list_json_and_filters(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["alerts", "list", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["alert_id"] for r in rows] == ["a2", "a1"]
    assert rows[0]["status"] == "open" and rows[0]["title_zh"] == "承诺保本保收益"
    assert main(["alerts", "list", "--level", "red"]) == 0
    out = capsys.readouterr().out
    assert "a1" in out and "a2" not in out and "Hangzhou 杭州" in out
    assert main(["alerts", "list", "--region", "330300", "--json"]) == 0
    assert [json.loads(x)["alert_id"] for x in capsys.readouterr().out.splitlines()] == ["a2"]


def test_actions_persist_with_audit(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["alerts", "ack", "a1", "--note", "phoned the manager", "--as", "li.na"]) == 0
    assert main(["alerts", "assign", "a1", "--to", "wang.wei", "--as", "li.na"]) == 0
    assert main(["alerts", "snooze", "a2", "--days", "3", "--reason", "awaiting filing", "--as", "li.na"]) == 0
    capsys.readouterr()
    assert main(["alerts", "ack", "a1", "--as", "li.na"]) == 2, "an assigned alert cannot be acknowledged again"
    assert "refused" in capsys.readouterr().err
    assert main(["alerts", "ack", "zzz"]) == 1
    capsys.readouterr()
    assert main(["alerts", "show", "a1"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["status"], shown["assignee"]) == ("assigned", "wang.wei")
    assert [(e["action"], e["actor"], e["note"]) for e in shown["audit"]] == [
        ("ack", "li.na", "phoned the manager"),
        ("assign", "li.na", "to wang.wei"),
    ]
    with open_store(db) as s:
        assert s.get("a2").status == "snoozed" and s.get("a2").snooze_reason == "awaiting filing"


def test_tail_filters_by_level_and_region(stack: Stack) -> None:
    """``riskflow alerts tail --level red --region 330100`` on the real broker, as a process."""
    t = stack.settings.topic_alerts
    alerts = [
        make_alert("r1", risk_level="red"),
        make_alert("r2", risk_level="red", region="330300"),
        make_alert("o1", risk_level="orange"),
        make_alert("r3", risk_level="red", revision=1),
        make_alert("r1", risk_level="red", revision=2),  # a later revision: printed, marked
        make_alert("r1", risk_level="red", revision=2),  # the same (id, revision) again: not
        make_alert("r1", risk_level="red", revision=1),  # superseded: not
    ]
    stack.produce([(t, a.alert_id.encode(), a.to_json()) for a in alerts])
    out_path = stack.tmp / "tail.out"
    env = dict(os.environ, **stack.env)
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "riskflow", "alerts", "tail", "--json", "--level", "red", "--region", "330100"],
            env=env,
            stdout=out,
            stderr=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and out_path.read_text().count("\n") < 3:
            time.sleep(0.2)
        time.sleep(2)  # room for anything that should not be there to show up
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    got = [json.loads(line) for line in out_path.read_text().splitlines()]
    assert sorted((a["alert_id"], a["revision"]) for a in got) == [("r1", 1), ("r1", 2), ("r3", 1)]
    assert {(a["risk_level"], a["region"]) for a in got} == {("red", "330100")}
    rev = next(a for a in got if a["revision"] == 2)
    assert rev["previous"] == {"revision": 1, "risk_level": "red"}
    assert all("previous" not in a for a in got if a["revision"] == 1)


def test_tail_marks_revisions_once() -> None:
    """Officers see level upgrades and growing episodes; each (id, revision) once."""
    from riskflow.feedprint import Tracker, render

    t = Tracker()
    seq = [
        make_alert("e1", risk_level="orange", revision=1),
        make_alert("e1", risk_level="red", revision=3),
        make_alert("e1", risk_level="red", revision=3),
        make_alert("e1", risk_level="red", revision=2),
        make_alert("e1", risk_level="red", revision=5, episode={"count": 5}),
        make_alert("e1", risk_level="yellow", revision=6),
    ]
    lines = []
    for a in seq:
        fresh, prev = t.see(a)
        if fresh:
            lines.append(render(a, a.to_json(), prev, as_json=False))
    assert len(lines) == 4
    assert not lines[0].startswith(("↑", "↓", "↻"))
    assert lines[1].startswith("↑ revision 3: orange→red  ")
    assert lines[2].startswith("↻ revision 5: 5 hits 次  ")
    assert lines[3].startswith("↓ revision 6: red→yellow  ")
