"""Rule kinds and the event-time machinery: loading errors, bounded state, and firing that
depends only on the order of events within each partition (not batches, not restarts)."""

from __future__ import annotations

import itertools
import math
import random
from pathlib import Path

import pytest

from bench.rules import messages  # the benchmark routes messages exactly as this test needs
from detectors.engine import Engine, EntityState, decode_state, encode_state
from detectors.pipeline import BatchProcessor, RawMessage
from detectors.rules import RuleError, load_pack, load_texts
from riskflow.core.schema import encode_event, parse_event
from riskflow.simulate import simulate
from tests.support.pack_tools import RULES, event

GOOD = """
version: "1"
rules:
  - id: t.complaints
    name_zh: 投诉
    name_en: Complaints
    kind: window
    severity: medium
    dimension: complaints
    rationale: r
    source: 《某办法》第1条
    params: {event_type: complaint.filed, agg: count, window_days: 7, op: ">=", threshold: 2}
"""


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("kind: window", "kind: nope", "kind"),
        ("severity: medium", "severity: urgent", "severity"),
        ("    source: 《某办法》第1条\n", "", "source"),
        ("agg: count", "agg: median", "params.agg"),
        ("window_days: 7", "window_days: -1", "params.window_days"),
        ("event_type: complaint.filed", "event_type: complaint.made", "params.event_type"),
        ('op: ">="', 'op: "<"', "params.op"),
        ("threshold: 2", "threshold: 2, colour: red", "params.colour"),
        ("    rationale: r\n", "    rationale: r\n    rationle: typo\n", "rationle"),
    ],
)
def test_loading_names_file_rule_and_field(old: str, new: str, field: str) -> None:
    text = GOOD.replace(old, new)
    assert text != GOOD
    with pytest.raises(RuleError) as exc:
        load_texts({"bad.yaml": text})
    assert exc.value.where == "bad.yaml" and exc.value.field == field
    assert exc.value.rule_id == "t.complaints"
    assert "bad.yaml" in str(exc.value) and "t.complaints" in str(exc.value) and field in str(exc.value)


def test_loading_a_file_reports_its_path(tmp_path: Path) -> None:
    bad = tmp_path / "x.yaml"
    bad.write_text(GOOD.replace("field: x", "").replace("window_days: 7", "window_days: soon"))
    with pytest.raises(RuleError, match=r"x\.yaml: rule 't\.complaints': field 'params\.window_days'"):
        load_pack(bad)
    with pytest.raises(RuleError, match="duplicate id"):
        load_texts({"a.yaml": GOOD, "b.yaml": GOOD})
    with pytest.raises(RuleError, match=r"field 'params\.field': must name a field of complaint\.filed"):
        load_texts({"a.yaml": GOOD.replace("agg: count", "agg: sum, field: price")})


def test_lpr_is_configurable_and_changes_the_version() -> None:
    base = load_pack()
    rule = {r.id: r for r in base.detectors}["pf.return_above_4lpr"]
    assert rule.when[0].value == pytest.approx(4 * 0.030)
    higher = load_pack(constants={"lpr_1y": 0.035})
    assert {r.id: r for r in higher.detectors}["pf.return_above_4lpr"].when[0].value == pytest.approx(0.14)
    assert higher.version != base.version
    assert load_pack().version == base.version  # deterministic


def test_window_state_is_bounded_and_serialisable() -> None:
    rule = RULES["ent.fanin_150_people"]
    eng = Engine([rule], dedup_window=0)
    state = None
    for i in range(2000):
        day = i / 10  # 200 days, 2000 distinct payers
        ev = event(i, "E", "enterprise", day, "flow.transfer", {"counterparty_id": f"P{i}"})
        state = eng.process(state, parse_event(ev, now=1e10)).state
        state = decode_state(encode_state(state))  # survives the changelog round trip
    assert len(state.detectors[rule.id]["d"]) <= 151
    surge = RULES["all.complaint_surge"]
    eng = Engine([surge], dedup_window=0)
    st = None
    for i in range(600):
        st = eng.process(st, parse_event(event(i, "E", "bank", i / 2, "complaint.filed", {}), now=1e10)).state
    assert len(st.detectors[surge.id]["b"]) <= surge.span


def _history() -> list[bytes]:
    events, _ = simulate(entities=60, days=200, seed=11)
    lines = [encode_event(e) for e in events]
    # silent entities: a redemption never paid, then nothing more from them
    extra = [
        event(0, f"PF-SILENT-{i}", "private_fund", 3 + i, "fund.redemption_requested", {"request_id": f"R{i}"})
        for i in range(6)
    ]
    return extra + lines


