"""The state of ``anomaly.daily`` (``detectors/anomaly/daily_state.py``): stored, read back, migrated.

A worker upgraded in place reads its changelog, where each entity's state was written
by the release before (a dict of positional lists). ``tests/data/daily_state_v2.msgpack``
holds such a state, written by that release (commit 1bac210, ``detectors/anomaly/daily.py``
with its dict layout) after the events of :func:`history` before day ``SPLIT``:
``msgspec.msgpack.encode(state)``. It must resume exactly where that release stopped.
"""

from __future__ import annotations

import datetime as _dt
import random
from pathlib import Path
from typing import Any

import msgspec

from detectors.anomaly import DailyAnomaly
from detectors.anomaly.daily_state import DailyState, restore
from detectors.base import Signal
from riskflow.core.schema import Event, parse_event

OLD_STATE = Path(__file__).parents[1] / "data" / "daily_state_v2.msgpack"
SPLIT = 90  # the old state holds the events of days 0-89
CST = _dt.timezone(_dt.timedelta(hours=8))
T0 = _dt.datetime(2025, 1, 1, tzinfo=CST)


# -- history (the fixture was written from exactly these events) -------------------------------
def _event(n: int, etype: str, payload: dict[str, Any], day: float) -> Event:
    raw = {
        "schema": "riskflow.event/v1",
        "event_id": f"ds{n}",
        "event_type": etype,
        "entity_id": "PF-330100-9",
        "entity_kind": "private_fund",
        "region": "330100",
        "event_time": (T0 + _dt.timedelta(days=day)).isoformat(),
        "source": "test",
        "payload": payload,
    }
    return parse_event(msgspec.json.encode(raw), now=4e9)


def history() -> list[Event]:
    """130 days of one fund touching every metric, a silent week (days 60-66), and from day 95
    shifts in complaints, weekend inflows, NAV and press, so that the days after ``SPLIT`` flag."""
    rng = random.Random(20261207)
    out: list[tuple[str, dict[str, Any], float]] = []
    nav = 1.0
    for d in range(130):
        if 60 <= d <= 66:
            continue
        t = d + 0.3
        weekend = (T0 + _dt.timedelta(days=d)).weekday() >= 5
        level = 2e5 if weekend and d < 100 else 5e6
        out.append(("flow.transfer", {"direction": "in", "amount": level * rng.lognormvariate(0, 0.15)}, t))
        if rng.random() < 0.3:
            out.append(("fund.redemption_paid", {"fund_id": "F", "request_id": f"R{d}", "amount": 1e5}, t + 0.01))
        for k in range(4 if d >= 95 else int(rng.random() < 0.05)):
            out.append(("complaint.filed", {"channel": "12345", "category": "other"}, t + 0.02 + 0.001 * k))
        if rng.random() < 0.2:
            p = {"fund_id": "F", "investor_id": f"I{rng.randrange(10**6)}", "investor_type": "individual"}
            out.append(("fund.subscription", {**p, "amount": 1e5}, t + 0.03))
        if rng.random() < 0.1:
            p = {"fund_id": "F", "request_id": f"Q{d}", "investor_id": f"I{d}", "amount": 5e4}
            out.append(("fund.redemption_requested", p, t + 0.04))
        if rng.random() < 0.02 or d == 30:
            out.append(("lawsuit.filed", {"role": "defendant", "cause": "contract"}, t + 0.05))
        if d % 7 == 4:
            nav *= 0.8 if d == 102 else 1 + rng.gauss(0.001, 0.004)
            report = {"fund_id": "F", "nav": round(nav, 4), "period_end": "2025-01-01"}
            out.append(("fund.nav_reported", report, t + 0.06))
        if rng.random() < 0.5:
            tone = -0.8 if d >= 110 else rng.uniform(0.4, 0.7)
            out.append(("opinion.published", {"sentiment": round(tone, 2)}, t + 0.07))
    return [_event(n, *e) for n, e in enumerate(out)]


# -- end of history -----------------------------------------------------------------------------


def _run(det: DailyAnomaly, events: list[Event], state: Any, *, stored: bool = False) -> tuple[Any, list[Signal]]:
    """Process ``events``; ``stored``: the state goes through msgpack after every event, as if
    every event were processed after a restart."""
    signals: list[Signal] = []
    for e in events:
        state, sigs = det.process(state, e)
        signals += sigs
        if stored:
            state = msgspec.msgpack.decode(msgspec.msgpack.encode(state))
    return state, signals


def _split() -> tuple[list[Event], list[Event]]:
    events = history()
    return [e for e in events if e.ts < (T0 + _dt.timedelta(days=SPLIT)).timestamp()], [
        e for e in events if e.ts >= (T0 + _dt.timedelta(days=SPLIT)).timestamp()
    ]


def test_a_state_stored_by_the_old_dict_layout_resumes_exactly() -> None:
    old = msgspec.msgpack.decode(OLD_STATE.read_bytes())
    assert isinstance(old, dict) and set(old) >= {"day", "c", "l", "h"}, "the fixture is the old layout"
    det = DailyAnomaly()
    before, after = _split()
    straight_state, straight = _run(det, before, det.init_state())
    assert not straight, "the fixture's half must be quiet, so that every flag is after the split"
    straight_state, straight = _run(det, after, straight_state)
    resumed_state, resumed = _run(det, after, old)
    # what the old release itself flagged from its own state, recorded when the fixture was written
    assert [s.key for s in resumed] == ["cmp:2025-04-06", "nav:2025-04-13", "in:2025-04-19", "snt:2025-04-23"]
    assert resumed == straight
    assert isinstance(resumed_state, DailyState) and resumed_state == straight_state


def test_the_migrated_state_is_the_one_the_new_layout_would_have_built() -> None:
    det = DailyAnomaly()
    before, _ = _split()
    built, _ = _run(det, before, det.init_state())
    migrated = restore(msgspec.msgpack.decode(OLD_STATE.read_bytes()))
    assert migrated == built
    assert set(migrated.counts) == {"sub", "inv", "red", "cmp", "law"}
    assert set(migrated.levels) == {"in", "out", "nav", "snt"} and len(migrated.levels["in"].offsets) == 7
    # named fields encode as arrays: smaller than the dict layout they replace
    assert len(msgspec.msgpack.encode(migrated)) < len(OLD_STATE.read_bytes())


def test_storing_the_state_after_every_event_changes_nothing() -> None:
    det = DailyAnomaly()
    events = history()
    live_state, live = _run(det, events, det.init_state())
    stored_state, stored = _run(det, events, det.init_state(), stored=True)
    assert live and stored == live
    assert restore(stored_state) == live_state


def test_the_open_day_is_read_from_every_stored_form() -> None:
    det = DailyAnomaly()
    old = msgspec.msgpack.decode(OLD_STATE.read_bytes())
    new = restore(old)
    as_read = msgspec.msgpack.decode(msgspec.msgpack.encode(new))
    assert isinstance(as_read, list)
    assert det.open_day(old) == det.open_day(new) == det.open_day(as_read) == old["day"]
    assert old["day"] == (T0.date() - _dt.date(1970, 1, 1)).days + SPLIT - 1
    assert det.open_day(None) == -1 and det.open_day(det.init_state()) == -1


def test_scoring_and_learning_leave_a_live_state_untouched() -> None:
    det = DailyAnomaly()
    before, after = _split()
    state, _ = _run(det, before, det.init_state())
    snap = msgspec.msgpack.encode(state)
    assert all(det.score_one(state, e) == [] for e in after[:20])  # days 90-91: nothing flags yet
    det.learn_one(state, after[0])
    assert msgspec.msgpack.encode(state) == snap
