"""Ordered schema migrations of the alert store, applied when a store is opened.

Version ``n`` of the schema is the result of migrations ``1..n``; the versions a
database has are rows of ``rf_schema_version``. Opening a store takes the schema
lock (PostgreSQL: an advisory transaction lock; SQLite: ``BEGIN IMMEDIATE``),
reads the version, applies the missing migrations in order and records them, all
in one transaction: two processes opening an old store at once migrate it once,
and a failed migration leaves it as it was. The same SQL runs on SQLite and
PostgreSQL (``{pk}`` is the dialect's auto-increment key type).

Migration 1 is the schema as it was before versions were recorded, written with
``IF NOT EXISTS``: a store from then (tables present, no ``rf_schema_version``)
is taken as version 1 without change. A new migration is appended here, never
edited once released; a store newer than the code is refused.

>>> [m.version for m in MIGRATIONS] == list(range(1, LATEST + 1))
True
"""

from __future__ import annotations

from typing import NamedTuple


class Migration(NamedTuple):
    version: int
    name: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "alerts, revisions, audit trail, change sequence",
        (
            "CREATE TABLE IF NOT EXISTS rf_meta (k TEXT PRIMARY KEY, v BIGINT NOT NULL)",
            """CREATE TABLE IF NOT EXISTS rf_alerts (
                alert_id TEXT PRIMARY KEY, revision INTEGER NOT NULL, entity_id TEXT NOT NULL,
                entity_kind TEXT NOT NULL, region TEXT NOT NULL, rule_id TEXT NOT NULL, severity TEXT NOT NULL,
                risk_level TEXT NOT NULL, risk_index DOUBLE PRECISION NOT NULL, event_time TEXT NOT NULL,
                detected_at TEXT NOT NULL, body TEXT NOT NULL, status TEXT NOT NULL, assignee TEXT NOT NULL,
                snooze_until TEXT NOT NULL, snooze_reason TEXT NOT NULL, updated_at TEXT NOT NULL,
                seq BIGINT NOT NULL)""",
            "CREATE INDEX IF NOT EXISTS rf_alerts_seq ON rf_alerts (seq)",
            "CREATE INDEX IF NOT EXISTS rf_alerts_entity ON rf_alerts (entity_id)",
            "CREATE INDEX IF NOT EXISTS rf_alerts_time ON rf_alerts (event_time)",
            """CREATE TABLE IF NOT EXISTS rf_revisions (
                alert_id TEXT NOT NULL, revision INTEGER NOT NULL, entity_id TEXT NOT NULL,
                event_time TEXT NOT NULL, rule_id TEXT NOT NULL, risk_index DOUBLE PRECISION NOT NULL,
                risk_level TEXT NOT NULL, PRIMARY KEY (alert_id, revision))""",
            "CREATE INDEX IF NOT EXISTS rf_revisions_entity ON rf_revisions (entity_id)",
            """CREATE TABLE IF NOT EXISTS rf_audit (
                id {pk}, alert_id TEXT NOT NULL, at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
                from_status TEXT NOT NULL, to_status TEXT NOT NULL, note TEXT NOT NULL)""",
            "CREATE INDEX IF NOT EXISTS rf_audit_alert ON rf_audit (alert_id)",
            "INSERT INTO rf_meta (k, v) VALUES ('seq', 0) ON CONFLICT (k) DO NOTHING",
        ),
    ),
    Migration(
        2,
        "snooze officer: rf_alerts.snooze_by, filled from the audit trail; filter index",
        (
            "ALTER TABLE rf_alerts ADD COLUMN snooze_by TEXT NOT NULL DEFAULT ''",
            """UPDATE rf_alerts SET snooze_by = COALESCE((
                SELECT a.actor FROM rf_audit a WHERE a.alert_id = rf_alerts.alert_id AND a.action = 'snooze'
                ORDER BY a.id DESC LIMIT 1), '') WHERE status = 'snoozed'""",
            "CREATE INDEX IF NOT EXISTS rf_alerts_level_region ON rf_alerts (risk_level, region)",
        ),
    ),
    Migration(
        3,
        "store-rejects ledger: records the database refused or the sink could not decode",
        (
            """CREATE TABLE IF NOT EXISTS rf_store_rejects (
                reject_id TEXT PRIMARY KEY, alert_id TEXT NOT NULL, reason TEXT NOT NULL,
                error_class TEXT NOT NULL, error TEXT NOT NULL, raw TEXT NOT NULL, raw_size BIGINT NOT NULL,
                source TEXT NOT NULL, at TEXT NOT NULL)""",
            "CREATE INDEX IF NOT EXISTS rf_store_rejects_at ON rf_store_rejects (at)",
        ),
    ),
    Migration(
        4,
        "officers' cases: one open case per institution, the alerts that joined it, its log",
        (
            """CREATE TABLE IF NOT EXISTS rf_cases (
                case_id TEXT PRIMARY KEY, entity_id TEXT NOT NULL, entity_kind TEXT NOT NULL, region TEXT NOT NULL,
                status TEXT NOT NULL, level TEXT NOT NULL, risk_index DOUBLE PRECISION NOT NULL,
                people BIGINT NOT NULL, amount DOUBLE PRECISION NOT NULL, route_en TEXT NOT NULL,
                route_zh TEXT NOT NULL, regulation TEXT NOT NULL, checklist TEXT NOT NULL, assignee TEXT NOT NULL,
                opened_at TEXT NOT NULL, due_at TEXT NOT NULL, first_action_at TEXT NOT NULL,
                closed_at TEXT NOT NULL, outcome TEXT NOT NULL, close_reason TEXT NOT NULL, closed_by TEXT NOT NULL,
                first_alert_id TEXT NOT NULL, first_event_time TEXT NOT NULL, last_event_time TEXT NOT NULL,
                updated_at TEXT NOT NULL, seq BIGINT NOT NULL)""",
            # One open case per institution, whatever writes it.
            "CREATE UNIQUE INDEX IF NOT EXISTS rf_cases_one_open ON rf_cases (entity_id) WHERE status <> 'closed'",
            "CREATE INDEX IF NOT EXISTS rf_cases_entity ON rf_cases (entity_id)",
            "CREATE INDEX IF NOT EXISTS rf_cases_seq ON rf_cases (seq)",
            """CREATE TABLE IF NOT EXISTS rf_case_alerts (
                case_id TEXT NOT NULL, alert_id TEXT NOT NULL, PRIMARY KEY (case_id, alert_id))""",
            "CREATE INDEX IF NOT EXISTS rf_case_alerts_alert ON rf_case_alerts (alert_id)",
            """CREATE TABLE IF NOT EXISTS rf_case_log (
                id {pk}, case_id TEXT NOT NULL, at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
                from_status TEXT NOT NULL, to_status TEXT NOT NULL, note TEXT NOT NULL)""",
            "CREATE INDEX IF NOT EXISTS rf_case_log_case ON rf_case_log (case_id)",
            "INSERT INTO rf_meta (k, v) VALUES ('case_seq', 0) ON CONFLICT (k) DO NOTHING",
        ),
    ),
    Migration(
        5,
        "index history by dimension: rf_revisions.dimensions (JSON, dimension -> index points)",
        ("ALTER TABLE rf_revisions ADD COLUMN dimensions TEXT NOT NULL DEFAULT '{}'",),
    ),
)
LATEST: int = MIGRATIONS[-1].version

VERSION_TABLE = """CREATE TABLE IF NOT EXISTS rf_schema_version (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"""


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer RiskFlow than this one."""
