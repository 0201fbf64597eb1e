"""The alert store, the same tests against SQLite and a real PostgreSQL server."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from riskflow.store import AlertStore, NotFound, TransitionError, open_store
from tests.support.store_tools import make_alert

UTC = dt.UTC


def test_dialect_follows_the_target(store: AlertStore, target: str) -> None:
    assert store.dialect.name == ("postgresql" if target.startswith("postgresql://") else "sqlite")


def test_upsert_is_idempotent_and_keeps_the_highest_revision(store: AlertStore) -> None:
    a1 = make_alert("a1")
    assert store.upsert_alerts([a1, make_alert("a2")]) == ["a1", "a2"]
    assert store.upsert_alerts([a1]) == [], "a redelivered alert changes nothing"
    assert store.count() == 2

    grown = make_alert("a1", revision=3, risk_index=82.5, risk_level="red", episode={"count": 3})
    assert store.upsert_alerts([grown]) == ["a1"]
    assert store.upsert_alerts([make_alert("a1", revision=2, risk_index=70.0)]) == [], "an older revision loses"
    row = store.get("a1")
    assert (row.alert.revision, row.alert.risk_index, row.alert.risk_level) == (3, 82.5, "red")
    assert row.alert.episode == {"count": 3}

    # Two revisions in one batch, in either order: the highest wins.
    store.upsert_alerts([make_alert("a3", revision=5, risk_index=90.0), make_alert("a3", revision=4)])
    assert store.get("a3").alert.revision == 5
    assert store.count() == 3
    # The late revision 2 changed no row, but it is a point of the history like every other.
    assert [(r.alert_id, r.revision) for r in store.history("PFM-330100-0001") if r.alert_id == "a1"] == [
        ("a1", 1),
        ("a1", 2),
        ("a1", 3),
    ]
    assert [r.revision for r in store.history("PFM-330100-0001") if r.alert_id == "a3"] == [4, 5]


def test_lifecycle_transitions_are_audited(store: AlertStore) -> None:
    store.upsert_alerts([make_alert("a1")])
    assert store.get("a1").status == "open"
    store.transition("a1", "ack", actor="li.na", note="seen, calling the manager")
    store.transition("a1", "assign", actor="li.na", assignee="wang.wei")
    row = store.transition("a1", "resolve", actor="wang.wei", note="on-site inspection done")
    assert (row.status, row.assignee) == ("resolved", "wang.wei")

    trail = store.audit("a1")
    assert [(e.action, e.actor, e.from_status, e.to_status) for e in trail] == [
        ("ack", "li.na", "open", "acknowledged"),
        ("assign", "li.na", "acknowledged", "assigned"),
        ("resolve", "wang.wei", "assigned", "resolved"),
    ]
    assert trail[0].note == "seen, calling the manager" and "wang.wei" in trail[1].note
    assert all(dt.datetime.fromisoformat(e.at).tzinfo is not None for e in trail)

    with pytest.raises(TransitionError, match="cannot ack an alert that is resolved"):
        store.transition("a1", "ack", actor="li.na")
    with pytest.raises(TransitionError, match="assignee"):
        store.transition("a1", "assign", actor="li.na")
    with pytest.raises(TransitionError, match="officer"):
        store.transition("a1", "reopen", actor=" ")
    with pytest.raises(NotFound):
        store.transition("nope", "ack", actor="li.na")
    assert len(store.audit("a1")) == 3, "refused actions leave no trace and no change"
    assert store.get("a1").status == "resolved"
    store.transition("a1", "reopen", actor="zhao.min", note="complaints continue")
    assert store.get("a1").status == "open"


def test_a_snooze_holds_while_the_level_holds_and_breaks_on_escalation(store: AlertStore) -> None:
    store.upsert_alerts([make_alert("a1", risk_level="orange")])
    store.transition("a1", "snooze", actor="li.na", reason="on-site visit booked", until=_in_days(3))
    store.upsert_alerts([make_alert("a1", revision=2, risk_level="orange")])  # the episode grows: still snoozed
    assert store.get("a1").status == "snoozed"
    store.upsert_alerts([make_alert("a1", revision=3, risk_level="red")])
    row = store.get("a1")
    assert (row.status, row.snooze_until, row.snooze_by, row.alert.revision) == ("open", "", "", 3)
    last = store.audit("a1")[-1]
    assert (last.action, last.actor, last.from_status, last.to_status) == ("reopen", "system", "snoozed", "open")
    assert last.note == "escalated orange → red while snoozed (revision 3)"


def test_snooze_needs_reason_and_expiry_and_expires(store: AlertStore) -> None:
    store.upsert_alerts([make_alert("a1")])
    now = dt.datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    with pytest.raises(TransitionError, match="reason"):
        store.transition("a1", "snooze", actor="li.na", until=now + dt.timedelta(days=1), now=now)
    with pytest.raises(TransitionError, match="expiry"):
        store.transition("a1", "snooze", actor="li.na", reason="waiting for filing", now=now)
    with pytest.raises(TransitionError, match="future"):
        store.transition("a1", "snooze", actor="li.na", reason="x", until=now - dt.timedelta(hours=1), now=now)
    with pytest.raises(TransitionError, match="maximum"):
        store.transition("a1", "snooze", actor="li.na", reason="x", until=now + dt.timedelta(days=400), now=now)

    until = "2026-11-29T20:00:00+08:00"
    row = store.transition("a1", "snooze", actor="li.na", reason="awaiting quarterly filing", until=until, now=now)
    assert (row.status, row.snooze_reason, row.snooze_by) == ("snoozed", "awaiting quarterly filing", "li.na")
    assert row.snooze_until == "2026-11-29T12:00:00.000+00:00"

    assert store.expire_snoozes(now + dt.timedelta(days=1)) == [], "not yet expired"
    assert store.get("a1").status == "snoozed"
    assert store.expire_snoozes(now + dt.timedelta(days=2)) == ["a1"]
    row = store.get("a1")
    assert (row.status, row.snooze_until, row.snooze_reason, row.snooze_by) == ("open", "", "", "")
    last = store.audit("a1")[-1]
    assert (last.action, last.actor, last.from_status, last.to_status) == (
        "snooze_expired",
        "system",
        "snoozed",
        "open",
    )


def test_a_new_revision_reopens_a_resolved_alert_only(store: AlertStore) -> None:
    store.upsert_alerts([make_alert("a1"), make_alert("a2")])
    store.transition("a1", "resolve", actor="li.na")
    store.transition("a2", "ack", actor="li.na")
    store.upsert_alerts([make_alert("a1", revision=2), make_alert("a2", revision=2)])
    assert store.get("a1").status == "open"
    assert store.audit("a1")[-1].actor == "system"
    assert store.get("a2").status == "acknowledged", "an acknowledged alert stays acknowledged"
    store.upsert_alerts([make_alert("a1", revision=2)])
    assert len(store.audit("a1")) == 2, "a redelivery does not reopen again"


def test_changes_since_sees_every_write_in_order(store: AlertStore) -> None:
    start = store.last_seq()
    store.upsert_alerts([make_alert("a1"), make_alert("a2")])
    store.transition("a1", "ack", actor="li.na")
    store.upsert_alerts([make_alert("a2", revision=2)])
    changes = store.changes_since(start)
    assert [c.alert.alert_id for c in changes] == ["a1", "a2"]
    assert changes[0].status == "acknowledged" and changes[1].alert.revision == 2
    assert store.changes_since(changes[-1].seq) == []
    assert store.last_seq() == changes[-1].seq


def test_list_filters_and_order(store: AlertStore) -> None:
    store.upsert_alerts(
        [
            make_alert(
                "a1", region="330100", risk_level="red", risk_index=91.0, event_time="2025-04-01T10:00:00+08:00"
            ),
            make_alert(
                "a2", region="330300", risk_level="yellow", risk_index=45.0, event_time="2025-04-03T10:00:00+08:00"
            ),
            make_alert(
                "a3",
                region="330300",
                risk_level="red",
                risk_index=85.0,
                entity_kind="private_fund",
                rule_id="pf.unqualified_investor",
                event_time="2025-04-02T10:00:00+08:00",
            ),
        ]
    )
    ids = lambda rows: [r.alert.alert_id for r in rows]  # noqa: E731
    assert ids(store.list_alerts()) == ["a2", "a3", "a1"]
    assert ids(store.list_alerts(order="risk_index")) == ["a1", "a3", "a2"]
    assert ids(store.list_alerts(region="330300")) == ["a2", "a3"]
    assert ids(store.list_alerts(level="red")) == ["a3", "a1"]
    assert ids(store.list_alerts(region="330300", level="red", entity_kind="private_fund")) == ["a3"]
    assert ids(store.list_alerts(rule_id="pf.unqualified_investor")) == ["a3"]
    assert ids(store.list_alerts(limit=1)) == ["a2"]
    store.transition("a2", "ack", actor="li.na")
    assert ids(store.list_alerts(status="open")) == ["a3", "a1"]
    assert [r["rule_id"] for r in store.rules()] == ["pf.guaranteed_return", "pf.unqualified_investor"]
    assert store.rules()[0]["title_zh"] == "承诺保本保收益"


def test_data_survives_reopening_the_store(target: str) -> None:
    with open_store(target) as s:
        s.upsert_alerts([make_alert("a1", title_zh="协会公示失联")])
        s.transition("a1", "ack", actor="李娜", note="已电话核实")
    with open_store(target) as s:
        row = s.get("a1")
        assert (row.status, row.alert.title_zh) == ("acknowledged", "协会公示失联")
        assert s.audit("a1")[0].note == "已电话核实"
        assert s.upsert_alerts([make_alert("a1")]) == []


def test_postgres_store_reconnects_after_losing_its_connection(postgres_url: str) -> None:
    import psycopg

    with open_store(postgres_url) as s:
        s.upsert_alerts([make_alert("a1")])
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            n = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()
        assert n and n[0] == 1
        with pytest.raises(psycopg.OperationalError):
            s.upsert_alerts([make_alert("a2")])  # the write in flight fails: the sink retries it
        assert s.upsert_alerts([make_alert("a2")]) == ["a2"], "the next call reconnects"
        assert s.count() == 2


# The schema as RiskFlow created it before schema versions were recorded (migration 1 must
# accept it unchanged): written out here, not imported, so a later edit cannot hide a break.
OLD_SCHEMA = (
    "CREATE TABLE rf_meta (k TEXT PRIMARY KEY, v BIGINT NOT NULL)",
    """CREATE TABLE rf_alerts (
        alert_id TEXT PRIMARY KEY, revision INTEGER NOT NULL, entity_id TEXT NOT NULL,
        entity_kind TEXT NOT NULL, region TEXT NOT NULL, rule_id TEXT NOT NULL, severity TEXT NOT NULL,
        risk_level TEXT NOT NULL, risk_index DOUBLE PRECISION NOT NULL, event_time TEXT NOT NULL,
        detected_at TEXT NOT NULL, body TEXT NOT NULL, status TEXT NOT NULL, assignee TEXT NOT NULL,
        snooze_until TEXT NOT NULL, snooze_reason TEXT NOT NULL, updated_at TEXT NOT NULL, seq BIGINT NOT NULL)""",
    "CREATE INDEX rf_alerts_seq ON rf_alerts (seq)",
    """CREATE TABLE rf_revisions (
        alert_id TEXT NOT NULL, revision INTEGER NOT NULL, entity_id TEXT NOT NULL, event_time TEXT NOT NULL,
        rule_id TEXT NOT NULL, risk_index DOUBLE PRECISION NOT NULL, risk_level TEXT NOT NULL,
        PRIMARY KEY (alert_id, revision))""",
    """CREATE TABLE rf_audit (
        id {pk}, alert_id TEXT NOT NULL, at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
        from_status TEXT NOT NULL, to_status TEXT NOT NULL, note TEXT NOT NULL)""",
    "INSERT INTO rf_meta (k, v) VALUES ('seq', 3)",
)


def _old_store(target: str) -> None:
    """A store as the previous schema left it: two alerts (one snoozed), revisions, audit."""
    from riskflow.store import SQLiteDialect, dialect_for

    scheme = target.split("://", 1)[0] if "://" in target else "sqlite"
    dialect = (dialect_for(scheme) or SQLiteDialect)(target)
    conn = dialect.connect()
    cur = conn.cursor()
    dialect.begin(cur)
    for q in OLD_SCHEMA:
        cur.execute(q.replace("{pk}", dialect.autoinc_pk))
    cols = (
        "alert_id, revision, entity_id, entity_kind, region, rule_id, severity, risk_level, risk_index, event_time,"
        " detected_at, body, status, assignee, snooze_until, snooze_reason, updated_at, seq"
    )
    for i, (status, until, reason) in enumerate(
        [("open", "", ""), ("snoozed", "2099-01-01T00:00:00.000+00:00", "awaiting filing")], start=1
    ):
        a = make_alert(f"old{i}", revision=i)
        row = (a.alert_id, a.revision, a.entity_id, a.entity_kind, a.region, a.rule_id, a.severity, a.risk_level,
               a.risk_index, a.event_time, a.detected_at, a.to_json().decode(), status, "", until, reason,
               "2026-01-01T00:00:00.000+00:00", i)  # fmt: skip
        cur.execute(dialect.sql(f"INSERT INTO rf_alerts ({cols}) VALUES ({', '.join('?' * 18)})"), row)
        cur.execute(
            dialect.sql("INSERT INTO rf_revisions VALUES (?, ?, ?, ?, ?, ?, ?)"),
            (a.alert_id, a.revision, a.entity_id, a.event_time, a.rule_id, a.risk_index, a.risk_level),
        )
    audit = "INSERT INTO rf_audit (alert_id, at, actor, action, from_status, to_status, note) VALUES (?,?,?,?,?,?,?)"
    cur.execute(
        dialect.sql(audit), ("old2", "2026-01-01T00:00:00.000+00:00", "li.na", "snooze", "open", "snoozed", "x")
    )
    conn.commit()
    conn.close()


def _in_days(n: float) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(days=n)).isoformat()


def test_an_old_store_is_migrated_without_losing_rows(target: str) -> None:
    from riskflow.store.migrations import LATEST, MIGRATIONS

    _old_store(target)
    with open_store(target) as s:
        assert s.schema_version() == LATEST >= 2
        assert s.count() == 2 and s.last_seq() == 3
        old1, old2 = s.get("old1"), s.get("old2")
        assert (old1.status, old1.snooze_by, old1.alert.revision) == ("open", "", 1)
        # Migration 2 filled the new column from the audit trail.
        assert (old2.status, old2.snooze_reason, old2.snooze_by) == ("snoozed", "awaiting filing", "li.na")
        assert [e.actor for e in s.audit("old2")] == ["li.na"]
        assert [r.alert_id for r in s.history("PFM-330100-0001")] == ["old1", "old2"]
        # The migrated store works as a new one: upsert, transition (the audit id still counts up).
        assert s.upsert_alerts([make_alert("new1"), make_alert("old1", revision=2)]) == ["new1", "old1"]
        assert s.transition("new1", "snooze", actor="wang.wei", reason="r", until=_in_days(2)).snooze_by == "wang.wei"
        assert s.last_seq() == 6
    with open_store(target) as s:  # opening again applies nothing twice
        assert s.schema_version() == LATEST and s.count() == 3
        with s._tx() as cur:
            versions = [r[0] for r in s._x(cur, "SELECT version FROM rf_schema_version ORDER BY version").fetchall()]
        assert versions == [m.version for m in MIGRATIONS]


def test_a_store_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    from riskflow.store.migrations import LATEST, SchemaTooNew

    target = str(tmp_path / "new.sqlite3")
    with open_store(target) as s, s._tx() as cur:
        s._x(cur, "INSERT INTO rf_schema_version VALUES (?, 'from the future', '')", (LATEST + 1,))
    with pytest.raises(SchemaTooNew):
        open_store(target)
