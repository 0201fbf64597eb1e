"""The streaming anomaly detector (``detectors/anomaly/daily.py``), called directly."""

from __future__ import annotations

import datetime as _dt
import random
from typing import Any

import msgspec
import pytest

from detectors.anomaly import DailyAnomaly, anomaly_detectors
from detectors.engine import Engine, decode_state, encode_state
from detectors.factory import build_processor
from detectors.pipeline import BatchProcessor, RawMessage
from detectors.rules import load_pack
from riskflow.core.schema import Event, parse_event

CST = _dt.timezone(_dt.timedelta(hours=8))
T0 = _dt.datetime(2025, 1, 1, tzinfo=CST)
_n = 0


def raw(
    etype: str, payload: dict[str, Any], day: float, entity: str = "PF-330100-1", kind: str = "private_fund"
) -> dict:
    global _n
    _n += 1
    return {
        "schema": "riskflow.event/v1",
        "event_id": f"t{_n}",
        "event_type": etype,
        "entity_id": entity,
        "entity_kind": kind,
        "region": "330100",
        "event_time": (T0 + _dt.timedelta(days=day)).isoformat(),
        "source": "test",
        "payload": payload,
    }


def ev(etype: str, payload: dict[str, Any], day: float, **kw: Any) -> Event:
    return parse_event(msgspec.json.encode(raw(etype, payload, day, **kw)), now=4e9)


def complaint(day: float) -> Event:
    return ev("complaint.filed", {"channel": "12345", "category": "other"}, day)


def subscription(day: float, investor: str) -> Event:
    p = {"fund_id": "F", "investor_id": investor, "investor_type": "individual", "amount": 100000.0}
    return ev("fund.subscription", p, day)


def run(det: DailyAnomaly, events: list[Event], state: Any = None) -> tuple[Any, list]:
    state = det.init_state() if state is None else state
    out = []
    for e in events:
        state, sigs = det.process(state, e)
        out += sigs
    return state, out


def quiet_history(days: int, rng: random.Random) -> list[Event]:
    """A fund with a subscription on ~20 % of days and a complaint now and then."""
    out = []
    for d in range(days):
        if rng.random() < 0.2:
            out.append(subscription(d + 0.3, f"I{rng.randrange(10**6)}"))
        if rng.random() < 0.03:
            out.append(complaint(d + 0.5))
    return out


def test_quiet_history_raises_nothing() -> None:
    _, sigs = run(DailyAnomaly(), quiet_history(120, random.Random(1)))
    assert sigs == []


def test_no_alarm_during_warmup() -> None:
    det = DailyAnomaly(warmup_days=14)
    hist = [complaint(d + 0.1) for d in range(0, 10, 3)]
    burst = [complaint(10.5) for _ in range(30)]
    assert run(det, hist + burst)[1] == []
    # The same burst after the warm-up is flagged.
    hist = [complaint(d + 0.1) for d in range(0, 30, 3)]
    assert run(det, hist + [complaint(30.5) for _ in range(30)])[1]


def test_burst_is_flagged_once_with_evidence_and_not_learned() -> None:
    rng = random.Random(2)
    hist = quiet_history(60, rng)
    burst = [complaint(60.2 + i / 100) for i in range(8)]
    det = DailyAnomaly()
    state, _ = run(det, hist)
    rate_before = state.counts["cmp"].rate
    state, sigs = run(det, burst, state)
    assert len(sigs) == 1
    s = sigs[0]
    assert s.key == "cmp:2025-03-02" and s.detector_id == "anomaly.daily"
    assert 0.5 <= s.score <= 1.0
    ev_ = s.evidence
    assert ev_["metric"] == "complaints" and ev_["value"] >= 3 and ev_["baseline"] < 1 and ev_["p_value"] < 1e-4
    # Closing the burst day: the flagged day stays out of the baseline...
    state, _ = run(det, [complaint(61.5)], state)
    assert state.counts["cmp"].rate == pytest.approx(rate_before * (1 - det.alpha), rel=0.2, abs=0.02)
    # ...unless the detector is told to learn from what it flagged.
    learner = DailyAnomaly(learn_flagged=True)
    st2, _ = run(learner, [*hist, *burst, complaint(61.5)])
    assert st2.counts["cmp"].rate > state.counts["cmp"].rate + 0.01


