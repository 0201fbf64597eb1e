"""Risk index, decay, levels, exposure (people, CNY) and state size: unit tests on the engine."""

from __future__ import annotations

import dataclasses
import math
import random

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.base import Describe, Detector, Signal
from detectors.engine import Engine, EntityState, decode_state, encode_state
from detectors.factory import build_processor
from detectors.pipeline import RawMessage
from detectors.risk import RiskConfig, RiskScorer, load_risk_config
from detectors.risk import people as kmv
from detectors.risk.scorer import is_milestone
from detectors.rules import load_pack
from riskflow.core.alerts import alert_id
from riskflow.core.schema import encode_event
from riskflow.simulate import simulate
from tests.support.risk_tools import DAY, RULES, T0, complaint, ev, rule, run  # noqa: F401  # noqa: F401

#: complaint category -> a rule of a given severity and dimension


def engine(**cfg: object) -> Engine:
    return Engine(RULES, risk=RiskScorer(RiskConfig(**cfg)), clock=lambda: "wall")  # type: ignore[arg-type]


def test_index_formula_one_signal_per_dimension() -> None:
    cfg = RiskConfig()
    state, alerts = run(engine(), [complaint("redemption_refused", 0, 1)])
    x = cfg.masses["high"]
    want = round(100 * cfg.weights["complaints"] * (1 - math.exp(-x)), 1)
    assert state.risk.index == want == alerts[0].risk_index
    # A second dimension combines as noisy-or: 1 - (1 - a)(1 - b).
    state, alerts = run(engine(), [ev("advertisement.published", {"channel": "w", "guaranteed": True}, 0, 2)], state)
    a = cfg.weights["complaints"] * (1 - math.exp(-x))
    b = cfg.weights["inducement"] * (1 - math.exp(-cfg.masses["high"]))
    assert state.risk.index == round(100 * (1 - (1 - a) * (1 - b)), 1)
    assert 0 <= state.risk.index <= 100


def test_index_is_bounded_and_saturates_at_the_dimension_weight() -> None:
    state, _ = run(engine(), [complaint("fraud", 0, i) for i in range(50)])
    assert state.risk.index == round(100 * RiskConfig().weights["complaints"], 1)


def test_decay_halves_mass_per_half_life_in_event_time() -> None:
    eng = engine(half_life_days=10)
    state, _ = run(eng, [complaint("other", 0, 1)])
    acc0 = state.risk.rules["t.other"].acc
    # An unrelated event 10 days later (event time) halves it; 20 days: a quarter.
    state, _ = run(eng, [ev("opinion.published", {"sentiment": 0.1}, 10, 10)], state)
    assert state.risk.rules["t.other"].acc == pytest.approx(acc0 / 2)
    state, _ = run(eng, [ev("opinion.published", {"sentiment": 0.1}, 20, 20)], state)
    assert state.risk.rules["t.other"].acc == pytest.approx(acc0 / 4)
    # The wall clock plays no part: replaying the same history gives identical floats.
    history = [complaint("other", 0, 1)] + [ev("opinion.published", {"sentiment": 0.1}, d, d) for d in (10, 20)]
    again, _ = run(engine(half_life_days=10), history)
    assert encode_state(again) == encode_state(state)


def test_late_event_counts_as_if_in_order() -> None:
    """Decayed sums do not depend on arrival order: a late signal is decayed to the reference time."""
    a = [complaint("other", 0, 1), complaint("other", 5, 2), complaint("other", 9, 3)]
    in_order, _ = run(engine(), a)
    shuffled, _ = run(engine(), [a[2], a[0], a[1]])
    assert shuffled.risk.rules["t.other"].acc == pytest.approx(in_order.risk.rules["t.other"].acc)
    assert shuffled.risk.index == in_order.risk.index


