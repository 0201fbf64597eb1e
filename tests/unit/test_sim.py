"""The simulator: contract-valid, deterministic, and each scenario shows the signals issue 3's rules look for."""

from __future__ import annotations

import datetime as dt
import gzip
import itertools
from collections import defaultdict
from pathlib import Path
from typing import Any

import msgspec
import pytest

from riskflow.cli import main
from riskflow.core.schema import EVENT_TYPES, parse_event
from riskflow.sim import SCENARIOS, generate, parse_mix, simulate


@pytest.fixture(scope="module")
def history() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return simulate(entities=400, days=365, seed=11)


def ts(s: str) -> float:
    return dt.datetime.fromisoformat(s).timestamp()


def by_entity(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        out[e["entity_id"]].append(e)
    return out


def test_every_event_is_valid_past_and_in_order(history: tuple[list, list]) -> None:
    events, _ = history
    now = dt.datetime.now(dt.UTC).timestamp()
    ids = set()
    last = 0.0
    for e in events:
        ev = parse_event(msgspec.json.encode(e), max_future_seconds=0)
        assert ev.ts <= now and ev.ts >= last
        last = ev.ts
        ids.add(ev.event_id)
    assert len(ids) == len(events), "event ids must be unique"
    assert {e["event_type"] for e in events} == set(EVENT_TYPES), "every catalogue type occurs"


def test_deterministic_for_a_seed_and_different_across_seeds() -> None:
    a = simulate(entities=60, days=120, seed=5)
    assert simulate(entities=60, days=120, seed=5) == a
    assert simulate(entities=60, days=120, seed=6) != a


def test_population_is_concentrated_like_zhejiang() -> None:
    pop = generate(entities=2000, days=30, seed=1).population
    funds = [e for e in pop if e.kind in ("private_fund", "private_fund_manager")]
    share = sum(e.region in ("330100", "330200", "330400") for e in funds) / len(funds)
    assert share > 0.7
    others = [e for e in pop if e.kind not in ("private_fund", "private_fund_manager")]
    assert len({e.region for e in others}) == 11


def test_normal_redemptions_are_paid_in_full(history: tuple[list, list]) -> None:
    events, labels = history
    bad = {lab["entity_id"] for lab in labels if not lab.get("normal")}
    req: dict[str, float] = {}
    paid: dict[str, float] = {}
    end = ts(events[-1]["event_time"])
    for e in events:
        if e["entity_id"] in bad:
            continue
        if e["event_type"] == "fund.redemption_requested" and ts(e["event_time"]) < end - 6 * 86400:
            req[e["payload"]["request_id"]] = e["payload"]["amount"]
        elif e["event_type"] == "fund.redemption_paid":
            paid[e["payload"]["request_id"]] = e["payload"]["amount"]
    assert req, "normal funds redeem"
    assert all(r in paid and paid[r] == req[r] for r in req)


def test_labels_follow_the_contract(history: tuple[list, list]) -> None:
    events, labels = history
    assert {lab["scenario"] for lab in labels} == set(SCENARIOS)
    ents = {e["entity_id"]: e["entity_kind"] for e in events}
    end = ts(events[-1]["event_time"])
    for lab in labels:
        assert ents[lab["entity_id"]] in SCENARIOS[lab["scenario"]].kinds
        if lab.get("normal"):
            assert lab["failure_time"] is None and SCENARIOS[lab["scenario"]].benign
        else:
            assert ts(lab["onset_time"]) < ts(lab["failure_time"]) <= end + 86400


def _window_max(times: list[float], days: float) -> int:
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] < t - days * 86400:
            j += 1
        best = max(best, i - j + 1)
    return best


def _scenario_entities(labels: list[dict], name: str) -> list[dict]:
    out = [lab for lab in labels if lab["scenario"] == name]
    assert out, name
    return out


def test_ponzi_fund_signals(history: tuple[list, list]) -> None:
    events, labels = history
    ev = by_entity(events)
    for lab in _scenario_entities(labels, "ponzi_fund"):
        mine = ev[lab["entity_id"]]
        small = {
            e["payload"]["investor_id"]
            for e in mine
            if e["event_type"] == "fund.subscription"
            and e["payload"]["investor_type"] == "individual"
            and e["payload"]["amount"] < 1_000_000
        }
        assert len(small) > 200
        ads = [e for e in mine if e["event_type"] == "advertisement.published" and e["payload"].get("guaranteed")]
        assert ads and max(a["payload"]["promised_return"] for a in ads) > 4 * 0.0345
        requested = {e["payload"]["request_id"] for e in mine if e["event_type"] == "fund.redemption_requested"}
        paid = {e["payload"]["request_id"] for e in mine if e["event_type"] == "fund.redemption_paid"}
        assert len(requested - paid) >= 5
        out = [e["payload"] for e in mine if e["event_type"] == "flow.transfer" and e["payload"]["direction"] == "out"]
        assert sum(p["amount"] for p in out if p["related_party"]) > 0.5 * sum(p["amount"] for p in out)
        assert {"lost_contact", "abnormal_operation"} <= {
            e["payload"]["notice"] for e in mine if e["event_type"] == "amac.notice"
        }
        complaints = [ts(e["event_time"]) for e in mine if e["event_type"] == "complaint.filed"]
        assert _window_max(complaints, 30) >= 5
        changes = [ts(e["event_time"]) for e in mine if e["event_type"] == "entity.changed"]
        assert _window_max(changes, 180) >= 3
        assert {"office_closed", "crowd_gathering"} <= {
            e["payload"]["observation"] for e in mine if e["event_type"] == "grid.report"
        }
        failure = ts(lab["failure_time"])
        assert all(ts(e["event_time"]) <= failure + 1 for e in mine if e["event_type"] == "amac.notice")


