"""Alert episodes: repeated hits of a rule on an entity fold into one alert id with rising revisions."""

from __future__ import annotations

from detectors.engine import Engine
from detectors.risk import RiskConfig, RiskScorer
from riskflow.core.alerts import alert_id
from tests.support.risk_tools import RULES, complaint, run


def engine(**cfg: object) -> Engine:
    return Engine(RULES, risk=RiskScorer(RiskConfig(**cfg)), clock=lambda: "wall")  # type: ignore[arg-type]


def rule_alerts(alerts, rid: str = "t.other"):
    return [a for a in alerts if a.rule_id == rid]


def test_repeated_hits_fold_into_one_episode_with_milestone_revisions() -> None:
    events = [complaint("other", i * 0.5, i) for i in range(25)]  # every 12 h: never quiet for 14 days
    state, alerts = run(engine(), events)
    got = rule_alerts(alerts)
    assert {a.alert_id for a in got} == {alert_id("t.other", "PF-1", "e0")}  # the first hit names the episode
    revisions = [a.revision for a in got]
    assert revisions == sorted(set(revisions)), "revisions strictly increase"
    # Every hit up to 3, then milestones, plus re-emissions when the level moved (here green -> yellow).
    milestones = {1, 2, 3, 5, 10, 20}
    assert milestones <= set(revisions) <= set(range(1, 26))
    extra = set(revisions) - milestones
    level_moves = {a.revision for a in got if a.revision in extra}
    assert len(extra) <= 2 and level_moves == extra
    last = got[-1]
    assert last.episode["count"] == last.revision
    assert last.episode["first_seen"] == "2025-01-01T00:00:00+00:00" and last.episode["key"] == "e0"
    assert last.event_id == f"e{last.revision - 1}"  # latest evidence: the event that made this revision
    assert state.risk.rules["t.other"].count == 25


def test_emission_volume_is_logarithmic_in_hits() -> None:
    events = [complaint("other", i * 0.01, i) for i in range(1000)]
    _, alerts = run(engine(), events)
    got = rule_alerts(alerts)
    assert len({a.alert_id for a in got}) == 1
    assert 10 <= len(got) <= 20, [a.revision for a in got]  # 1,2,3,5,10,...,1000 and level moves


def test_quiet_period_reopens_a_new_episode() -> None:
    eng = engine(episode_quiet_days=14)
    state, first = run(eng, [complaint("other", 0, 1), complaint("other", 10, 2)])
    # 14 days after the last hit is still the same episode; later than that is a new one.
    state, same = run(eng, [complaint("other", 24, 3)], state)
    state, reopened = run(eng, [complaint("other", 38.01, 4)], state)
    ids = [a.alert_id for a in rule_alerts(first + same + reopened)]
    assert ids[:3] == [alert_id("t.other", "PF-1", "e1")] * 3
    assert ids[3] == alert_id("t.other", "PF-1", "e4")
    assert [a.revision for a in rule_alerts(first + same + reopened)] == [1, 2, 3, 1]
    assert rule_alerts(reopened)[0].episode["first_seen"].startswith("2025-02-08")


def test_other_rules_and_entities_have_their_own_episodes() -> None:
    _, alerts = run(engine(), [complaint("other", 0, 1), complaint("fraud", 0, 2)])
    _, more = run(engine(), [complaint("other", 0, 3, entity="PF-2")])
    alerts += more
    ids = {(a.rule_id, a.entity_id): a.alert_id for a in alerts if a.rule_id != "risk.level"}
    assert ids == {
        ("t.other", "PF-1"): alert_id("t.other", "PF-1", "e1"),
        ("t.fraud", "PF-1"): alert_id("t.fraud", "PF-1", "e2"),
        ("t.other", "PF-2"): alert_id("t.other", "PF-2", "e3"),
    }


def test_a_level_change_re_emits_the_episode_at_its_next_hit() -> None:
    eng = engine(episode_emit_first=1)
    state, alerts = run(eng, [complaint("other", i * 0.1, i) for i in range(4)])
    # 1 (first), 2 (milestone), 3 (the entity turned yellow on it); 4 folded silently.
    assert [(a.revision, a.risk_level) for a in rule_alerts(alerts)] == [(1, "green"), (2, "green"), (3, "yellow")]
    assert state.risk.rules["t.other"].count == 4
    state, _ = run(eng, [complaint("fraud", 1, "f")], state)
    level = state.risk.level
    state, alerts = run(eng, [complaint("other", 1.1, 5)], state)
    (a,) = rule_alerts(alerts)
    assert a.revision == 5 and a.risk_level == level != "green"


def test_rule_state_is_forgotten_once_decayed_and_quiet() -> None:
    state, _ = run(engine(half_life_days=5), [complaint("other", 0, 1)])
    assert "t.other" in state.risk.rules
    state, _ = run(engine(half_life_days=5), [complaint("fraud", 200, 2)], state)
    assert list(state.risk.rules) == ["t.fraud"]