def test_levels_thresholds_and_level_change_alerts() -> None:
    cfg = RiskConfig()
    assert [cfg.level_of(i) for i in (0, 39.9, 40, 59.9, 60, 79.9, 80, 100)] == [
        "green", "green", "yellow", "yellow", "orange", "orange", "red", "red",
    ]  # fmt: skip
    custom = RiskConfig(red=90, orange=70, yellow=50, hysteresis=0)
    assert [custom.level_of(i) for i in (49, 50, 85, 90)] == ["green", "yellow", "orange", "red"]
    with pytest.raises(ValueError):
        RiskConfig(red=50, orange=60)

    eng = engine()
    state, alerts = run(eng, [complaint("fraud", 0, 1)])  # critical: 0.8 * (1 - e^-2) = 69.2 -> orange
    levels = [a for a in alerts if a.rule_id == "risk.level"]
    assert [(a.evidence["from"], a.evidence["to"]) for a in levels] == [("green", "orange")]
    (lv,) = levels
    assert lv.alert_id == alert_id("risk.level", "PF-1", "1:green>orange")
    assert lv.severity == "high" and lv.risk_level == "orange" and lv.title_zh == "风险等级上调 绿→橙"
    assert lv.evidence["disposal_zh"] == "现场检查" and lv.risk_tags == ["t.fraud"]
    # No change, no level alert.
    state, alerts = run(eng, [complaint("fraud", 0.5, 2)], state)
    assert [a.rule_id for a in alerts if a.rule_id == "risk.level"] == []
    # Months later the mass has decayed: the next event lowers the level (on event time).
    state, alerts = run(eng, [ev("opinion.published", {"sentiment": 0.1}, 200, 3)], state)
    (down,) = alerts
    assert (down.evidence["from"], down.evidence["to"], down.severity) == ("orange", "green", "low")
    assert down.alert_id == alert_id("risk.level", "PF-1", "2:orange>green")
    assert state.risk.seq == 2 and state.risk.level == "green"


def test_hysteresis_keeps_level_near_the_bound() -> None:
    cfg = RiskConfig()
    assert cfg.level_of(56, "orange") == "orange"
    assert cfg.level_of(54.9, "orange") == "yellow"
    assert cfg.level_of(56, "green") == "yellow"


def test_alerts_carry_risk_fields_people_and_amount() -> None:
    eng = engine()
    subs = [
        ev("fund.subscription", {"fund_id": "PF-1", "investor_id": inv, "investor_type": "individual", "amount": amt},
           0.1 * i, f"s{i}")
        for i, (inv, amt) in enumerate([("A", 100_000.0), ("B", 200_000.0), ("A", 50_000.0)])
    ]  # fmt: skip
    paid = ev("fund.redemption_paid", {"fund_id": "PF-1", "request_id": "r", "amount": 30_000.0}, 1, "p")
    state, alerts = run(eng, [*subs, paid, complaint("redemption_refused", 2, "c1", amount=10_000.0)])
    (a, *_) = alerts
    assert a.rule_id == "t.refused" and a.risk_level == "green"  # 0.8 * (1 - e^-0.6) = 36.1
    assert a.affected_people == 3  # investors A and B, plus the complainant
    assert a.affected_amount == 320_000.0  # 350k subscribed - 30k paid back; the 10k claim is part of it
    assert a.risk_tags == ["t.refused"] and a.risk_index == state.risk.index
    # Claims exceed what was raised: an entity with no subscriptions (a lawsuit and a complaint).
    state, alerts = run(eng, [
        ev("lawsuit.filed", {"role": "defendant", "cause": "x", "amount": 800_000.0}, 0, "l", entity="E"),
        ev("lawsuit.filed", {"role": "plaintiff", "cause": "x", "amount": 5e6}, 0, "l2", entity="E"),
        complaint("fraud", 1, "c", amount=300_000.0, entity="E"),
    ])  # fmt: skip
    assert alerts[0].affected_amount == 1_100_000.0 and alerts[0].affected_people == 1


def test_people_sketch_is_exact_small_and_bounded_large() -> None:
    blob = b""
    for i in range(31):
        blob = kmv.add(blob, f"inv:{i}", k=32)
        blob = kmv.add(blob, f"inv:{i}", k=32)  # seen twice, counted once
    assert kmv.estimate(blob, k=32) == 31
    rng = random.Random(7)
    for n in (1_000, 20_000):
        blob = b""
        ids = [f"inv:{rng.random()}" for _ in range(n)]
        for who in ids:
            blob = kmv.add(blob, who, k=32)
        assert len(blob) == 32 * 4
        assert abs(kmv.estimate(blob, k=32) - n) / n < 0.5  # ~3.5 standard errors
        # Order does not matter: the sketch is a function of the set.
        rng.shuffle(ids)
        other = b""
        for who in ids:
            other = kmv.add(other, who, k=32)
        assert other == blob


