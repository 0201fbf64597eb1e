"""``riskflow alerts list/show/ack/...`` against a store file."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from riskflow.cli import main
from riskflow.store import open_store
from tests.support.kafka_fixtures import Stack
from tests.support.store_tools import make_alert


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
    junk: list[tuple[str, bytes | None, bytes]] = [(t, b"r1", b"{not an alert"), (t, b"r3", b"\xff\x1b[2J")]
    stack.produce(junk + [(t, a.alert_id.encode(), a.to_json()) for a in alerts])  # junk: skipped, no crash
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
    assert lines[1].startswith("↑ revision 3 (level orange→red 升级)  ")
    assert lines[2].startswith("↻ revision 5 (episode now 5 hits 次)  ")
    assert lines[3].startswith("↓ revision 6 (level red→yellow 降级)  ")


# An id that would set the terminal title, ring, clear the screen and turn the rest right-to-left.
HOSTILE = "PF-1\x1b]0;pwned\x07\x1b[2J\u202etxt.exe\x9b\x7f"
HOSTILE_SHOWN = "PF-1\\x1b]0;pwned\\x07\\x1b[2J\\u202etxt.exe\\x9b\\x7f"
UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


@pytest.fixture
def hostile_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    target = str(tmp_path / "alerts.sqlite3")
    monkeypatch.setenv("RISKFLOW_STORE_URL", target)
    with open_store(target) as s:
        s.upsert_alerts([make_alert("id\x1b[31m\u2066", entity_id=HOSTILE, title_en="Return\x07\u2028promise")])
    return target


def test_list_escapes_control_characters_in_every_field(hostile_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["alerts", "list"]) == 0
    assert capsys.readouterr().out == (
        "id\\x1b[31m\\u2066  2025-04-01 10:00  orange  65.0  open          Hangzhou 杭州  "
        f"{HOSTILE_SHOWN}  承诺保本保收益 Return\\x07\\u2028promise\n"
    )
    assert main(["alerts", "list", "--json"]) == 0
    out = capsys.readouterr().out
    assert not UNSAFE.search(out) and out.count("\n") == 1
    row = json.loads(out)  # still valid JSON, and it decodes to the very values stored
    assert (row["alert_id"], row["entity_id"], row["title_en"]) == (
        "id\x1b[31m\u2066",
        HOSTILE,
        "Return\x07\u2028promise",
    )
    assert "\\u202e" in out and "\\u009b" in out and "\\u001b" in out


def test_show_and_actions_escape_control_characters(hostile_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    aid = "id\x1b[31m\u2066"
    assert main(["alerts", "show", aid]) == 0
    out = capsys.readouterr().out
    assert not UNSAFE.search(out) and json.loads(out)["entity_id"] == HOSTILE
    assert main(["alerts", "ack", aid, "--as", "li.na"]) == 0
    assert capsys.readouterr().out.startswith("id\\x1b[31m\\u2066  2025-04-01 10:00  orange  65.0  acknowledged")
    assert main(["alerts", "show", "nope\x1b[2J"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("riskflow alerts show: no alert nope\\x1b[2J in sqlite:/") and err.count("\n") == 1


def test_tail_lines_escape_control_characters() -> None:
    from riskflow.feedprint import render

    a = make_alert("t1", entity_id=HOSTILE, title_zh="承诺\x1b[8m保本", evidence={"note": "\u202eevil"})
    assert render(a, a.to_json(), None, as_json=False) == (
        f"2025-04-01 10:00  HIGH orange  Hangzhou 杭州  {HOSTILE_SHOWN}  承诺\\x1b[8m保本 Guaranteed-return promise"
        "  (note=\\u202eevil)"
    )
    line = render(a, a.to_json(), (1, "orange"), as_json=True)
    assert not UNSAFE.search(line)
    d = json.loads(line)
    assert (d["entity_id"], d["evidence"], d["previous"]) == (
        HOSTILE,
        {"note": "\u202eevil"},
        {"revision": 1, "risk_level": "orange"},
    )


def test_rejects_command_lists_the_ledger(hostile_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    from riskflow.store.base import Incoming

    with open_store(hostile_db) as s:
        s.write_batch([Incoming.of(make_alert("bad\x1b", entity_id="PF\x00"), "riskflow.alerts/3@41")])
    assert main(["alerts", "rejects"]) == 0
    out = capsys.readouterr().out
    assert out.endswith(
        "  bad_text     bad\\x1b  riskflow.alerts/3@41"
        "  riskflow.store.base.Refused: entity_id contains a NUL character\n"
    )
    assert main(["alerts", "rejects", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert (r["alert_id"], r["reason"], r["source"]) == ("bad\\x1b", "bad_text", "riskflow.alerts/3@41")


def test_contagion_alert_lines_name_a_region_and_fit_the_width() -> None:
    """A contagion alert on a counterparty RiskFlow has no events of carried no region, and
    the line showed none; lines ran to 447 characters (issue 20)."""
    from riskflow.feedprint import fit, format_alert, render

    counterparty = make_alert(
        "k1", entity_id="REL-211-4", region="", rule_id="risk.contagion", evidence={"source": "FG-330100-00211"}
    )
    assert "  via Hangzhou 经杭州  REL-211-4  " in format_alert(counterparty)
    known = make_alert("k2", entity_id="PF-330200-00154", region="", evidence={"source": "FG-330100-00211"})
    assert "  Ningbo 宁波  PF-330200-00154  " in format_alert(known)
    unknown = make_alert("k3", entity_id="X-1", region="", evidence={})
    assert "  region unknown 地区未知  X-1  " in format_alert(unknown)
    wide = make_alert("k4", revision=2, evidence={f"k{i}": "值" * 20 for i in range(20)})
    line = render(wide, wide.to_json(), (1, "yellow"), as_json=False, width=80)
    assert line.startswith("↑ revision 2 (level yellow→orange 升级)  ") and line.endswith("…")
    assert sum(2 if "\u4e00" <= c <= "\u9fff" else 1 for c in line) <= 80
    assert fit("杭州杭州", 4) == "杭…" and fit("short", 80) == "short"
