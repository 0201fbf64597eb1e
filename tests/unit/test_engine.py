from __future__ import annotations

import json

from detectors.engine import Engine, decode_state, encode_state
from detectors.pipeline import BatchProcessor, RawMessage
from detectors.rules import load_pack
from riskflow.core.alerts import alert_id
from riskflow.core.schema import parse_event


def ev(event_type: str, payload: dict, event_id: str = "e1", entity: str = "PF-330100-1", **over: object) -> bytes:
    d = {
        "schema": "riskflow.event/v1",
        "event_id": event_id,
        "event_type": event_type,
        "entity_id": entity,
        "entity_kind": "private_fund",
        "region": "330100",
        "event_time": "2025-04-01T10:00:00+08:00",
        "source": "amac",
        "payload": payload,
        **over,
    }
    return json.dumps(d).encode()


def sub(amount: float, investor_type: str = "individual", event_id: str = "e1") -> bytes:
    return ev(
        "fund.subscription",
        {"fund_id": "F", "investor_id": "I", "investor_type": investor_type, "amount": amount},
        event_id,
    )


def test_unqualified_investor_edge() -> None:
    eng = Engine(load_pack().detectors)
    below = eng.process(None, parse_event(sub(999_999.99)))
    at = eng.process(None, parse_event(sub(1_000_000)))
    inst = eng.process(None, parse_event(sub(10_000, "institution")))
    assert [a.rule_id for a in below.alerts] == ["pf.unqualified_investor"]
    assert below.alerts[0].evidence == {"investor_type": "individual", "amount": 999_999.99}
    assert at.alerts == [] and inst.alerts == []


def test_alert_fields_and_deterministic_id() -> None:
    eng = Engine(load_pack().detectors, pack_version="v-test")
    out = eng.process(None, parse_event(ev("advertisement.published", {"channel": "roadshow", "guaranteed": True})))
    (a,) = out.alerts
    assert a.alert_id == alert_id("pf.guaranteed_return", "PF-330100-1", "e1")
    assert (a.entity_id, a.entity_kind, a.region, a.severity) == ("PF-330100-1", "private_fund", "330100", "high")
    assert a.title_zh == "承诺保本保收益" and a.title_en == "Guaranteed-return promise"
    assert a.evidence == {"guaranteed": True}
    assert a.event_time.startswith("2025-04-01T10:00:00")
    assert a.detected_at and a.rule_pack_version == "v-test"
    ad = ev("advertisement.published", {"channel": "x", "guaranteed": True})
    again = Engine(load_pack().detectors).process(None, parse_event(ad))
    assert again.alerts[0].alert_id == a.alert_id


def test_guarantee_false_or_absent_does_not_fire() -> None:
    eng = Engine(load_pack().detectors)
    for payload in ({"channel": "w", "guaranteed": False}, {"channel": "w"}, {"channel": "w", "guaranteed": None}):
        assert eng.process(None, parse_event(ev("advertisement.published", payload))).alerts == []


def test_rule_scoped_by_entity_kind() -> None:
    eng = Engine(load_pack().detectors)
    bank = ev("amac.notice", {"notice": "lost_contact"}, entity_kind="bank", entity="BNK-1")
    assert eng.process(None, parse_event(bank)).alerts == []


def test_duplicate_event_changes_nothing_and_state_round_trips() -> None:
    eng = Engine(load_pack().detectors, dedup_window=4)
    first = eng.process(None, parse_event(sub(10)))
    state = decode_state(encode_state(first.state))
    dup = eng.process(state, parse_event(sub(10)))
    assert dup.duplicate and dup.alerts == [] and dup.state.events == 1
    # Only the last `dedup_window` ids are remembered.
    for i in range(4):
        state = eng.process(state, parse_event(sub(10, event_id=f"x{i}"))).state
    assert not eng.process(state, parse_event(sub(10))).duplicate


def test_batch_processor_dead_letters_and_carries_state_within_batch() -> None:
    bp = BatchProcessor(Engine(load_pack().detectors))
    msgs = [
        RawMessage(sub(10), "t", 0, 0, b"PF-330100-1"),
        RawMessage(b"{nope", "t", 0, 1, b"PF-330100-1"),
        RawMessage(sub(10), "t", 0, 2, b"PF-330100-1"),  # same event id: duplicate
        RawMessage(sub(20, event_id="e2"), "t", 0, 3, b"PF-330100-1"),
    ]
    res = bp.process(msgs, {}.get)
    assert [d["reason"] for d in res.dead_letters] == ["malformed_json", "duplicate_event"]
    assert [d["offset"] for d in res.dead_letters] == [1, 2]
    assert res.dead_letters[0]["original"] == "{nope"
    assert len(res.alerts) == 2
    (state, partition) = res.states["PF-330100-1"]
    assert state.events == 2 and partition == 0