def test_tags_rank_rules_by_contribution_and_shadow_rules_carry_no_weight() -> None:
    state, alerts = run(engine(), [complaint("other", 0, 1), complaint("fraud", 0, 2), complaint("lost_contact", 0, 3)])
    assert alerts[-1].rule_id == "t.shadow" and alerts[-1].mode == "shadow"
    assert state.risk.rules["t.shadow"].acc == 0.0
    assert alerts[-1].risk_tags == ["t.shadow", "t.fraud", "t.other"]


def test_milestones() -> None:
    assert [n for n in range(1, 120) if is_milestone(n, 3)] == [1, 2, 3, 5, 10, 20, 50, 100]


def test_shipped_yaml_equals_the_defaults() -> None:
    assert load_risk_config() == RiskConfig()
    with pytest.raises(ValueError, match="unknown risk settings"):
        RiskConfig.from_mapping({"halflife": 3})
    merged = RiskConfig.from_mapping({"weights": {"complaints": 0.2}})
    assert merged.weights["complaints"] == 0.2 and merged.weights["inducement"] == RiskConfig().weights["inducement"]
    assert dataclasses.replace(RiskConfig(), red=90).red == 90


def test_state_round_trips_and_stays_small_on_a_simulated_history() -> None:
    events, labels = simulate(entities=30, days=40, seed=5)
    assert labels
    lines = [encode_event(e) for e in events]
    bp = build_processor(load_pack())
    res = bp.process([RawMessage(v, "f", 0, i, None) for i, v in enumerate(lines)], {}.get)
    # The risk part of the state (the whole entity state's target is 2 KB, shared with the detectors).
    # It holds one small track per rule that fired on the entity (a Ponzi fund hits many of
    # the pack's rules): bound the rest, and each track.
    sizes = {
        eid: len(msgspec.msgpack.encode(s.risk)) - len(msgspec.msgpack.encode(s.risk.rules))
        for eid, (s, _) in res.states.items()
    }
    assert max(sizes.values()) <= 1024, max(sizes.items(), key=lambda kv: kv[1])
    tracks = [len(msgspec.msgpack.encode(t)) for s, _ in res.states.values() for t in s.risk.rules.values()]
    assert max(tracks) <= 96
    for s, _ in res.states.values():
        raw = encode_state(s)
        assert encode_state(decode_state(raw)) == raw  # reads back to what it was (in stored form)
    # Every labelled Ponzi fund reaches red before its failure.
    red = {a.entity_id: a.event_time for a in res.alerts if a.rule_id == "risk.level" and a.risk_level == "red"}
    ponzi = [lab for lab in labels if lab["scenario"] == "ponzi_fund"]
    assert ponzi
    for lab in ponzi:
        assert lab["entity_id"] in red and red[lab["entity_id"]] < lab["failure_time"]


def test_batch_boundaries_do_not_change_alerts() -> None:
    events, _ = simulate(entities=30, days=30, seed=11)
    msgs = [RawMessage(encode_event(e), "f", 0, i, None) for i, e in enumerate(events)]

    def records(chunk: int) -> tuple[list[tuple[str, int, str, float]], dict[str, tuple[int, str, float]]]:
        bp = build_processor(load_pack())
        store: dict[str, EntityState] = {}
        own, contagion = [], {}
        for i in range(0, len(msgs), chunk):
            res = bp.process(msgs[i : i + chunk], store.get, now=T0 + 400 * DAY)
            store.update({k: decode_state(encode_state(s)) for k, (s, _) in res.states.items()})
            for a in res.alerts:
                if a.rule_id == "risk.contagion":  # delivered after each batch: the latest revision counts
                    if a.revision >= contagion.get(a.alert_id, (0,))[0]:
                        contagion[a.alert_id] = (a.revision, a.risk_level, a.risk_index)
                else:
                    own.append((a.alert_id, a.revision, a.risk_level, a.risk_index))
        return own, contagion

    whole = records(len(msgs))
    assert whole[0] and records(7) == whole


