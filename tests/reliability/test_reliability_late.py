"""Late and out-of-order events at the detector level (detectors/lateness.py through the
shared pipeline): what counts as late, the ledger record, re-evaluation of the rule
windows the state still holds, corrected alerts, and independence of batch boundaries."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec

from detectors.factory import build_processor
from detectors.lateness import DEFAULT_ALLOWED_LATENESS, LateRecord, decode_late, encode_late
from detectors.pipeline import BatchProcessor, BatchResult, RawMessage
from detectors.rules import load_texts
from riskflow.core.alerts import alert_id
from riskflow.core.schema import encode_event
from riskflow.core.settings import Settings

PACK = """
version: "1"
rules:
  - id: t.complaints_30d
    name_zh: 投诉频发
    name_en: Frequent complaints
    kind: window
    severity: medium
    dimension: complaints
    rationale: test
    source: test
    params: {event_type: complaint.filed, agg: count, window_days: 30, op: ">=", threshold: 3}
  - id: t.fraud_complaint
    name_zh: 诈骗投诉
    name_en: Fraud complaint
    kind: threshold
    severity: high
    dimension: complaints
    rationale: test
    source: test
    params: {event_type: complaint.filed, when: [{field: category, op: "==", value: fraud}]}
  - id: t.lawsuits_7d
    name_zh: 诉讼频发
    name_en: Frequent lawsuits
    kind: window
    severity: medium
    dimension: operational_anomaly
    rationale: test
    source: test
    params: {event_type: lawsuit.filed, agg: count, window_days: 7, op: ">=", threshold: 2}
  - id: t.nav_jump
    name_zh: 净值跳变
    name_en: NAV jump
    kind: series
    severity: medium
    dimension: operational_anomaly
    rationale: test
    source: test
    params: {event_type: fund.nav_reported, field: nav, test: jump, max_change: 0.5}
