"""Contract tests over EVERY detector: the rules of the shipped pack and every anomaly kind.

Like river's ``test_estimators.py``: each detector is found automatically
(a new rule or anomaly kind is covered without touching this file) and must
clone, survive a pickle round-trip, keep msgpack-serialisable state, never
raise on valid events, never mutate the state it scores, and give scores in [0, 1].
"""

from __future__ import annotations

import copy
import datetime as _dt
import pickle
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors.anomaly import ANOMALY_KINDS
from detectors.base import Detector, Signal
from detectors.rules import build_rule, load_pack
from riskflow.core.schema import ENTITY_KINDS, Event, parse_event


def all_detectors() -> list[Detector]:
    dets: list[Detector] = list(load_pack().detectors)
    dets += [cls() for cls in ANOMALY_KINDS.values()]
    return dets


def clone(det: Detector) -> Detector:
    if hasattr(det, "clone"):
        return det.clone()
    return build_rule(copy.deepcopy(det.spec), det.where)  # type: ignore[attr-defined]


DETECTORS = all_detectors()
IDS = [d.id for d in DETECTORS]

_money = st.floats(min_value=0, max_value=1e10, allow_nan=False)
_ratio = st.none() | st.floats(min_value=0, max_value=50, allow_nan=False)
_text = st.text(alphabet="abcXYZ 保本承诺", min_size=1, max_size=12)
PAYLOADS: dict[str, Any] = {
    "entity.registered": st.fixed_dictionaries(
        {"name": _text, "registered_capital": _money, "legal_rep": _text, "address": _text}
    ),
    "entity.changed": st.fixed_dictionaries(
        {"field": st.sampled_from(["legal_rep", "address", "shareholder", "executive", "registered_capital"])}
    ),
    "report.prudential": st.fixed_dictionaries(
        {"period_end": st.just("2025-03-31")},
        optional={
            "capital_adequacy_ratio": _ratio,
            "npl_ratio": _ratio,
            "liquidity_coverage_ratio": _ratio,
            "provision_coverage_ratio": _ratio,
            "guarantee_leverage": _ratio,
            "loan_balance": _money,
            "net_assets": st.floats(min_value=-1e9, max_value=1e10),
            "borrowed_funds": _money,
            "largest_borrower_share": _ratio,
            "related_party_loans": _money,
        },
    ),
    "fund.registered": st.fixed_dictionaries(
        {"fund_id": _text, "manager_id": _text, "fund_type": st.just("equity"), "structure": st.just("contractual")}
    ),
    "fund.subscription": st.fixed_dictionaries(
        {
            "fund_id": _text,
            "investor_id": st.sampled_from(["I1", "I2", "I3", "I4"]),
            "investor_type": st.sampled_from(["individual", "institution"]),
            "amount": _money,
        }
    ),
    "fund.redemption_requested": st.fixed_dictionaries(
        {"fund_id": _text, "request_id": _text, "investor_id": _text, "amount": _money}
    ),
    "fund.redemption_paid": st.fixed_dictionaries({"fund_id": _text, "request_id": _text, "amount": _money}),
    "fund.nav_reported": st.fixed_dictionaries(
        {"fund_id": _text, "nav": st.floats(min_value=0, max_value=1e6), "period_end": st.just("2025-03-31")}
    ),
    "filing.submitted": st.fixed_dictionaries(
        {"filing": st.sampled_from(["monthly", "quarterly", "annual"]), "period_end": st.just("2025-03-31")}
    ),
    "advertisement.published": st.fixed_dictionaries(
        {"channel": _text},
        optional={
            "promised_return": st.floats(min_value=0, max_value=100),
            "guaranteed": st.booleans(),
            "min_investment": _money,
            "text": _text,
        },
    ),
    "complaint.filed": st.fixed_dictionaries(
        {"channel": _text, "category": st.sampled_from(["redemption_refused", "false_promotion", "fraud", "other"])},
        optional={"amount_involved": _money},
    ),
    "lawsuit.filed": st.fixed_dictionaries(
        {"role": st.sampled_from(["defendant", "plaintiff"]), "cause": _text}, optional={"amount": _money}
    ),
    "opinion.published": st.fixed_dictionaries(
        {"sentiment": st.floats(min_value=-1, max_value=1)},
        optional={"reach": st.integers(0, 10**9), "keywords": st.lists(_text, max_size=3)},
    ),
    "flow.transfer": st.fixed_dictionaries(
        {"direction": st.sampled_from(["in", "out"]), "amount": _money},
        optional={"related_party": st.booleans(), "counterparty_id": _text},
    ),
    "amac.notice": st.fixed_dictionaries(
        {"notice": st.sampled_from(["lost_contact", "abnormal_operation", "false_filing", "cancelled"])}
    ),
    "enforcement.action": st.fixed_dictionaries({"action": st.sampled_from(["warning", "fine", "suspension"])}),
    "grid.report": st.fixed_dictionaries(
        {"observation": st.sampled_from(["office_closed", "crowd_gathering", "normal"])}
    ),
}
T0 = _dt.datetime(2025, 1, 1, tzinfo=_dt.timezone(_dt.timedelta(hours=8)))


