"""Unit tests of the graded, onset-reporting novelty score (detectors/anomaly/graded.py) and univariate v4."""

from __future__ import annotations

import copy
import datetime as _dt
import math
import random

import msgspec

from detectors.anomaly.graded import GradedNovelty
from detectors.anomaly.univariate import UnivariateAnomaly
from riskflow.core.schema import Event, parse_event


def _run(g: GradedNovelty, values: list[float]) -> list[float]:
    st = g.init_state()
    return [g.step(st, x)[0] for x in values]


def _seasonal(n: int, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [100 + 20 * math.sin(2 * math.pi * i / 48) + rng.gauss(0, 1) for i in range(n)]


def test_nothing_is_reported_during_warmup() -> None:
    scores = _run(GradedNovelty(warmup=50), [1.0, 1000.0, -5.0, 7.0] * 12)
    assert max(scores) == 0.0


def test_a_level_shift_is_reported_once_at_its_onset_then_is_normal() -> None:
    rng = random.Random(2)
    values = [10 + rng.gauss(0, 0.5) for _ in range(400)] + [30 + rng.gauss(0, 0.5) for _ in range(300)]
    scores = _run(GradedNovelty(warmup=100, onset_window=50), values)
    assert scores[400] >= 0.9
    assert max(scores[401:]) < 0.5


def test_the_score_is_graded_a_bigger_spike_scores_higher() -> None:
    base = _seasonal(600)
    got = []
    for height in (130.0, 160.0, 400.0):
        values = [*base, height, *base[:10]]
        got.append(_run(GradedNovelty(warmup=100), values)[600])
    assert 0.0 < got[0] < got[1] < got[2] < 1.0
    assert len({round(s, 3) for s in got}) == 3


def test_a_seen_seasonal_cycle_is_not_novel_but_a_stop_at_a_new_level_is() -> None:
    values = [round(100 + 20 * math.sin(2 * math.pi * i / 48), 1) for i in range(1200)]
    scores = _run(GradedNovelty(warmup=200, onset_window=50), values)
    assert max(scores[48:]) == 0.0
    stopped = [*values, *([125.0] * 100)]
    sscores = _run(GradedNovelty(warmup=200, onset_window=50), stopped)
    assert sscores[1200] >= 0.5 and max(sscores[1201:]) < 0.5


def test_score_value_leaves_its_input_alone_and_matches_step() -> None:
    g = GradedNovelty(warmup=5, history=20, onset_window=7)
    a, b = g.init_state(), g.init_state()
    for x in _seasonal(200):
        before = msgspec.msgpack.encode(a)
        new, s1, r1 = g.score_value(a, x)
        assert msgspec.msgpack.encode(a) == before
        s2, r2 = g.step(b, x)
        assert (s1, r1) == (s2, r2) and new == b
        a = msgspec.msgpack.decode(msgspec.msgpack.encode(new))


def test_state_stays_bounded() -> None:
    g = GradedNovelty(history=50, onset_window=20, exclude=3)
    st = g.init_state()
    for x in [float(i % 997) for i in range(5000)]:
        g.step(st, x)
    _, _, _, srt, ring, pending, peaks, _, _, seasons, _, reports, ranks, moments = st
    assert len(srt) == len(ring) == 50 and srt == sorted(ring) and 0 < len(reports) <= g.report_history
    assert len(pending) == 3 and len(peaks) <= 21 and ranks == []  # no rank weights: no ranks kept
    assert [len(p) for p in seasons] == [24, 168] and all(b == [] for p in seasons for b in p)
    assert moments == [[0.0, 0.0]] * 24
    g.step(st, 1.0, 24 + 7)  # Tuesday, 7 a.m.
    assert st[9][0][7] == [1.0] and st[9][1][31] == [1.0]


def test_a_value_usual_at_night_is_news_in_the_morning() -> None:
    day = [5.0 if h < 6 else 50.0 + h for h in range(24)]
    history = day * 30
    hours = list(range(24)) * 30

    def last_score(with_hours: bool) -> tuple[float, float]:
        g = GradedNovelty(warmup=48, daily_history=30, report_weight=0.0)  # the seasonal term alone
        st = g.init_state()
        for x, h in zip(history, hours, strict=True):
            g.step(st, x, h if with_hours else None)
        return g.step(st, 5.0, 8 if with_hours else None)

    seasonal, plain = last_score(True), last_score(False)
    assert plain == (0.0, 0.0)  # 5.0 has been seen (at night): not novel on its own
    assert seasonal[1] > 0 and seasonal[0] > 0.5  # but never at 8 a.m.


def test_non_finite_values_score_zero_and_change_nothing() -> None:
    g = GradedNovelty(warmup=3)
    st = g.init_state()
    for x in (1.0, 2.0, 1.5, 1.2):
        g.step(st, x)
    before = msgspec.msgpack.encode(st)
    for bad in (math.nan, math.inf, -math.inf):
        assert g.step(st, bad) == (0.0, 0.0)
    assert msgspec.msgpack.encode(st) == before
    assert g.step(st, 1e308)[0] <= 1.0 and g.step(st, -1e308)[0] <= 1.0


T0 = _dt.datetime(2025, 1, 1, tzinfo=_dt.timezone(_dt.timedelta(hours=8)))


def _transfer(i: int, amount: float) -> Event:
    raw = {
        "schema": "riskflow.event/v1",
        "event_id": f"t{i}",
        "event_type": "flow.transfer",
        "entity_id": "E-1",
        "entity_kind": "p2p_platform",
        "region": "330100",
        "event_time": (T0 + _dt.timedelta(hours=i)).isoformat(),
        "source": "test",
        "payload": {"direction": "in", "amount": amount},
    }
    return parse_event(msgspec.json.encode(raw), now=4e9)


def test_univariate_alerts_once_when_amounts_jump_with_evidence() -> None:
    det = UnivariateAnomaly(warmup=30)
    rng = random.Random(3)
    amounts = [10_000 * math.exp(rng.gauss(0, 0.2)) for _ in range(80)] + [
        1_000_000 * math.exp(rng.gauss(0, 0.2)) for _ in range(40)
    ]
    state, fired = det.init_state(), []
    for i, amount in enumerate(amounts):
        state, sigs = det.process(state, _transfer(i, amount))
        fired += [(i, s) for s in sigs]
    assert [i for i, _ in fired] == [80]
    sig = fired[0][1]
    assert sig.detector_id == "anomaly.univariate" and 0.5 <= sig.score < 1.0
    assert sig.evidence["nearest_recent"] < 20_000 and sig.evidence["model_version"].startswith("univariate/4")


def test_a_value_usual_on_sundays_is_news_on_a_monday_at_the_same_hour() -> None:
    g = GradedNovelty(warmup=24, daily_weight=0.0, weekly_history=10, weekly_weight=0.05, report_weight=0.0)
    st = g.init_state()
    for _ in range(8):  # eight weeks, hourly: 100 on weekdays, 10 on Sundays
        for how in range(168):
            g.step(st, 10.0 if how >= 144 else 100.0 + how % 24, how)
    monday_9 = 9
    score, raw = g.step(st, 10.0, monday_9)
    assert raw > 0 and score > 0.5
    # The same value with no hour given is not novel: 10.0 has been seen (on Sundays).
    st2 = g.init_state()
    for _ in range(8):
        for how in range(168):
            g.step(st2, 10.0 if how >= 144 else 100.0 + how % 24, None)
    assert g.step(st2, 10.0, None) == (0.0, 0.0)


def _jump_score(noise: float, seed: int) -> tuple[float, float]:
    """(score, raw) of a jump to 3.0 after 400 values of a stream around 1.0 with relative bursts of ``noise``."""
    rng = random.Random(seed)
    g = GradedNovelty(warmup=100, onset_window=30, record_ramp=50)
    st = g.init_state()
    for _ in range(400):
        g.step(st, 1.0 + (noise * rng.random() if rng.random() < 0.05 else 0.01 * rng.random()))
    return g.step(st, 3.0)


def test_a_stream_with_routinely_large_onsets_needs_more_novelty_for_the_same_score() -> None:
    quiet, bursty = _jump_score(0.02, 1), _jump_score(1.0, 1)
    assert quiet[0] > 0.5 and bursty[0] > 0.0
    # The bursty stream's jump is no less novel against its range, yet it scores lower.
    assert bursty[0] < quiet[0]
    undamped = GradedNovelty(warmup=100, onset_window=30, record_ramp=50, report_weight=0.0)
    st = undamped.init_state()
    rng = random.Random(1)
    for _ in range(400):
        undamped.step(st, 1.0 + (1.0 * rng.random() if rng.random() < 0.05 else 0.01 * rng.random()))
    assert undamped.step(st, 3.0)[0] > bursty[0]


def test_damping_is_the_power_of_the_usual_report_and_neutral_without_reports() -> None:
    g = GradedNovelty(scale=0.03, report_weight=0.5)
    assert g.damped([], 0.2) == 0.2
    assert math.isclose(g.damped([math.log(0.03)], 0.2), 0.2)  # usual report equal to the scale: no change
    assert math.isclose(g.damped([math.log(0.12), math.log(0.12)], 0.2), 0.2 * 0.5)  # (0.03 / 0.12) ** 0.5
    assert GradedNovelty(report_weight=0.0).damped([math.log(5.0)], 0.2) == 0.2


def test_a_state_saved_before_reports_were_remembered_still_scores() -> None:
    g = GradedNovelty(warmup=5, onset_window=5)
    st = g.init_state()[:11]  # the version-2 layout
    for x in [1.0, 1.1, 0.9, 1.0, 1.05, 0.95, 1.0]:
        g.step(st, x)
    score, raw = g.step(st, 10.0)
    assert raw > 0 and score > 0.5 and len(st) == 14 and st[11]


def _hourly(days: int, seed: int) -> tuple[list[float], list[int]]:
    """Hourly values around a daily cycle (10 at night, 100 by day) with 5 % noise, and their hours."""
    rng = random.Random(seed)
    values = [(10.0 if h < 7 else 100.0) * (1 + 0.05 * rng.gauss(0, 1)) for _ in range(days) for h in range(24)]
    return values, [h for _ in range(days) for h in range(24)]


def test_a_novelty_extreme_for_its_hour_is_boosted_one_usual_for_its_hour_is_not() -> None:
    values, hours = _hourly(30, 4)
    plain = GradedNovelty(warmup=48, daily_history=30, report_weight=0.0, weekly_weight=0.0)
    boosted = GradedNovelty(warmup=48, daily_history=30, report_weight=0.0, weekly_weight=0.0, rank_weight=4.0)
    a, b = plain.init_state(), boosted.init_state()
    for x, h in zip(values, hours, strict=True):
        plain.step(a, x, h)
        boosted.step(b, x, h)
    # 130 at noon: beyond every noon value seen, the highest rank for its hour.
    (s_plain, r_plain), (s_boost, r_boost) = (
        plain.step(copy.deepcopy(a), 130.0, 12),
        boosted.step(copy.deepcopy(b), 130.0, 12),
    )
    assert r_plain == r_boost > 0  # the raw novelty is the same; only the report's weight differs
    assert s_boost > s_plain > 0
    eff_plain, eff_boost = s_plain / (1 - s_plain), s_boost / (1 - s_boost)
    assert math.isclose(eff_boost / eff_plain, math.exp(4.0 * 0.5), rel_tol=1e-9)  # rank +0.5: the full boost
    # A median noon value moves the rank run by almost nothing.
    assert boosted.boost(copy.deepcopy(b), sorted(b[9][0][12])[15], 12) < math.exp(4.0 * 0.05)


def test_a_run_of_values_high_for_their_hour_builds_the_run_boost() -> None:
    values, hours = _hourly(20, 5)
    g = GradedNovelty(warmup=48, daily_history=30, run_weight=3.0, run_window=6)
    st = g.init_state()
    for x, h in zip(values, hours, strict=True):
        g.step(st, x, h)
    quiet = g.boost(copy.deepcopy(st), 100.0, 12)
    boosts = [g.boost(st, 115.0, 12 + k) for k in range(6)]  # six hours each above every value of its hour
    assert boosts == sorted(boosts) and boosts[-1] > 3.0 * quiet
    assert math.isclose(boosts[-1], math.exp(3.0 * 0.5), rel_tol=1e-9)
    assert len(st[12]) == 6  # the run is bounded by run_window
    assert GradedNovelty().boost(g.init_state(), 5.0, 3) == 1.0  # no weights: no boost, nothing learned


def test_a_daily_rhythm_is_recognised_noise_and_a_level_are_not() -> None:
    g = GradedNovelty()
    rhythm, noise = g.init_state(), g.init_state()
    values, hours = _hourly(20, 6)
    rng = random.Random(6)
    for x, h in zip(values, hours, strict=True):
        g.step(rhythm, x, h)
        g.step(noise, 50.0 * (1 + 0.05 * rng.gauss(0, 1)), h)
    assert g.daily_period(rhythm) and not g.daily_period(noise)
    assert not g.daily_period(g.init_state())
    # The running sums per hour match the buckets' values (kept incrementally as buckets roll).
    for same, (s, ss) in zip(rhythm[9][0], rhythm[13], strict=True):
        assert math.isclose(s, sum(same)) and math.isclose(ss, sum(v * v for v in same))


def test_a_state_saved_before_the_hourly_sums_gets_them_from_its_buckets() -> None:
    g = GradedNovelty(daily_history=10)
    values, hours = _hourly(15, 7)
    old, new = g.init_state(), g.init_state()
    for x, h in zip(values, hours, strict=True):
        g.step(old, x, h)
        g.step(new, x, h)
        del old[13:]  # the layout before the sums
    assert len(old) == 13
    g.step(old, 55.0, 3)
    g.step(new, 55.0, 3)
    assert all(math.isclose(a, b) for p, q in zip(old[13], new[13], strict=True) for a, b in zip(p, q, strict=True))


def test_ranks_wait_for_values_on_the_current_level() -> None:
    """After a new record (a level shift) the boost is silent: the old level does not make the new one extreme."""
    g = GradedNovelty(history=100, rank_weight=4.0)
    st = g.init_state()
    for _ in range(75):
        for x in (9.0, 10.0, 11.0, 10.0):
            g.step(st, x)
    assert g.boost(copy.deepcopy(st), 100.0, None) == math.exp(4.0 * 0.5)  # beyond its history: rank +0.5
    for _ in range(12):
        for x in (29.0, 30.0, 31.0, 30.0):
            g.step(st, x)
    assert g.boost(copy.deepcopy(st), 31.0, None) == 1.0  # the history still holds the old level
    for _ in range(25):
        for x in (29.0, 30.0, 31.0, 30.0):
            g.step(st, x)
    assert g.boost(copy.deepcopy(st), 10.0, None) == math.exp(4.0 * 0.5)  # all on the new level: lowest of it


def test_the_onset_window_and_record_ramp_follow_the_warmup() -> None:
    assert (GradedNovelty(warmup=750).onset_window, GradedNovelty(warmup=750).record_ramp) == (250, 375)
    assert (GradedNovelty().onset_window, GradedNovelty().record_ramp) == (50, 15)
    assert GradedNovelty(warmup=750, onset_window=20, record_ramp=7).params()["onset_window"] == 20


def test_univariate_scores_without_touching_the_state_and_processes_in_place() -> None:
    det = UnivariateAnomaly(warmup=30)
    rng = random.Random(9)
    state, flagged = det.init_state(), []
    for i in range(60):
        amount = 10_000 * math.exp(rng.gauss(0, 0.2)) if i != 45 else 5_000_000.0
        before = msgspec.msgpack.encode(state)
        scored = det.score_one(state, _transfer(i, amount))
        assert msgspec.msgpack.encode(state) == before  # scoring alone learns nothing
        new, sigs = det.process(state, _transfer(i, amount))
        assert new is state and sigs == scored  # the engine's step learns in place, with the same findings
        flagged += [i for _ in sigs]
    assert flagged == [45]