"""
DAY = 86400.0
T0 = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
ENTITY = "PF-LATE-1"


def processor(allowed: float | None = DEFAULT_ALLOWED_LATENESS) -> BatchProcessor:
    return build_processor(load_texts({"t.yaml": PACK}), anomaly=False, allowed_lateness=allowed)


def ev(eid: str, day: float, etype: str, entity: str = ENTITY, **payload: Any) -> bytes:
    if etype == "lawsuit.filed":
        payload = {"role": "defendant", "cause": "loan", **payload}
    if etype == "complaint.filed":
        payload = {"channel": "hotline", "category": "other", **payload}
    elif etype == "fund.nav_reported":
        payload = {"fund_id": entity, "period_end": (T0 + dt.timedelta(days=day)).date().isoformat(), **payload}
    return encode_event(
        {
            "schema": "riskflow.event/v1",
            "event_id": eid,
            "event_type": etype,
            "entity_id": entity,
            "entity_kind": "private_fund",
            "region": "330100",
            "event_time": (T0 + dt.timedelta(days=day)).isoformat(),
            "source": "test",
            "payload": payload,
        }
    )


def run(lines: list[bytes], bp: BatchProcessor | None = None, batch: int = 0) -> BatchResult:
    """Process ``lines`` in batches of ``batch`` (0: one batch), the state carried between them."""
    bp = bp or processor()
    msgs = [RawMessage(v, "in", 0, i, None) for i, v in enumerate(lines)]
    store: dict[str, Any] = {}
    total = BatchResult()
    for i in range(0, len(msgs), batch or len(msgs)):
        res = bp.process(msgs[i : i + (batch or len(msgs))], store.get, now=T0.timestamp() + 400 * DAY)
        store.update({k: st for k, (st, _) in res.states.items()})
        total.alerts += res.alerts
        total.late += res.late
        total.dead_letters += res.dead_letters
        total.counted += res.counted
        total.states.update(res.states)
    return total


def rule_alerts(res: BatchResult, rule: str) -> list[Any]:
    return [a for a in res.alerts if a.rule_id == rule]


def test_late_means_older_than_the_entitys_high_water_mark_minus_the_allowed_lateness() -> None:
    allowed = 7 * DAY
    res = run(
        [
            ev("a", 20, "complaint.filed"),
            ev("b", 13, "complaint.filed"),  # exactly the allowed lateness behind: in time
            ev("c", 12.99, "complaint.filed"),  # a quarter of an hour more: late
            ev("x", 1, "complaint.filed", entity="PF-OTHER"),  # another entity has its own mark
        ],
        processor(allowed),
    )
    assert [r.event_id for r in res.late] == ["c"]
    rec = res.late[0]
    assert rec.beyond_lateness
    assert rec.late_by_seconds == round(7.01 * DAY, 3) and rec.allowed_lateness_seconds == allowed
    assert dt.datetime.fromisoformat(rec.entity_watermark) == T0 + dt.timedelta(days=20)
    assert len(res.counted) == 4  # a late event is processed (ledgered), not dropped
    # "b" (in time) and "c" (late, but its day still in the window) both count: 3 complaints -> alert
    assert len(rule_alerts(res, "t.complaints_30d")) == 1
    assert rec.rules[0].rule_id == "t.complaints_30d" and rec.rules[0].action == "reevaluated"
    assert (rec.rules[0].value_before, rec.rules[0].value_after) == (2.0, 3.0)
    # The ledger line round-trips and carries the event as received.
    again = decode_late(encode_late(rec))
    assert again.event_id == "c" and msgspec.json.decode(again.event)["event_id"] == "c"  # type: ignore[arg-type]


def test_a_late_event_that_crosses_a_window_threshold_raises_the_alert_it_would_have() -> None:
    res = run(
        [
            ev("c1", 10, "complaint.filed"),
            ev("c2", 11, "complaint.filed"),
            ev("n1", 25, "fund.nav_reported", nav=1.0),
            ev("late", 12, "complaint.filed"),  # 13 days behind the mark (day 25)
        ]
    )
    [rec] = res.late
    [a] = rule_alerts(res, "t.complaints_30d")
    assert a.event_id == "late" and a.alert_id == alert_id("t.complaints_30d", ENTITY, "late")
    assert "late event" in a.evidence["note"] and a.evidence["value"] == 3
    assert a.alert_id in rec.alerts
    assert {(r.rule_id, r.action) for r in rec.rules} == {
        ("t.complaints_30d", "reevaluated"),
        ("t.fraud_complaint", "reevaluated"),
    }


def test_a_late_event_in_a_window_that_already_fired_issues_a_corrected_revision() -> None:
    lines = [
        ev("c1", 10, "complaint.filed"),
        ev("c2", 11, "complaint.filed"),
        ev("c3", 12, "complaint.filed"),  # the window fires here
        ev("n1", 28, "fund.nav_reported", nav=1.0),
    ]
    before = run(lines)
    [orig] = rule_alerts(before, "t.complaints_30d")
    res = run([*lines, ev("late", 15, "complaint.filed")])
    got = rule_alerts(res, "t.complaints_30d")
    assert len(got) == 2 and got[0] == msgspec.structs.replace(orig, detected_at=got[0].detected_at)
    fix = got[1]
    assert fix.alert_id == orig.alert_id, "a correction is a new revision of the same alert"
    assert fix.revision > orig.revision
    ev_ = fix.evidence
    assert (ev_["value_before"], ev_["value"], ev_["late_event_id"]) == (3.0, 4.0, "late")
    assert "revised" in ev_["note"] and "3 -> 4" in ev_["note"]
    [rec] = res.late
    assert rec.alerts == [orig.alert_id]
    # A correction carries no extra weight in the risk index.
    st_before = before.states[ENTITY][0].risk
    st_after = res.states[ENTITY][0].risk
    assert st_after is not None and st_before is not None
    assert st_after.rules["t.complaints_30d"].acc == st_before.rules["t.complaints_30d"].acc


def test_windows_already_past_the_event_and_order_dependent_rules_are_ledgered_not_applied() -> None:
    lines = [
        ev("n1", 1, "fund.nav_reported", nav=1.0),
        ev("c1", 45, "complaint.filed"),
        ev("n2", 50, "fund.nav_reported", nav=1.1),
    ]
    base = run(lines)
    res = run(
        [
            *lines,
            ev("late-nav", 5, "fund.nav_reported", nav=3.0),  # applied in arrival order it would "jump"
            ev("late-c", 2, "complaint.filed", category="fraud"),  # 30-day window now covers days 16..45
        ]
    )
    assert [r.event_id for r in res.late] == ["late-nav", "late-c"]
    nav, comp = res.late
    assert [(r.rule_id, r.action) for r in nav.rules] == [("t.nav_jump", "order_dependent")]
    assert {(r.rule_id, r.action) for r in comp.rules} == {
        ("t.complaints_30d", "window_closed"),
        ("t.fraud_complaint", "reevaluated"),  # stateless: still a finding, keyed by the late event
    }
    assert not rule_alerts(res, "t.nav_jump")
    [fraud] = rule_alerts(res, "t.fraud_complaint")
    assert fraud.event_id == "late-c" and comp.alerts == [fraud.alert_id]
    st, st0 = res.states[ENTITY][0], base.states[ENTITY][0]
    assert st.detectors["t.nav_jump"] == st0.detectors["t.nav_jump"]
    assert st.detectors["t.complaints_30d"] == st0.detectors["t.complaints_30d"]
    assert st.watermark == st0.watermark and st.events == st0.events + 2


def test_a_redelivered_late_event_is_a_duplicate_not_a_second_ledger_entry() -> None:
    late = ev("late", 2, "complaint.filed")
    res = run([ev("c1", 30, "complaint.filed"), late, late])
    assert [r.event_id for r in res.late] == ["late"]
    assert [d["reason"] for d in res.dead_letters] == ["duplicate_event"]


def test_within_the_lateness_out_of_order_events_count_as_in_event_time_order() -> None:
    shuffled = [ev("c3", 14, "complaint.filed"), ev("c1", 10, "complaint.filed"), ev("c2", 9, "complaint.filed")]
    res = run(shuffled)
    assert not res.late
    [a] = rule_alerts(res, "t.complaints_30d")
    assert a.evidence["value"] == 3


def test_within_the_lateness_an_event_too_old_for_a_short_window_is_ledgered_too() -> None:
    lines = [ev("s1", 10, "lawsuit.filed"), ev("s2", 16.9, "lawsuit.filed")]
    base = run(lines)
    # 6.95 days behind (within the 7-day lateness), but its calendar day is before
    # the 7-day window's oldest day: the window cannot count it.
    res = run([*lines, ev("s0", 9.95, "lawsuit.filed")])
    [rec] = res.late
    assert rec.event_id == "s0" and not rec.beyond_lateness
    assert [(r.rule_id, r.action) for r in rec.rules] == [("t.lawsuits_7d", "window_closed")]
    st, st0 = res.states[ENTITY][0], base.states[ENTITY][0]
    assert st.events == st0.events + 1 and st.watermark == st0.watermark
    assert st.detectors["t.lawsuits_7d"] == st0.detectors["t.lawsuits_7d"]
    # One day newer, the window counts it: no ledger entry, and the 2 in 7 days fire.
    res = run([*lines, ev("s0", 11.5, "lawsuit.filed")])
    assert not res.late and len(rule_alerts(res, "t.lawsuits_7d")) == 1


def test_late_decisions_do_not_depend_on_batch_boundaries() -> None:
    lines = [
        ev("c1", 10, "complaint.filed"),
        ev("c2", 11, "complaint.filed"),
        ev("c3", 12, "complaint.filed"),
        ev("n1", 28, "fund.nav_reported", nav=1.0),
        ev("l1", 15, "complaint.filed"),
        ev("l2", 3, "complaint.filed", category="fraud"),
        ev("n2", 29, "fund.nav_reported", nav=2.0),
        ev("l3", 20, "fund.nav_reported", nav=9.0),
    ]

    def plain(res: BatchResult) -> tuple[list[Any], list[LateRecord]]:
        return [msgspec.structs.replace(a, detected_at="") for a in res.alerts], res.late

    whole = plain(run(lines))
    assert len(whole[1]) == 3
    for size in (1, 2, 3):
        assert plain(run(lines, batch=size)) == whole, size


def test_the_setting_default_is_the_pipeline_default() -> None:
    assert Settings().allowed_lateness == DEFAULT_ALLOWED_LATENESS
    assert Settings(allowed_lateness=60).allowed_lateness == 60.0