def test_slow_shift_is_flagged_and_does_not_teach_the_baseline() -> None:
    rng = random.Random(3)
    hist = quiet_history(60, rng)
    # From day 60: two or three new investors every day (a fund suddenly raising from the public).
    shift = [subscription(d + 0.1 * k, f"N{d}-{k}") for d in range(60, 90) for k in range(rng.choice((2, 3)))]
    det = DailyAnomaly()
    state, sigs = run(det, hist + shift)
    metrics = {s.evidence["metric"] for s in sigs}
    assert {"retail_subscriptions", "retail_investors"} <= metrics
    first = min(s.evidence["day"] for s in sigs)
    assert first <= "2025-03-06"  # within a week of the shift (day 60 = 2025-03-02)
    assert len([s for s in sigs if s.evidence["metric"] == "retail_subscriptions"]) == 1  # one alert for the run
    assert state.counts["sub"].rate < 0.6  # the baseline has not learned 2-3 a day


def test_level_metric_sentiment_drop() -> None:
    rng = random.Random(4)
    hist = [ev("opinion.published", {"sentiment": round(rng.uniform(0.2, 0.6), 2)}, d + 0.5) for d in range(40)]
    crash = [ev("opinion.published", {"sentiment": -0.9}, 40.5), ev("opinion.published", {"sentiment": 0.3}, 41.5)]
    _, sigs = run(DailyAnomaly(), hist + crash)
    assert [s.evidence["metric"] for s in sigs] == ["sentiment"]
    assert sigs[0].evidence["robust_z"] < -4 and sigs[0].key == "snt:2025-02-10"


def _weekly_inflows(shifted: set[int], days: int = 150, seed: int = 5) -> list[Event]:
    """Daily inflows, weekday-sized (5e6) on working days and quiet (2e5) at weekends, except on
    the ``shifted`` days, which get a weekday-sized inflow whatever their weekday."""
    rng = random.Random(seed)
    events = []
    for d in range(days):
        weekday = (T0 + _dt.timedelta(days=d)).weekday()
        base = 2e5 if weekday >= 5 and d not in shifted else 5e6
        events.append(ev("flow.transfer", {"direction": "in", "amount": base * rng.lognormvariate(0, 0.15)}, d + 0.5))
    events.append(ev("flow.transfer", {"direction": "in", "amount": 1.0}, days + 1.5))
    return events


def test_weekly_seasonality_catches_weekday_levels_at_weekends() -> None:
    # From day 122 (a Saturday), weekends carry weekday-sized inflows: the third such day
    # (day 129, the next Saturday) makes three hits in 14 observed days.
    weekends = {d for d in range(122, 150) if (T0 + _dt.timedelta(days=d)).weekday() >= 5}
    events = _weekly_inflows(weekends)
    flat = run(DailyAnomaly(seasonal=False), events)[1]
    seasonal = run(DailyAnomaly(seasonal=True), events)[1]
    assert [s.key for s in seasonal] == ["in:2025-05-10"]  # day 129
    assert seasonal[0].evidence["robust_z"] > 4 and seasonal[0].evidence["hits"] == 3
    assert flat == []  # without weekday offsets the weekly swing hides it


def test_one_large_transfer_is_not_an_anomaly_but_a_sustained_shift_is() -> None:
    # Days 129, 130 and 136 are a Saturday, a Sunday and the next Saturday.
    one = _weekly_inflows({129})
    assert run(DailyAnomaly(), one)[1] == []
    two = _weekly_inflows({129, 130})
    assert run(DailyAnomaly(), two)[1] == []
    three = _weekly_inflows({129, 130, 136})
    sigs = run(DailyAnomaly(), three)[1]
    assert [s.key for s in sigs] == ["in:2025-05-17"] and sigs[0].evidence["p_value"] < 1e-4  # day 136


def test_hit_days_of_a_money_flow_stay_out_of_the_baseline() -> None:
    det = DailyAnomaly()
    before, _ = run(det, _weekly_inflows(set(), days=130))  # days 0-129 learned
    held, _ = run(det, _weekly_inflows({130}, days=131))  # day 130, a Sunday, is a hit
    h, b = held.levels["in"], before.levels["in"]
    assert held.hits["in"] & 1 and (h.n, h.centre, h.mad) == (b.n, b.centre, b.mad)
    learner = DailyAnomaly(learn_flagged=True)
    learned, _ = run(learner, _weekly_inflows({130}, days=131))
    assert learned.levels["in"].n == h.n + 1 and learned.levels["in"].centre > h.centre


