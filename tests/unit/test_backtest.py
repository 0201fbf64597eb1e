"""The backtest: the measures on a hand-made history, batch independence, CLI, and quality on simulations."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import msgspec
import pytest

from riskflow.backtest import backtest, format_table
from riskflow.cli import main
from riskflow.core.schema import encode_event
from riskflow.sim import simulate

PACK = """
version: "test.1"
rules:
  - id: t.guaranteed
    name_zh: 承诺保本保收益
    name_en: Guaranteed-return promise
    kind: threshold
    entity_kinds: [private_fund, enterprise]
    severity: high
    dimension: inducement
    rationale: test
    source: 《私募投资基金监督管理暂行办法》第15条
    params:
      event_type: advertisement.published
      when:
        - {field: guaranteed, op: "==", value: true}
"""


def ev(i: int, eid: str, day: float, guaranteed: bool, kind: str = "private_fund") -> dict:
    t = dt.datetime(2025, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=8))) + dt.timedelta(days=day)
    return {
        "schema": "riskflow.event/v1",
        "event_id": f"e{i}",
        "event_type": "advertisement.published",
        "entity_id": eid,
        "entity_kind": kind,
        "region": "330100",
        "event_time": t.isoformat(),
        "source": "advertising_monitor",
        "payload": {"channel": "wechat", "guaranteed": guaranteed},
    }


@pytest.fixture
def pack(tmp_path: Path):  # type: ignore[no-untyped-def]
    from detectors.rules import load_pack

    p = tmp_path / "pack.yaml"
    p.write_text(PACK)
    return load_pack(p)


def test_measures_on_a_hand_made_history(pack) -> None:  # type: ignore[no-untyped-def]
    events = [
        ev(1, "BAD", 0, False),  # history starts at day 0
        ev(2, "BAD", 5, True),  # before onset: not a true alert
        ev(3, "BAD", 20, True),  # true, a new episode (> 14 quiet days): lead 40 - 20 = 20 days
        ev(4, "BAD", 22, True),  # folds into the same episode: the same alert id, revision 2
        ev(9, "BAD", 38, True),  # true, a new episode
        ev(5, "MISS", 25, False),  # a bad entity never alerted
        ev(6, "N1", 50, True),  # a false alert on a normal entity
        ev(7, "N2", 100, False),  # history ends at day 100
        ev(8, "LOOK", 60, True),  # a false alert on a benign look-alike
    ]
    labels = [
        {
            "entity_id": "BAD",
            "scenario": "ponzi_fund",
            "onset_time": "2025-01-11T00:00:00+08:00",
            "failure_time": "2025-02-10T00:00:00+08:00",
        },
        {
            "entity_id": "MISS",
            "scenario": "ponzi_fund",
            "onset_time": "2025-01-11T00:00:00+08:00",
            "failure_time": "2025-02-10T00:00:00+08:00",
        },
        {
            "entity_id": "LOOK",
            "scenario": "benign_lookalike",
            "onset_time": "2025-02-25T00:00:00+08:00",
            "failure_time": None,
            "normal": True,
        },
    ]
    # Only the test rule is scored: the shared factory also adds the risk index and anomaly detectors.
    s = backtest([encode_event(e) for e in events], labels, pack).summary(rule_ids={"t.guaranteed"})
    assert s["recall"] == 0.5
    assert s["precision"] == round(2 / 5, 4)  # 2 true of 5 alert ids
    assert s["false_alerts"] == 2
    assert s["false_alerts_per_1000_entity_days"] == round(2 * 1000 / (3 * 100), 3)  # N1, N2, LOOK over 100 days
    assert s["median_lead_days"] == 20.0 and s["worst_lead_days"] == 20.0
    assert s["recall_30d_before_failure"] == 0.0  # 20 days of warning is not 30
    p = s["per_scenario"]["ponzi_fund"]
    assert (p["detected"], p["alerts_in_window"], p["alerts_before_onset"]) == (1, 2, 1)
    assert p["rule_hits"] == {"t.guaranteed": 3}
    b = s["per_scenario"]["benign_lookalike"]
    assert b["normal"] and b["alerted_entities"] == 1 and b["false_alerts"] == 1
    assert s["per_rule"]["t.guaranteed"] == {"alerts": 5, "on_bad_entities": 3, "on_normal_entities": 2, "entities": 3}
    by_severity = [p["recall"] for p in s["operating_points"] if "min_severity" in p]
    assert by_severity == [0.5, 0.5, 0.5, 0.0]  # the rule is "high": nothing is critical
    table = format_table(s)
    assert "ponzi_fund" in table and "t.guaranteed" in table


def test_same_alerts_whatever_the_batch_size() -> None:
    events, labels = simulate(entities=40, days=60, seed=9)
    lines = [encode_event(e) for e in events]
    runs = [backtest(lines, labels, batch_size=b).alerts for b in (1, 37, 100_000)]
    ids = [{k: (r.alert.severity, r.alert.revision) for k, r in run.items()} for run in runs]
    assert ids[0] == ids[1] == ids[2] and ids[0]


def test_the_library_reads_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only entry points read RISKFLOW_* variables: ``backtest`` without settings runs the shipped
    defaults, whatever the environment says (here a risk config that does not exist and a
    different partition count)."""
    events, labels = simulate(entities=20, days=40, seed=3)
    lines = [encode_event(e) for e in events]
    want = backtest(lines, labels, now=0.0).summary()
    monkeypatch.setenv("RISKFLOW_RISK_CONFIG", "/nonexistent/risk.yaml")
    monkeypatch.setenv("RISKFLOW_PARTITIONS", "1")
    got = backtest(lines, labels, now=0.0).summary()
    want.pop("seconds"), got.pop("seconds")  # wall time of the run
    assert got == want


