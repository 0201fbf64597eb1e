"""``riskflow cases list|show|assign|note|check|close|reopen`` as a user runs them: a subprocess
against a store file; refusals are one line, a non-zero exit and no change."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from riskflow.store import open_store
from tests.support.cases_tools import alert


@pytest.fixture
def db(tmp_path: Path) -> str:
    target = str(tmp_path / "cases.sqlite3")
    with open_store(target) as s:
        s.upsert_alerts(
            [
                alert("a1", "red", 91.0),
                alert("b1", "yellow", 44.0, entity="PFM-330300-0007", region="330300"),
                alert("g1", "green", 12.0, entity="PFM-330100-0009"),
            ]
        )
    return target


def cli(db: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKFLOW_")}
    env["RISKFLOW_STORE_URL"] = db
    p = subprocess.run(
        [sys.executable, "-m", "riskflow", "cases", *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert "Traceback" not in p.stderr, p.stderr
    return p


def _case_ids(db: str) -> tuple[str, str]:
    with open_store(db) as s:
        red, yellow = s.list_cases()
        return red.case_id, yellow.case_id


def _snapshot(db: str) -> list[object]:
    with open_store(db) as s:
        return [(c, s.case_log(c.case_id)) for c in s.list_cases()]


def test_list_show_and_the_officers_actions(db: str) -> None:
    red, yellow = _case_ids(db)
    p = cli(db, "list")
    assert p.returncode == 0
    lines = p.stdout.splitlines()
    assert len(lines) == 2, "one case per institution at yellow or above; none for green"
    assert lines[0].startswith(red) and "立即处置、移交" in lines[0] and "Hangzhou 杭州" in lines[0]
    assert lines[1].startswith(yellow) and "非现场监测" in lines[1]
    rows = [json.loads(x) for x in cli(db, "list", "--json", "--region", "330300").stdout.splitlines()]
    assert [r["case_id"] for r in rows] == [yellow] and rows[0]["overdue"] is False

    assert cli(db, "assign", red, "wang.wei", "--as", "li.na").returncode == 0
    assert cli(db, "note", red, "phoned the manager 已电话联系", "--as", "wang.wei").returncode == 0
    assert cli(db, "check", red, "2", "--as", "wang.wei").returncode == 0
    p = cli(db, "close", red, "--outcome", "confirmed", "--reason", "funds missing", "--as", "wang.wei")
    assert p.returncode == 0 and "closed" in p.stdout

    shown = json.loads(cli(db, "show", red, "--json").stdout)
    assert (shown["status"], shown["assignee"], shown["outcome"]) == ("closed", "wang.wei", "confirmed")
    assert shown["checklist"][1]["done"] and shown["alerts"] == ["a1"]
    assert [(e["actor"], e["action"]) for e in shown["log"]] == [
        ("system", "open"),
        ("li.na", "assign"),
        ("wang.wei", "note"),
        ("wang.wei", "check"),
        ("wang.wei", "close"),
    ]
    text = cli(db, "show", red).stdout
    assert "phoned the manager 已电话联系" in text and "[x]" in text and "《防范和处置非法集资条例》" in text
    assert cli(db, "list", "--open").stdout.splitlines()[0].startswith(yellow)
    assert cli(db, "reopen", red, "--as", "boss").returncode == 0


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("show", "nope"), 1, "riskflow cases: no case nope"),
        (("note", "nope", "x"), 1, "riskflow cases: no case nope"),
        (
            ("close", "{red}", "--outcome", "maybe", "--reason", "r"),
            2,
            "refused: bad outcome 'maybe'; one of confirmed",
        ),
        (("note", "{red}", "x" * 5000), 2, "refused: note is 5000 bytes (UTF-8); at most 4096"),
        (("note", "{red}", " "), 2, "refused: a note needs text"),
        (("reopen", "{red}"), 2, "refused: cannot reopen a case that is open"),
        (("check", "{red}", "9"), 2, "refused: no step 9; the checklist has 5"),
        (("assign", "{red}", "wang.wei", "--as", ""), 2, "refused: an action needs the officer's name"),
    ],
)
def test_bad_input_is_one_line_a_non_zero_exit_and_changes_nothing(
    db: str, args: tuple[str, ...], code: int, message: str
) -> None:
    red, _ = _case_ids(db)
    before = _snapshot(db)
    p = cli(db, *(a.replace("{red}", red) for a in args))
    assert p.returncode == code
    assert p.stderr.strip().splitlines() == [p.stderr.strip()] and message in p.stderr, p.stderr
    assert p.stdout == "" and _snapshot(db) == before


def test_a_closed_case_refuses_a_note_and_control_characters_are_escaped(db: str) -> None:
    red, _ = _case_ids(db)
    assert cli(db, "note", red, "line\x1b[2Jcleared", "--as", "li.na").returncode == 0
    out = cli(db, "show", red).stdout
    assert "\x1b" not in out and "\\x1b[2Jcleared" in out
    cli(db, "close", red, "--outcome", "false_alarm", "--reason", "data error", "--as", "li.na")
    before = _snapshot(db)
    p = cli(db, "note", red, "late note", "--as", "li.na")
    assert p.returncode == 2 and "refused: cannot note a case that is closed" in p.stderr
    assert _snapshot(db) == before
