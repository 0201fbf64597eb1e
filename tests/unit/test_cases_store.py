"""Officers' cases in the store (riskflow/store/cases.py), on SQLite and a real PostgreSQL server."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from riskflow.core.alerts import Alert
from riskflow.store import (
    AlertStore,
    CaseError,
    CaseNotFound,
    IllegalCaseTransition,
    open_store,
)
from riskflow.store.base import Incoming
from riskflow.store.cases import TEXT_LIMIT_BYTES
from tests.support.cases_tools import E1, E2, alert


def rise(aid: str, frm: str, to: str, index: float, entity: str = E1) -> Alert:
    return alert(aid, to, index, entity, rule="risk.level", evidence={"from": frm, "to": to, "index": index})


def _ts(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s)


def test_an_orange_alert_opens_one_case_with_the_levels_disposal(store: AlertStore) -> None:
    store.upsert_alerts([alert("g1", "green", 20.0), alert("g2", "green", 30.0, entity=E2)])
    assert store.list_cases() == [], "green opens no case"
    store.upsert_alerts([alert("a1", "orange", 64.0), alert("a2", "orange", 66.0)])
    (c,) = store.list_cases()
    assert (c.entity_id, c.status, c.level, c.route_en, c.route_zh) == (
        E1,
        "open",
        "orange",
        "on-site inspection",
        "现场检查",
    )
    assert _ts(c.due_at) - _ts(c.opened_at) == dt.timedelta(days=3)
    assert [s["zh"] for s in c.checklist][1] == "安排并开展现场检查" and not any(s["done"] for s in c.checklist)
    assert "762" in c.regulation
    assert (c.people, c.amount, c.first_alert_id) == (12, 3.5e6, "a1")
    assert sorted(store.case_alert_ids(c.case_id)) == ["a1", "a2"]
    assert [(e.actor, e.action) for e in store.case_log(c.case_id)] == [("system", "open")]


def test_a_redelivered_batch_creates_and_changes_nothing(store: AlertStore) -> None:
    batch = [alert("a1", "yellow", 45.0), alert("a2", "red", 85.0), alert("b1", "orange", 61.0, entity=E2)]
    items = [Incoming.of(a) for a in batch]
    store.write_batch(items)
    before = store.list_cases()
    seq = store.last_seq()
    logs = {c.case_id: store.case_log(c.case_id) for c in before}
    cseq = store.last_case_seq()
    store.write_batch(items)
    store.upsert_alerts(batch)
    assert store.list_cases() == before and store.last_seq() == seq and store.last_case_seq() == cseq
    assert {c.case_id: store.case_log(c.case_id) for c in before} == logs
    assert sorted(c.entity_id for c in before) == [E1, E2], "one case per institution"


def test_the_same_stream_gives_the_same_case_ids_in_another_store(store: AlertStore, tmp_path: Path) -> None:
    batch = [alert("a1", "yellow", 45.0), alert("b1", "orange", 61.0, entity=E2)]
    store.upsert_alerts(batch)
    with open_store(str(tmp_path / "other.sqlite3")) as other:
        other.upsert_alerts(batch)
        assert sorted(c.case_id for c in other.list_cases()) == sorted(c.case_id for c in store.list_cases())


def test_a_level_rise_reprioritises_the_open_case_and_writes_its_diary(store: AlertStore) -> None:
    store.upsert_alerts([alert("a1", "yellow", 45.0)])
    (c0,) = store.list_cases()
    assert _ts(c0.due_at) - _ts(c0.opened_at) == dt.timedelta(days=10)
    store.upsert_alerts([rise("lv1", "yellow", "red", 86.0)])
    (c,) = store.list_cases()
    assert c.case_id == c0.case_id, "the open case is raised, not replaced"
    assert (c.level, c.route_zh, c.risk_index) == ("red", "立即处置、移交", 86.0)
    assert _ts(c.due_at) - _ts(c.opened_at) <= dt.timedelta(days=1, seconds=5)
    log = store.case_log(c.case_id)
    assert [(e.actor, e.action) for e in log] == [("system", "open"), ("system", "raise")]
    assert "yellow → red" in log[1].note
    store.upsert_alerts([alert("a3", "orange", 70.0)])  # a lower level does not lower the case
    assert store.get_case(c.case_id).level == "red"


def test_officer_actions_and_the_audit_trail(store: AlertStore) -> None:
    store.upsert_alerts([alert("a1", "red", 90.0)])
    cid = store.list_cases()[0].case_id
    c = store.case_action(cid, "assign", actor="li.na", assignee="wang.wei", note="yours")
    assert (c.status, c.assignee) == ("assigned", "wang.wei") and c.first_action_at
    store.case_action(cid, "note", actor="wang.wei", note="called the manager; 投资人 12 人")
    c = store.case_action(cid, "check", actor="wang.wei", step=1)
    assert c.checklist[0]["done"] and c.checklist[0]["by"] == "wang.wei"
    c = store.case_action(cid, "close", actor="wang.wei", outcome="confirmed", reason="funds missing")
    assert (c.status, c.outcome, c.close_reason, c.closed_by) == ("closed", "confirmed", "funds missing", "wang.wei")
    log = store.case_log(cid)
    assert [(e.actor, e.action, e.from_status, e.to_status) for e in log] == [
        ("system", "open", "", "open"),
        ("li.na", "assign", "open", "assigned"),
        ("wang.wei", "note", "assigned", "assigned"),
        ("wang.wei", "check", "assigned", "assigned"),
        ("wang.wei", "close", "assigned", "closed"),
    ]
    assert "投资人 12 人" in log[2].note and "确认风险" in log[4].note
    c = store.case_action(cid, "reopen", actor="boss", note="new evidence")
    assert (c.status, c.outcome) == ("assigned", "")


@pytest.mark.parametrize(
    ("action", "kw", "error", "text"),
    [
        ("close", {"outcome": "maybe", "reason": "x"}, CaseError, "bad outcome"),
        ("close", {"outcome": "confirmed"}, CaseError, "close needs a reason"),
        ("note", {"note": "x" * (TEXT_LIMIT_BYTES + 1)}, CaseError, "at most 4096"),
        ("note", {"note": "   "}, CaseError, "a note needs text"),
        ("assign", {}, CaseError, "assign needs an assignee"),
        ("check", {"step": 99}, CaseError, "no step 99"),
        ("reopen", {}, IllegalCaseTransition, "cannot reopen a case that is open"),
        ("escalate", {}, CaseError, "unknown action"),
    ],
)
def test_bad_actions_are_refused_and_change_nothing(
    store: AlertStore, action: str, kw: dict[str, Any], error: type[Exception], text: str
) -> None:
    store.upsert_alerts([alert("a1", "red", 90.0)])
    (c,) = store.list_cases()
    log = store.case_log(c.case_id)
    with pytest.raises(error, match=text):
        store.case_action(c.case_id, action, actor="li.na", **kw)
    assert store.get_case(c.case_id) == c and store.case_log(c.case_id) == log


def test_closed_cases_and_unknown_ids_refuse_actions(store: AlertStore) -> None:
    with pytest.raises(CaseNotFound):
        store.case_action("nope", "note", actor="li.na", note="x")
    with pytest.raises(CaseNotFound):
        store.get_case("nope")
    store.upsert_alerts([alert("a1", "red", 90.0)])
    cid = store.list_cases()[0].case_id
    store.case_action(cid, "close", actor="li.na", outcome="false_alarm", reason="data error")
    closed = store.get_case(cid)
    for action, kw in (
        ("note", {"note": "x"}),
        ("close", {"outcome": "confirmed", "reason": "x"}),
        ("assign", {"assignee": "x"}),
    ):
        with pytest.raises(IllegalCaseTransition, match="closed"):
            store.case_action(cid, action, actor="li.na", **kw)
    assert store.get_case(cid) == closed


def test_after_a_close_only_a_new_rise_opens_a_new_case(store: AlertStore) -> None:
    store.upsert_alerts([alert("a1", "orange", 65.0)])
    first = store.list_cases()[0].case_id
    store.case_action(first, "close", actor="li.na", outcome="rectified", reason="rectified")
    # the same level again (a new revision, another rule at orange): no new case
    store.upsert_alerts([alert("a1", "orange", 66.0, revision=2), alert("a9", "orange", 67.0)])
    assert [c.case_id for c in store.list_cases()] == [first]
    # the institution falls and rises again: a new risk.level rise opens a new case
    store.upsert_alerts([rise("lv1", "orange", "green", 30.0), rise("lv2", "green", "yellow", 42.0)])
    cases = store.list_cases()
    assert len(cases) == 2 and cases[0].status == "open" and cases[0].level == "yellow"
    second = cases[0].case_id
    with pytest.raises(IllegalCaseTransition, match="already has an open case"):
        store.case_action(first, "reopen", actor="boss")
    store.case_action(second, "close", actor="li.na", outcome="false_alarm", reason="noise")
    # a level above the closed case's opens one too
    store.upsert_alerts([alert("a10", "red", 81.0)])
    assert [c.level for c in store.list_cases(open_only=True)] == ["red"]
    assert len(store.list_cases()) == 3


def test_cases_bump_the_change_sequence(store: AlertStore) -> None:
    seq = store.last_case_seq()
    store.upsert_alerts([alert("a1", "orange", 65.0)])
    (c,) = store.cases_since(seq)
    store.case_action(c.case_id, "note", actor="li.na", note="x")
    assert [x.case_id for x in store.cases_since(c.seq)] == [c.case_id]


def test_extreme_exposure_opens_a_case_and_stores_the_alert(store: AlertStore) -> None:
    """People beyond 64 bits or an infinite amount in an alert cannot break the case columns:
    the alert is stored, its case opens with bounded figures, nothing is ledgered."""
    a = alert("x1", "yellow", 45.0, affected_people=2**70, affected_amount=float("inf"))
    result = store.write_batch([Incoming.of(a)])
    assert result.rejects == [] and result.changed == ["x1"]
    (c,) = store.list_cases()
    assert (c.people, c.amount) == (2**53, 0.0)
    store.upsert_alerts([alert("x2", "red", 85.0, affected_amount=float("nan"))])
    assert store.get_case(c.case_id).level == "red"


def test_the_index_history_keeps_each_revisions_dimension_points(store: AlertStore) -> None:
    """Every revision's points per dimension join the entity's history (the institution page's
    breakdown over time); a redelivered revision changes nothing, a hostile value is not kept."""
    a1 = alert("d1", "yellow", 45.0, risk_dimensions={"inducement": 30.0, "complaints": 15.0})
    a2 = alert("d1", "orange", 62.0, revision=2, risk_dimensions={"inducement": 32.0, "complaints": 30.0})
    store.upsert_alerts([a1])
    store.upsert_alerts([a2, a1])
    bad = alert("d2", "orange", 62.0, event_time="2025-04-02T10:00:00+08:00",
                risk_dimensions={"inducement": float("inf"), "complaints": 62.0})  # fmt: skip
    store.upsert_alerts([bad])
    got = [(r.alert_id, r.revision, r.dimensions) for r in store.history(E1)]
    assert got == [
        ("d1", 1, {"inducement": 30.0, "complaints": 15.0}),
        ("d1", 2, {"inducement": 32.0, "complaints": 30.0}),
        ("d2", 1, {"complaints": 62.0}),
    ]
    assert store.get("d1").alert.risk_dimensions == {"inducement": 32.0, "complaints": 30.0}
    assert store.get("d2").alert.risk_dimensions == {"complaints": 62.0}, "the stored alert reads back"