def test_qualified_subscriptions_are_not_retail_fundraising() -> None:
    rng = random.Random(7)
    hist = quiet_history(60, rng)

    def big(d: float, k: int) -> Event:
        p = {"fund_id": "F", "investor_id": f"ORG-{d}-{k}", "investor_type": "institution", "amount": 5e6}
        return ev("fund.subscription", p, d)

    burst = [big(60 + d + 0.1 * k, k) for d in range(10) for k in range(3)]
    # The money flowing in is a sustained shift (inflow may flag), but no retail fundraising.
    assert not [s for s in run(DailyAnomaly(), hist + burst)[1] if s.evidence["metric"].startswith("retail")]
    retail = [subscription(60 + d + 0.1 * k, f"R{d}-{k}") for d in range(10) for k in range(3)]
    assert run(DailyAnomaly(), hist + retail)[1]


def test_small_nav_moves_and_milder_press_are_not_flagged() -> None:
    rng = random.Random(8)

    def report(value: float, day: float) -> Event:
        return ev("fund.nav_reported", {"fund_id": "F", "nav": round(value, 4), "period_end": "2025-01-01"}, day)

    nav, navs = 1.0, []
    for w in range(30):
        nav *= 1 + rng.gauss(0.001, 0.004)
        navs.append(report(nav, 7 * w + 0.5))
    dip = [report(nav * 0.95, 211.5)]
    end = [ev("complaint.filed", {"channel": "12345", "category": "other"}, 213.5)]
    assert run(DailyAnomaly(), navs + dip + end)[1] == []  # -5 %: z far out, but below the 10 % minimum
    crash = [report(nav * 0.8, 211.5)]
    assert [s.evidence["metric"] for s in run(DailyAnomaly(), navs + crash + end)[1]] == ["nav_return"]
    glowing = [ev("opinion.published", {"sentiment": round(rng.uniform(0.6, 0.8), 2)}, d + 0.5) for d in range(40)]
    neutral = [ev("opinion.published", {"sentiment": 0.0}, 40.5), ev("opinion.published", {"sentiment": 0.3}, 41.5)]
    assert run(DailyAnomaly(), glowing + neutral)[1] == []  # less glowing is not bad press


def _stationary_flags(threshold: float) -> int:
    rng = random.Random(9)
    det, flags = DailyAnomaly(threshold=threshold), 0
    for e in range(20):
        out = []
        for d in range(200):
            t = d + 0.3
            for _ in range(sum(1 for _ in range(8) if rng.random() < 0.05)):
                out.append(ev("complaint.filed", {"channel": "12345", "category": "other"}, t, entity=f"E{e}"))
            for _ in range(sum(1 for _ in range(8) if rng.random() < 0.1)):
                out.append(subscription(t + 0.01, f"I{rng.randrange(10**6)}"))
            amt = 1e6 * rng.lognormvariate(0, 0.5)
            out.append(ev("flow.transfer", {"direction": "out", "amount": amt}, t + 0.02, entity=f"E{e}"))
        flags += len(run(det, out)[1])
    return flags


def test_false_flags_on_stationary_histories_stay_within_the_calibrated_bound() -> None:
    # 20 entities x 200 days with nothing changing (binomial counts, lognormal flows): ~3,700
    # scored entity-days. A threshold t bounds false flags at 10**(-8 t) per entity-day: < 0.4
    # expected at 0.5, < 37 at 0.25 (where the detector must still see the tail events).
    assert _stationary_flags(0.5) <= 1
    assert 1 <= _stationary_flags(0.25) <= 37


def test_late_events_do_not_change_closed_days() -> None:
    det = DailyAnomaly()
    state, _ = run(det, [complaint(d + 0.1) for d in range(0, 30, 3)])
    snap = msgspec.msgpack.encode(state)
    state, sigs = det.process(state, complaint(5.0))  # a day already closed
    assert sigs == [] and msgspec.msgpack.encode(state) == snap