def test_ponzi_funds_are_caught_before_they_fail() -> None:
    events, labels = simulate(entities=300, days=365, seed=21, scenarios={"ponzi_fund": 0.02, "benign_lookalike": 0.02})
    s = backtest([encode_event(e) for e in events], labels).summary()
    p = s["per_scenario"]["ponzi_fund"]
    assert p["entities"] == 6 and p["recall"] == 1.0
    assert p["worst_lead_days"] > 30, "the first warning comes more than a month before the collapse"


def test_cli_json_and_csv_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events, labels = simulate(entities=40, days=60, seed=3)
    jl = tmp_path / "e.jsonl"
    jl.write_bytes(b"".join(encode_event(e) + b"\n" for e in events))
    lab = tmp_path / "l.jsonl"
    lab.write_bytes(b"".join(msgspec.json.encode(x) + b"\n" for x in labels))
    cols = ["event_id", "event_type", "entity_id", "entity_kind", "region", "event_time", "source", "payload"]
    with open(tmp_path / "e.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for e in events:
            w.writerow([*(e[c] for c in cols[:-1]), json.dumps(e["payload"], ensure_ascii=False)])
    out = {}
    for name in ("e.jsonl", "e.csv"):
        assert (
            main(
                [
                    "backtest",
                    str(tmp_path / name),
                    "--labels",
                    str(lab),
                    "--json",
                    "--alerts-out",
                    str(tmp_path / f"{name}.alerts"),
                ]
            )
            == 0
        )
        out[name] = json.loads(capsys.readouterr().out)
    for key in ("recall", "precision", "false_alerts_per_1000_entity_days", "median_lead_days", "per_scenario"):
        assert key in out["e.jsonl"]
    assert out["e.jsonl"]["events"] == len(events) and out["e.jsonl"]["dead_letters"] == {}
    for k in ("recall", "precision", "per_rule", "per_scenario", "alerts"):
        assert out["e.jsonl"][k] == out["e.csv"][k]
    alerts = (tmp_path / "e.jsonl.alerts").read_bytes().splitlines()
    assert len({msgspec.json.decode(a)["alert_id"] for a in alerts}) == out["e.jsonl"]["alerts"]
    assert main(["backtest", str(jl), "--labels", str(lab)]) == 0
    assert "recall" in capsys.readouterr().out