class _Any(Detector):
    """Fires on every complaint with the severity and score written in its channel field."""

    id = "t.any"
    event_types = frozenset({"complaint.filed"})
    describe = Describe("任意", "Any", dimension="complaints")

    def score_one(self, state: object, event) -> list[Signal]:
        sev, score = event.payload.channel.split(":")
        return [Signal(self.id, event.event_id, sev, float(score))]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["low", "medium", "high", "critical"]),
            st.floats(0, 1),
            st.floats(-5, 60),  # event day; out of order on purpose
        ),
        min_size=1,
        max_size=40,
    )
)
def test_property_index_bounded_levels_consistent_revisions_rise(hits: list[tuple[str, float, float]]) -> None:
    cfg = RiskConfig()
    eng = Engine([_Any()], risk=RiskScorer(cfg), clock=lambda: "wall")
    state = None
    best: dict[str, int] = {}
    for i, (sev, score, day) in enumerate(hits):
        e = ev("complaint.filed", {"channel": f"{sev}:{score}", "category": "other"}, day, i)
        out = eng.process(state, e)
        state = decode_state(encode_state(out.state))
        r = state.risk
        assert 0 <= r.index <= 100
        lo = {"red": cfg.red, "orange": cfg.orange, "yellow": cfg.yellow, "green": 0}[r.level] - cfg.hysteresis
        assert r.index >= lo and (r.level == "red" or r.index < {"orange": cfg.red, "yellow": cfg.orange,
                                                                  "green": cfg.yellow}[r.level])  # fmt: skip
        for a in out.alerts:
            assert a.revision > best.get(a.alert_id, 0), "a revision never repeats or goes back"
            best[a.alert_id] = a.revision
            assert a.risk_level == r.level and a.risk_index == r.index


def test_alerts_carry_each_dimensions_points_of_the_index() -> None:
    """Two dimensions: the index shared out in proportion to -log(1 - p_d) (noisy-or's survival
    factors multiply, so their logs add up); the points sum to the index."""
    cfg = RiskConfig()
    state, alerts = run(engine(), [complaint("redemption_refused", 0, 1)])
    assert alerts[0].risk_dimensions == {"complaints": alerts[0].risk_index}
    _, alerts = run(engine(), [ev("advertisement.published", {"channel": "w", "guaranteed": True}, 0, 2)], state)
    a = alerts[0]
    pc = cfg.weights["complaints"] * (1 - math.exp(-cfg.masses["high"]))
    pi = cfg.weights["inducement"] * (1 - math.exp(-cfg.masses["high"]))
    lc, li = -math.log(1 - pc), -math.log(1 - pi)
    assert a.risk_dimensions == {
        "inducement": round(a.risk_index * li / (lc + li), 1),
        "complaints": round(a.risk_index * lc / (lc + li), 1),
    }
    assert list(a.risk_dimensions) == ["inducement", "complaints"], "largest first"
    assert sum(a.risk_dimensions.values()) == pytest.approx(a.risk_index, abs=0.1)


def test_dimension_points_add_up_on_a_simulated_history_and_name_contagion() -> None:
    from detectors.risk.state import DIMENSION_CODES
    from tests.support.contagion_events import fund_registered, lost_contact, offline

    events, _ = simulate(entities=40, days=60, seed=11)
    bp = build_processor(load_pack())
    lines = [encode_event(e) for e in events]
    res = bp.process([RawMessage(v, "f", 0, i, None) for i, v in enumerate(lines)], {}.get)
    assert len(res.alerts) > 50
    for a in res.alerts:
        assert set(a.risk_dimensions) <= {*DIMENSION_CODES, "contagion"}, a.risk_dimensions
        assert all(v > 0 for v in a.risk_dimensions.values())
        assert sum(a.risk_dimensions.values()) == pytest.approx(a.risk_index, abs=0.05 * len(a.risk_dimensions) + 0.1)
    assert {d for a in res.alerts for d in a.risk_dimensions} >= {"compliance_deviation", "complaints"}
    # A fund raised only by its manager's red level: all of its index is contagion.
    res = offline([fund_registered("PF-9", "PFM-1"), lost_contact("PFM-1")])
    (push,) = [a for a in res.alerts if a.rule_id == "risk.contagion"]
    assert push.risk_dimensions == {"contagion": push.risk_index}