def _history(seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for d in range(70):
        for ent in ("PF-330100-1", "PF-330100-2", "PF-330100-3"):
            if rng.random() < 0.2 or (ent == "PF-330100-2" and d > 45):
                for k in range(3 if ent == "PF-330100-2" and d > 45 else 1):
                    p = {"fund_id": "F", "investor_id": f"I{d}{k}", "investor_type": "individual", "amount": 1e5}
                    out.append(raw("fund.subscription", p, d + rng.random() * 0.9, entity=ent))
            if rng.random() < 0.05:
                out.append(raw("opinion.published", {"sentiment": 0.1}, d + 0.5, entity=ent))
    out.sort(key=lambda e: e["event_time"])
    return out


def _alerts(history: list[dict], batch: int, through_bytes: bool) -> list[tuple[str, str, str]]:
    bp = BatchProcessor(Engine(anomaly_detectors()))
    msgs = [RawMessage(msgspec.json.encode(e), "t", 0, i, None) for i, e in enumerate(history)]
    store: dict[str, Any] = {}

    def get(k: str) -> Any:
        held = store.get(k)
        return decode_state(held) if isinstance(held, bytes) else held

    out = []
    for i in range(0, len(msgs), batch):
        res = bp.process(msgs[i : i + batch], get, now=4e9)
        for k, (st, _) in res.states.items():
            store[k] = encode_state(st) if through_bytes else st
        out += [(a.alert_id, a.severity, a.model_version) for a in res.alerts]
    return out


def test_same_alerts_whatever_the_batching_and_through_the_state_codec() -> None:
    hist = _history(6)
    ref = _alerts(hist, 1, True)
    assert ref, "the shifted entity must be flagged"
    assert _alerts(hist, 7, True) == ref
    assert _alerts(hist, 10_000, False) == ref


def test_alerts_name_the_model_and_dimension() -> None:
    bp = build_processor(load_pack())
    msgs = [RawMessage(msgspec.json.encode(e), "t", 0, i, None) for i, e in enumerate(_history(6))]
    res = bp.process(msgs, {}.get, now=4e9)
    anomalies = [a for a in res.alerts if a.rule_id == "anomaly.daily"]
    assert anomalies
    for a in anomalies:
        assert a.dimension == "anomaly" and a.model_version.startswith("daily/3:")
        assert "经营指标异常" in a.title_zh and a.evidence["model_version"] == a.model_version


def test_simulated_ponzi_funds_rank_above_normal_entities() -> None:
    from bench.anomaly_auc import entity_scores, roc_auc
    from riskflow.simulate import simulate

    events, labels = simulate(entities=150, days=100, seed=11)
    best, _, _ = entity_scores(events)
    scen = {lab["entity_id"] for lab in labels}
    normal = [best.get(e, 0.0) for e in {e["entity_id"] for e in events} if e not in scen]
    pos = [best.get(e, 0.0) for e in scen]
    assert len(pos) >= 5
    assert roc_auc(pos, normal) >= 0.8


def test_peer_model_is_opt_in() -> None:
    assert [d.id for d in build_processor(load_pack()).engine.detectors if d.id.startswith("anomaly.")] == [
        "anomaly.daily"
    ]
    on = build_processor(load_pack(), peer=True)
    assert [d.id for d in on.engine.detectors if d.id.startswith("anomaly.")] == ["anomaly.daily", "anomaly.peer"]


def test_alert_scores_keep_their_order_beyond_the_saturated_tail() -> None:
    """Two NAV jumps, both far beyond 1e-8: the larger scores higher, neither reaches 1 (main: both 1.0)."""
    rng = random.Random(11)

    def jump_score(size: float) -> float:
        nav, events = 1.0, []
        for d in range(40):
            nav *= 1 + rng.gauss(0, 0.002)
            events.append(ev("fund.nav_reported", {"fund_id": "F", "nav": nav, "period_end": "2025-01-01"}, d + 0.5))
        events += [
            ev("fund.nav_reported", {"fund_id": "F", "nav": nav * (1 + size), "period_end": "2025-01-01"}, 40.5),
            complaint(41.5),
        ]
        sigs = [s for s in run(DailyAnomaly(), events)[1] if s.evidence["metric"] == "nav_return"]
        assert len(sigs) == 1 and sigs[0].evidence["p_value"] < 1e-12 and sigs[0].severity == "high"
        return sigs[0].score

    moderate, huge = jump_score(0.12), jump_score(0.3)
    assert 0.75 < moderate < huge < 1.0