def _run(msgs: list[RawMessage], cuts: list[int], restart_at: set[int] = frozenset()) -> list[tuple[str, str]]:
    """Process in batches split at ``cuts``; at a cut in ``restart_at`` the worker 'restarts':
    a new processor whose lanes are rebuilt from the (msgpack) stored states."""
    pack = load_pack()
    store: dict[str, bytes] = {}
    bp = BatchProcessor(Engine(pack.detectors, dedup_window=64))
    out = []
    bounds = [0, *cuts, len(msgs)]
    for a, b in itertools.pairwise(bounds):
        if a in restart_at:
            bp = BatchProcessor(Engine(pack.detectors, dedup_window=64))
            bp.rebuild(decode_state(v) for v in store.values())
        res = bp.process(msgs[a:b], lambda k: decode_state(store[k]) if k in store else None, now=1e10)
        out += [(a_.alert_id, a_.rule_id) for a_ in res.alerts]
        for eid, (st, _p) in res.states.items():
            store[eid] = encode_state(st)
    return out


def test_alerts_do_not_depend_on_batches_or_restarts() -> None:
    # Per partition, the order is the order of the file (as Kafka keeps it); across
    # partitions, batches interleave differently from run to run.
    msgs = messages(_history())
    whole = _run(msgs, [])
    ids = {a for a, _ in whole}
    assert len(ids) == len(whole), "an alert fired twice"
    assert sum(r == "pf.redemption_unpaid" for _, r in whole) >= 6, "silent entities must fire"
    rng = random.Random(5)
    for _ in range(3):
        cuts = sorted(rng.sample(range(1, len(msgs)), 12))
        assert set(_run(msgs, cuts)) == set(whole)
        assert set(_run(msgs, cuts, restart_at=set(cuts[::3]))) == set(whole)
    # a different interleaving of the partitions (same order within each) gives the same alerts
    by_lane: dict[tuple[str, int], list[RawMessage]] = {}
    for m in msgs:
        by_lane.setdefault((m.topic, m.partition), []).append(m)
    shuffled: list[RawMessage] = []
    lanes = list(by_lane.values())
    while any(lanes):
        lane = rng.choice([x for x in lanes if x])
        shuffled += [lane.pop(0) for _ in range(min(len(lane), rng.randrange(1, 50)))]
    assert set(_run(shuffled, [len(shuffled) // 2])) == set(whole)


def test_silent_entity_fires_from_its_own_partition_only() -> None:
    rule = RULES["pf.redemption_unpaid"]
    req = event(0, "PF-A", "private_fund", 0, "fund.redemption_requested", {})
    later_same = event(1, "B", "bank", 31, "grid.report", {})
    # one source, one event 31 days on: no skew limit here (that rule has its own tests)
    bp = BatchProcessor(Engine([rule], dedup_window=0), max_skew=math.inf)
    res = bp.process([RawMessage(req, "t", 0, 0, None), RawMessage(later_same, "t", 1, 1, None)], {}.get, now=1e10)
    assert res.alerts == [], "event time on another partition must not fire it"
    st: dict[str, EntityState] = {}
    bp = BatchProcessor(Engine([rule], dedup_window=0), max_skew=math.inf)
    r1 = bp.process([RawMessage(req, "t", 0, 0, None)], st.get, now=1e10)
    st.update({k: v for k, (v, _) in r1.states.items()})
    r2 = bp.process([RawMessage(later_same, "t", 0, 1, None)], st.get, now=1e10)
    (a,) = r2.alerts
    assert a.entity_id == "PF-A" and a.event_time.startswith("2025-02-05") and a.evidence["request_id"] == "R1"
    assert r2.states["PF-A"][0].due == 0.0


def test_late_payment_still_fires_and_on_time_payment_does_not() -> None:
    rule = RULES["pf.redemption_unpaid"]
    eng = Engine([rule], dedup_window=0)
    req = parse_event(event(0, "PF-A", "private_fund", 0, "fund.redemption_requested", {}), now=1e10)
    s = eng.process(None, req).state
    assert s.due > 0
    paid = parse_event(event(1, "PF-A", "private_fund", 30.01, "fund.redemption_paid", {}), now=1e10)
    late = eng.process(decode_state(encode_state(s)), paid)
    assert [a.rule_id for a in late.alerts] == ["pf.redemption_unpaid"]
    ok = eng.process(s, parse_event(event(2, "PF-A", "private_fund", 29.9, "fund.redemption_paid", {}), now=1e10))
    assert ok.alerts == [] and ok.state.due == 0.0
