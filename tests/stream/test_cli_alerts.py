"""``riskflow alerts list/show/ack``: filters that cannot silently match nothing, ids by prefix,
the store named and never created by a read. Run as processes, as an officer would."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from riskflow.store import open_store
from tests.support.cli_tools import riskflow
from tests.support.store_tools import make_alert


def ids(r: subprocess.CompletedProcess[str]) -> list[str]:
    assert r.returncode == 0, r.stderr
    return [json.loads(line)["alert_id"] for line in r.stdout.splitlines()]


@pytest.fixture
def here(tmp_path: Path) -> Path:
    """A directory with a store where ``riskflow demo`` or the sink leaves it (.riskflow/)."""
    with open_store(str(tmp_path / ".riskflow" / "alerts.sqlite3")) as s:
        s.upsert_alerts(
            [
                make_alert("aa11", region="330100", entity_kind="private_fund"),
                make_alert("aa22", region="330200", entity_kind="bank"),
                make_alert("ab33", region="330100", entity_kind="private_fund_manager"),
            ]
            + [make_alert(f"c{i:03d}", region="330300") for i in range(7)]
        )
    return tmp_path


@pytest.mark.parametrize("city", ["330100", "Hangzhou", "hangzhou", "杭州"])
def test_region_by_code_english_or_chinese_name(here: Path, city: str) -> None:
    """Issue 20: ``--region Hangzhou`` and ``--region 杭州`` printed nothing, only 330100 worked."""
    assert sorted(ids(riskflow("alerts", "list", "--json", "--region", city, cwd=here))) == ["aa11", "ab33"]


@pytest.mark.parametrize(
    ("option", "value", "valid"),
    [
        ("--region", "Beijing", "330100 Hangzhou 杭州"),
        ("--kind", "fund", "private_fund_manager, private_fund, bank"),
        ("--status", "bogus", "open, acknowledged, assigned, snoozed, resolved"),
    ],
)
def test_unknown_filter_values_are_refused_with_the_valid_ones(here: Path, option: str, value: str, valid: str) -> None:
    r = riskflow("alerts", "list", option, value, cwd=here)
    assert r.returncode == 2 and r.stdout == "" and "Traceback" not in r.stderr
    (line,) = r.stderr.splitlines()
    assert line.startswith("riskflow alerts list: unknown ") and repr(value) in line and valid in line


def test_kind_and_status_filters_work_with_valid_values(here: Path) -> None:
    assert ids(riskflow("alerts", "list", "--json", "--kind", "bank", cwd=here)) == ["aa22"]
    assert len(ids(riskflow("alerts", "list", "--json", "--status", "open", "--limit", "100", cwd=here))) == 10


def test_truncation_is_said_and_the_store_named(here: Path) -> None:
    r = riskflow("alerts", "list", "--limit", "4", cwd=here)
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 4
    store = (here / ".riskflow" / "alerts.sqlite3").resolve()
    assert r.stderr.splitlines() == [f"4 of 10 shown (--limit for more); store sqlite:{store}"]
    r = riskflow("alerts", "list", "--region", "Wenzhou", cwd=here)
    assert len(r.stdout.splitlines()) == 7 and r.stderr.splitlines() == [f"7 alerts; store sqlite:{store}"]


def test_alert_ids_by_unique_prefix(here: Path) -> None:
    r = riskflow("alerts", "show", "ab", cwd=here)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["alert_id"] == "ab33"
    r = riskflow("alerts", "ack", "aa2", "--as", "li.na", cwd=here)
    assert r.returncode == 0, r.stderr
    with open_store(str(here / ".riskflow" / "alerts.sqlite3")) as s:
        assert s.get("aa22").status == "acknowledged"


def test_an_ambiguous_prefix_lists_the_candidates(here: Path) -> None:
    r = riskflow("alerts", "show", "aa", cwd=here)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.splitlines() == ["riskflow alerts show: alert id prefix aa is ambiguous: aa11, aa22"]
    r = riskflow("alerts", "resolve", "c", cwd=here)
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        "riskflow alerts resolve: alert id prefix c is ambiguous: c000, c001, c002, c003, c004, ..."
    ]


def test_no_such_alert(here: Path) -> None:
    r = riskflow("alerts", "show", "zz", cwd=here)
    assert r.returncode == 1 and r.stderr.startswith("riskflow alerts show: no alert zz in sqlite:/")


@pytest.mark.parametrize(
    "args", [["list"], ["show", "aa11"], ["ack", "aa11"], ["rejects"], ["list", "--region", "Hangzhou"]]
)
def test_a_read_from_another_directory_creates_no_empty_store(tmp_path: Path, args: list[str]) -> None:
    """Issue 20: run from another directory, ``alerts list`` silently created a new empty store."""
    r = riskflow("alerts", *args, cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == "" and "Traceback" not in r.stderr
    (line,) = r.stderr.splitlines()
    assert f"no alert store at {(tmp_path / '.riskflow' / 'alerts.sqlite3').resolve()}" in line
    assert "RISKFLOW_STORE_URL" in line
    assert not (tmp_path / ".riskflow").exists()


@pytest.mark.parametrize("args", [["alerts", "list"], ["feed", "--port", "0"]])
def test_an_unreachable_store_database_is_one_line_without_its_password(tmp_path: Path, args: list[str]) -> None:
    from riskflow.broker import free_port

    url = f"postgresql://rf:s3cret@127.0.0.1:{free_port()}/riskflow"
    r = riskflow(*args, cwd=tmp_path, env={"RISKFLOW_STORE_URL": url})
    assert r.returncode == 2 and "Traceback" not in r.stderr and "s3cret" not in r.stderr
    (line,) = r.stderr.splitlines()
    where = " ".join(a for a in args if not a.startswith("-") and not a.isdigit())
    assert line.startswith(f"riskflow {where}: cannot open the alert store postgresql://rf:***@127.0.0.1:")