def test_illegal_fundraising_fan_in(history: tuple[list, list]) -> None:
    events, labels = history
    ev = by_entity(events)
    for lab in _scenario_entities(labels, "illegal_fundraising"):
        inflows = [
            e
            for e in ev[lab["entity_id"]]
            if e["event_type"] == "flow.transfer"
            and e["payload"]["direction"] == "in"
            and e["payload"].get("channel") == "personal_account"
        ]
        assert all(e["entity_kind"] == "enterprise" for e in inflows)
        # at least 150 distinct individuals and 1,000,000 CNY inside one 90-day window
        times = sorted(inflows, key=lambda e: e["event_time"])
        best_people, best_sum = 0, 0.0
        for i, e in enumerate(times):
            t = ts(e["event_time"])
            win = [x for x in times[i:] if ts(x["event_time"]) < t + 90 * 86400]
            best_people = max(best_people, len({x["payload"]["counterparty_id"] for x in win}))
            best_sum = max(best_sum, sum(x["payload"]["amount"] for x in win))
        assert best_people >= 150 and best_sum >= 1_000_000


def test_institution_scenarios_breach_their_limits(history: tuple[list, list]) -> None:
    events, labels = history
    ev = by_entity(events)

    def reports(eid: str) -> list[dict]:
        return [e["payload"] for e in ev[eid] if e["event_type"] == "report.prudential"]

    for lab in _scenario_entities(labels, "bank_liquidity_squeeze"):
        r = reports(lab["entity_id"])
        assert min(p["capital_adequacy_ratio"] for p in r if "capital_adequacy_ratio" in p) < 0.08
        assert min(p["liquidity_coverage_ratio"] for p in r if "liquidity_coverage_ratio" in p) < 0.25
        assert max(p["npl_ratio"] for p in r if "npl_ratio" in p) > 0.05
    for lab in _scenario_entities(labels, "guarantee_chain_default"):
        r = reports(lab["entity_id"])
        assert max(p["guarantee_leverage"] for p in r if "guarantee_leverage" in p) > 10
        assert max(p["largest_borrower_share"] for p in r if "largest_borrower_share" in p) > 0.10
    # ... and no normal institution does
    bad = {lab["entity_id"] for lab in labels}
    for eid, mine in ev.items():
        if eid in bad:
            continue
        for e in mine:
            if e["event_type"] == "report.prudential":
                p = e["payload"]
                assert p.get("capital_adequacy_ratio", 1) >= 0.105 and p.get("npl_ratio", 0) <= 0.05
                assert p.get("liquidity_coverage_ratio", 1) >= 0.25 and p.get("guarantee_leverage", 0) <= 10
                assert p.get("largest_borrower_share", 0) <= 0.10


def test_nav_manipulation_is_too_smooth_then_jumps(history: tuple[list, list]) -> None:
    events, labels = history
    ev = by_entity(events)
    for lab in _scenario_entities(labels, "nav_manipulation"):
        onset = ts(lab["onset_time"])
        navs = [
            e["payload"]["nav"]
            for e in ev[lab["entity_id"]]
            if e["event_type"] == "fund.nav_reported" and ts(e["event_time"]) > onset
        ]
        rets = [b / a - 1 for a, b in itertools.pairwise(navs)]
        smooth = rets[:-1]
        mean = sum(smooth) / len(smooth)
        assert (sum((r - mean) ** 2 for r in smooth) / len(smooth)) ** 0.5 < 0.002
        assert rets[-1] < -0.2


def test_normal_entities_stay_clear(history: tuple[list, list]) -> None:
    events, labels = history
    bad = {lab["entity_id"] for lab in labels if not lab.get("normal")}
    for eid, mine in by_entity(events).items():
        if eid in bad:
            continue
        for e in mine:
            p = e["payload"]
            if e["event_type"] == "fund.subscription":
                assert p["amount"] >= 1_000_000
            elif e["event_type"] == "advertisement.published":
                assert not p.get("guaranteed") and (p.get("promised_return") or 0) < 0.05
            elif e["event_type"] == "amac.notice":
                raise AssertionError(f"normal entity {eid} got an AMAC notice")
            elif e["event_type"] == "grid.report":
                assert p["observation"] == "normal"
        complaints = [ts(e["event_time"]) for e in mine if e["event_type"] == "complaint.filed"]
        assert _window_max(complaints, 30) < 5, eid


def test_mix_and_intensity() -> None:
    h = generate(entities=100, days=200, seed=2, scenarios={"ponzi_fund": 0.05})
    assert [lab["scenario"] for lab in h.labels] == ["ponzi_fund"] * 5
    weak = generate(entities=100, days=200, seed=2, scenarios={"ponzi_fund": 0.05}, intensity=0.3)
    assert len(weak.events) < len(h.events)
    with pytest.raises(ValueError, match="unknown scenario"):
        parse_mix("ponzi=0.1")


def test_cli_writes_gzip_and_labels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, lab = tmp_path / "e.jsonl.gz", tmp_path / "l.jsonl"
    args = ["simulate", "--entities", "50", "--days", "60", "--seed", "4", "--out", str(out), "--labels", str(lab)]
    assert main([*args, "--scenarios", "ponzi_fund=0.04,benign_lookalike=0.02"]) == 0
    with gzip.open(out) as f:
        lines = f.read().splitlines()
    events, labels = simulate(50, 60, 4, scenarios={"ponzi_fund": 0.04, "benign_lookalike": 0.02})
    assert [msgspec.json.decode(x) for x in lines] == events
    assert [msgspec.json.decode(x) for x in lab.read_bytes().splitlines()] == labels
    assert main(["simulate", "--days", "100000", "--out", str(out)]) == 2
    assert "in the future" in capsys.readouterr().err
