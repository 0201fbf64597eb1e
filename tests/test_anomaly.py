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
from riskflow.schema import Event, parse_event

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
    rate_before = state["c"]["cmp"][0]
    state, sigs = run(det, burst, state)
    assert len(sigs) == 1
    s = sigs[0]
    assert s.key == "cmp:2025-03-02" and s.detector_id == "anomaly.daily"
    assert 0.5 <= s.score <= 1.0
    ev_ = s.evidence
    assert ev_["metric"] == "complaints" and ev_["value"] >= 3 and ev_["baseline"] < 1 and ev_["p_value"] < 1e-4
    # Closing the burst day: the flagged day stays out of the baseline...
    state, _ = run(det, [complaint(61.5)], state)
    assert state["c"]["cmp"][0] == pytest.approx(rate_before * (1 - det.alpha), rel=0.2, abs=0.02)
    # ...unless the detector is told to learn from what it flagged.
    learner = DailyAnomaly(learn_flagged=True)
    st2, _ = run(learner, [*hist, *burst, complaint(61.5)])
    assert st2["c"]["cmp"][0] > state["c"]["cmp"][0] + 0.01


def test_slow_shift_is_flagged_and_does_not_teach_the_baseline() -> None:
    rng = random.Random(3)
    hist = quiet_history(60, rng)
    # From day 60: two or three new investors every day (a fund suddenly raising from the public).
    shift = [subscription(d + 0.1 * k, f"N{d}-{k}") for d in range(60, 90) for k in range(rng.choice((2, 3)))]
    det = DailyAnomaly()
    state, sigs = run(det, hist + shift)
    metrics = {s.evidence["metric"] for s in sigs}
    assert {"subscriptions", "investors"} <= metrics
    first = min(s.evidence["day"] for s in sigs)
    assert first <= "2025-03-06"  # within a week of the shift (day 60 = 2025-03-02)
    assert len([s for s in sigs if s.evidence["metric"] == "subscriptions"]) == 1  # one alert for the run
    assert state["c"]["sub"][0] < 0.6  # the baseline has not learned 2-3 a day


def test_level_metric_sentiment_drop() -> None:
    rng = random.Random(4)
    hist = [ev("opinion.published", {"sentiment": round(rng.uniform(0.2, 0.6), 2)}, d + 0.5) for d in range(40)]
    crash = [ev("opinion.published", {"sentiment": -0.9}, 40.5), ev("opinion.published", {"sentiment": 0.3}, 41.5)]
    _, sigs = run(DailyAnomaly(), hist + crash)
    assert [s.evidence["metric"] for s in sigs] == ["sentiment"]
    assert sigs[0].evidence["robust_z"] < -4 and sigs[0].key == "snt:2025-02-10"


def test_weekly_seasonality_catches_a_weekday_level_on_a_weekend() -> None:
    rng = random.Random(5)
    events, spike_day = [], 0
    for d in range(150):
        weekday = (T0 + _dt.timedelta(days=d)).weekday()
        base = 2e5 if weekday >= 5 else 5e6  # quiet weekends
        if d > 120 and weekday == 5 and not spike_day:
            spike_day, base = d, 5e6  # a weekday-sized inflow on a Saturday
        amt = base * rng.lognormvariate(0, 0.15)
        events.append(ev("flow.transfer", {"direction": "in", "amount": amt}, d + 0.5))
    events.append(ev("flow.transfer", {"direction": "in", "amount": 1.0}, 151.5))
    flat = run(DailyAnomaly(seasonal=False), events)[1]
    seasonal = run(DailyAnomaly(seasonal=True), events)[1]
    spike = (T0 + _dt.timedelta(days=spike_day)).date().isoformat()
    assert [s.key for s in seasonal] == [f"in:{spike}"]
    assert seasonal[0].evidence["robust_z"] > 4
    assert flat == []  # without weekday offsets the weekly swing hides it


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
        assert a.dimension == "anomaly" and a.model_version.startswith("daily/1:")
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