@st.composite
def valid_events(draw: st.DrawFn) -> Event:
    etype = draw(st.sampled_from(sorted(PAYLOADS)))
    minutes = draw(st.integers(0, 60 * 24 * 120))
    raw = {
        "schema": "riskflow.event/v1",
        "event_id": f"h{draw(st.integers(0, 10**9))}",
        "event_type": etype,
        "entity_id": "E-1",
        "entity_kind": draw(st.sampled_from(ENTITY_KINDS)),
        "region": "330100",
        "event_time": (T0 + _dt.timedelta(minutes=minutes)).isoformat(),
        "source": "test",
        "payload": draw(PAYLOADS[etype]),
    }
    return parse_event(msgspec.json.encode(raw), now=4e9)


def test_every_catalogue_type_has_a_strategy() -> None:
    from riskflow.core.schema import CATALOGUE

    assert set(PAYLOADS) == set(CATALOGUE)


def test_discovery_finds_rules_and_every_anomaly_kind() -> None:
    assert "daily" in ANOMALY_KINDS
    assert any(d.kind == "threshold" for d in DETECTORS)
    assert {type(d) for d in DETECTORS} >= set(ANOMALY_KINDS.values())


def _run(det: Detector, events: list[Event]) -> tuple[Any, list[Signal]]:
    state = det.init_state()
    out: list[Signal] = []
    for ev in events:
        if not det.applies_to(ev):
            continue
        state, sigs = det.process(state, ev)
        out += sigs
    return state, out


@pytest.mark.parametrize("det", DETECTORS, ids=IDS)
def test_clone_is_fresh_and_equal(det: Detector) -> None:
    c = clone(det)
    assert c is not det and type(c) is type(det) and c.id == det.id
    assert c.init_state() == det.init_state()
    if hasattr(det, "params"):
        assert c.params() == det.params()


@pytest.mark.parametrize("det", DETECTORS, ids=IDS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=st.lists(valid_events(), min_size=1, max_size=40))
def test_never_raises_scores_in_range_and_state_serialises(det: Detector, events: list[Event]) -> None:
    events.sort(key=lambda e: e.ts)
    state = det.init_state()
    for ev in events:
        if not det.applies_to(ev):
            continue
        before = msgspec.msgpack.encode(state)
        scored = det.score_one(state, ev)
        assert msgspec.msgpack.encode(state) == before, "score_one must not mutate the state"
        state, sigs = det.process(state, ev)
        # State survives the msgpack round-trip of the changelog table.
        state = msgspec.msgpack.decode(msgspec.msgpack.encode(state))
        for s in [*sigs, *scored]:
            assert 0.0 <= s.score <= 1.0
            assert s.detector_id == det.id and s.key
            msgspec.json.encode(s.evidence)


@pytest.mark.parametrize("det", DETECTORS, ids=IDS)
@settings(max_examples=10, deadline=None)
@given(events=st.lists(valid_events(), min_size=1, max_size=30))
def test_pickle_round_trip_behaves_the_same(det: Detector, events: list[Event]) -> None:
    events.sort(key=lambda e: e.ts)
    again = pickle.loads(pickle.dumps(det))
    assert _run(again, events) == _run(det, events)
    assert _run(clone(det), events) == _run(det, events)


@pytest.mark.parametrize("det", DETECTORS, ids=IDS)
@settings(max_examples=10, deadline=None)
@given(events=st.lists(valid_events(), min_size=1, max_size=30))
def test_unordered_events_never_raise(det: Detector, events: list[Event]) -> None:
    _run(det, events)  # event time out of order (late events)
