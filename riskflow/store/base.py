"""The durable alert store: one SQL implementation over DB-API, a small dialect per database.

Alerts are upserted by ``alert_id`` and keep their highest ``revision`` (an
episode that grows re-sends its alert with a higher revision); every revision
received is also kept, by (``alert_id``, ``revision``), as a point of the
entity's risk-index history; re-delivering an alert changes nothing. Each alert
has an officer lifecycle::

    open -> acknowledged -> assigned -> resolved
      \\-> snoozed (reason, officer, expiry) -> open again when the snooze expires,
                                               or when a new revision raises its risk level

and every transition is written to an audit trail (who, when, note) in the same
transaction as the status change. Every write bumps a store-wide change
sequence (``seq``): the live feed polls ``changes_since(seq)``, which sees the
sink's inserts, officers' actions and CLI commands alike, whichever process made them.

A record the store cannot keep (a NUL in a column, a revision out of range, or
anything else the database refuses for the record's content) is not retried:
``write_batch`` stores the rest of the batch and writes the refused one to the
store-rejects ledger (``rf_store_rejects``, read by ``rejects()``). Only a
failure of the store itself (connection, locks, disk, schema) is raised, for
the sink to retry; ``Dialect.refusal`` tells the two apart.

>>> from riskflow.core.alerts import Alert
>>> from riskflow.store import open_store
>>> s = open_store(":memory:")
>>> a = Alert(alert_id="a1", entity_id="PF-1", entity_kind="private_fund", region="330100",
...           rule_id="pf.guaranteed_return", severity="high", title_zh="承诺保本保收益",
...           title_en="Guaranteed-return promise", event_time="2025-01-01T00:00:00+08:00")
>>> s.upsert_alerts([a]), s.upsert_alerts([a])
(['a1'], [])
>>> s.transition("a1", "ack", actor="li.na", note="looking").status
'acknowledged'
>>> [e.action for e in s.audit("a1")]
['ack']
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import math
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, Final, NamedTuple

import msgspec

from detectors.risk.config import RiskConfig
from riskflow.core.alerts import Alert
from riskflow.core.registry import Registry
from riskflow.core.textsafe import bounded
from riskflow.store.cases import CaseStoreMixin
from riskflow.store.migrations import LATEST, MIGRATIONS, VERSION_TABLE, SchemaTooNew

STATUSES: Final = ("open", "acknowledged", "assigned", "snoozed", "resolved")
ACTIONS: Final = ("ack", "assign", "resolve", "snooze", "reopen")
# action -> (statuses it may start from, status it leads to)
TRANSITIONS: Final[dict[str, tuple[tuple[str, ...], str]]] = {
    "ack": (("open", "snoozed"), "acknowledged"),
    "assign": (("open", "acknowledged", "assigned", "snoozed"), "assigned"),
    "resolve": (("open", "acknowledged", "assigned", "snoozed"), "resolved"),
    "snooze": (("open", "acknowledged", "assigned"), "snoozed"),
    "reopen": (("acknowledged", "assigned", "snoozed", "resolved"), "open"),
}
SYSTEM_ACTOR: Final = "system"
# Why a record went to the store-rejects ledger (the label set of riskflow_store_rejected_total).
REJECT_REASONS: Final = ("undecodable", "bad_text", "out_of_range", "constraint", "bad_value")
RAW_LIMIT: Final = 8192  # characters of a rejected record kept in the ledger
_TEXT_LIMIT: Final = 1000  # characters of an id or error message kept in the ledger
_INT4: Final = 2**31  # rf_alerts.revision is a 32-bit INTEGER on PostgreSQL
# The alert fields stored in columns of their own (the rest lives JSON-escaped in ``body``).
_COLUMN_TEXT: Final = ("alert_id", "entity_id", "entity_kind", "region", "rule_id", "severity", "risk_level",
                       "event_time", "detected_at")  # fmt: skip
_RANK: Final = {"green": 0, "yellow": 1, "orange": 2, "red": 3}


class TransitionError(ValueError):
    """An action that the alert's current status does not allow, or a bad argument."""


class IllegalTransition(TransitionError):
    """The alert's current status does not allow the action (HTTP 409 in the API)."""


class NotFound(KeyError):
    """No alert with that id."""


class Refused(ValueError):
    """A record the store will not keep as it is: its content, not the database, is at fault."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def check_storable(a: Alert) -> None:
    """Refuse what one of the two databases could not store, on both alike.

    PostgreSQL refuses a NUL in text and a revision beyond 32 bits; SQLite would keep
    them (and cut text at the NUL in its own functions). A non-finite risk index is
    no index. Titles and evidence are stored JSON-escaped, so any character is kept there.

    >>> from riskflow.core.alerts import Alert
    >>> check_storable(Alert(alert_id="a", entity_id="PF\\x00", entity_kind="k", region="r", rule_id="x",
    ...                      severity="high", title_zh="", title_en="", event_time=""))
    Traceback (most recent call last):
    ...
    riskflow.store.base.Refused: entity_id contains a NUL character
    """
    for name in _COLUMN_TEXT:
        if "\x00" in getattr(a, name):
            raise Refused("bad_text", f"{name} contains a NUL character")
    if not -_INT4 <= a.revision < _INT4:
        raise Refused("out_of_range", f"revision {a.revision} is outside the 32-bit range")
    if not math.isfinite(a.risk_index):
        raise Refused("bad_value", f"risk_index {a.risk_index} is not a finite number")


class Incoming(NamedTuple):
    """One message for the store: its bytes, its alert if it decoded (else why not), its origin."""

    raw: bytes
    alert: Alert | None
    source: str = ""  # "topic/partition@offset"
    error_class: str = ""
    error: str = ""

    @classmethod
    def of(cls, a: Alert, source: str = "") -> Incoming:
        return cls(a.to_json(), a, source)


class Reject(msgspec.Struct, kw_only=True):
    """One entry of the store-rejects ledger: a record that was not stored, and why.

    Text is escaped (control characters, see ``riskflow.core.textsafe``) and bounded, so
    that the ledger itself can hold it; ``raw_size`` is the record's full size in bytes.
    ``reject_id`` is a hash of the raw record: a re-delivered record is ledgered once.
    """

    reject_id: str
    alert_id: str
    reason: str
    error_class: str
    error: str
    raw: str
    raw_size: int
    source: str
    at: str

    @classmethod
    def of(cls, item: Incoming, reason: str, error_class: str, error: str, at: str) -> Reject:
        aid = item.alert.alert_id if item.alert is not None else ""
        return cls(
            reject_id=hashlib.blake2b(item.raw, digest_size=16).hexdigest(),
            alert_id=bounded(aid, 200),
            reason=reason if reason in REJECT_REASONS else "bad_value",
            error_class=bounded(error_class, 200),
            error=bounded(error, _TEXT_LIMIT),
            raw=bounded(item.raw.decode("utf-8", "backslashreplace"), RAW_LIMIT),
            raw_size=len(item.raw),
            source=bounded(item.source, 200),
            at=at,
        )


class BatchResult(NamedTuple):
    """What ``write_batch`` did: ids whose current row changed, records ledgered instead."""

    changed: list[str]
    rejects: list[Reject]


def error_class_name(e: BaseException) -> str:
    """``psycopg.DataError``, ``ValueError``: the class of an error as the ledger names it."""
    t = type(e)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


class AlertRow(msgspec.Struct, kw_only=True):
    """An alert as stored: the alert record plus its lifecycle state."""

    alert: Alert
    status: str = "open"
    assignee: str = ""
    snooze_until: str = ""
    snooze_reason: str = ""
    updated_at: str = ""
    seq: int = 0
    snooze_by: str = ""  # the officer who snoozed it

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = msgspec.to_builtins(self.alert)
        d.update(
            status=self.status,
            assignee=self.assignee,
            snooze_until=self.snooze_until,
            snooze_reason=self.snooze_reason,
            snooze_by=self.snooze_by,
            updated_at=self.updated_at,
            seq=self.seq,
        )
        return d


class AuditEntry(msgspec.Struct, kw_only=True):
    """One lifecycle transition: who did what, when, from which status to which, and why."""

    alert_id: str
    at: str
    actor: str
    action: str
    from_status: str
    to_status: str
    note: str = ""


class Revision(msgspec.Struct, kw_only=True):
    """One received revision of an alert: the points of an entity's risk-index history, with the
    index's points per dimension (empty for alerts from before the alerts carried them)."""

    alert_id: str
    revision: int
    event_time: str
    rule_id: str
    risk_index: float
    risk_level: str
    dimensions: dict[str, float] = msgspec.field(default_factory=dict)


def _dimensions_json(dims: dict[str, float]) -> str:
    """An alert's index points per dimension as stored: finite numbers only, names bounded."""
    ok = {str(k)[:64]: float(v) for k, v in list(dims.items())[:32] if isinstance(v, int | float) and math.isfinite(v)}
    return json.dumps(ok, ensure_ascii=False)


def _dimensions(text: str) -> dict[str, float]:
    try:
        d = json.loads(text or "{}")
    except ValueError:
        return {}
    return {str(k): float(v) for k, v in d.items()} if isinstance(d, dict) else {}


def now_iso() -> str:
    """UTC wall clock in the store's one timestamp format (so that strings compare as times)."""
    return to_utc_iso(_dt.datetime.now(_dt.UTC))


def to_utc_iso(t: _dt.datetime | str) -> str:
    """A timestamp with an offset, in UTC and the store's format.

    >>> to_utc_iso("2026-01-02T08:00:00+08:00")
    '2026-01-02T00:00:00.000+00:00'
    """
    if isinstance(t, str):
        t = _dt.datetime.fromisoformat(t)
    if t.tzinfo is None:
        raise ValueError("timestamp without a UTC offset")
    return t.astimezone(_dt.UTC).isoformat(timespec="milliseconds")


_COLUMNS: Final = (
    "alert_id, revision, entity_id, entity_kind, region, rule_id, severity, risk_level, risk_index, "
    "event_time, detected_at, body, status, assignee, snooze_until, snooze_reason, updated_at, seq, snooze_by"
)


#: name -> class: every module of ``riskflow/store/`` is imported on the first read, and each
#: :class:`Dialect` subclass with a ``name`` joins as it is defined (riskflow/core/registry.py).
DIALECTS: Registry[Dialect] = Registry("riskflow.store", "store dialect")


def dialect_for(scheme: str) -> type[Dialect] | None:
    """The dialect of a URL scheme (``postgres`` -> PostgreSQL), or ``None``.

    >>> dialect_for("postgres").name, dialect_for("mysql")
    ('postgresql', None)
    """
    return next((cls for cls in DIALECTS.values() if scheme in cls.schemes), None)


class Dialect:
    """What differs between databases: connecting, parameter style, DDL types.

    Subclasses live one per file (``sqlite.py``, ``postgres.py``) and register in
    :data:`DIALECTS` by ``name``, serving the URL ``schemes`` they list.
    """

    name: ClassVar[str] = ""
    schemes: ClassVar[tuple[str, ...]] = ()
    autoinc_pk: ClassVar[str] = "INTEGER PRIMARY KEY"
    placeholder: ClassVar[str] = "?"
    for_update: ClassVar[str] = ""

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        DIALECTS.add(cls.name, cls)

    def __init__(self, url: str) -> None:
        self.url = url

    def connect(self) -> Any:  # a DB-API 2 connection
        raise NotImplementedError

    def begin(self, cur: Any) -> None:
        """Start a transaction (where the driver does not start one by itself)."""

    def is_broken(self, conn: Any) -> bool:
        """Whether ``conn`` is lost and must be replaced before the next transaction."""
        return False

    def lock_schema(self, cur: Any) -> None:
        """Serialise schema migrations between processes, until the transaction ends."""

    def sql(self, q: str) -> str:
        return q if self.placeholder == "?" else q.replace("?", self.placeholder)

    def refusal(self, e: BaseException) -> str | None:
        """The reject reason when ``e`` means the database refused a record for its content;
        None when the store itself failed (connection, lock, disk, schema, privileges), which
        is retried: ledgering every alert of a broken store would empty the stream into the ledger.

        DB-API names the two kinds alike in every driver (``DataError``, ``IntegrityError``
        against ``OperationalError``, ``InterfaceError``); subclasses refine by error code.

        >>> import sqlite3
        >>> d = Dialect("x")
        >>> d.refusal(sqlite3.OperationalError("database is locked")), d.refusal(ConnectionError())
        (None, None)
        >>> d.refusal(sqlite3.IntegrityError("NOT NULL")), d.refusal(UnicodeEncodeError("utf-8", "", 0, 1, "s"))
        ('constraint', 'bad_text')
        """
        if isinstance(e, Refused):
            return e.reason
        names = {c.__name__ for c in type(e).__mro__}
        if names & {"OperationalError", "InterfaceError"} or isinstance(e, OSError):
            return None
        if isinstance(e, UnicodeError):
            return "bad_text"
        if isinstance(e, OverflowError):
            return "out_of_range"
        if "IntegrityError" in names:
            return "constraint"
        if "DataError" in names or isinstance(e, ValueError | TypeError):
            return "bad_value"
        return None

    def describe(self) -> str:
        return f"{self.name}:{self.url}"


#: Filter (a keyword of :meth:`AlertStore.list_alerts`) -> the column it compares.
_FILTER_COLUMNS: Final = {
    "region": "region",
    "level": "risk_level",
    "entity_kind": "entity_kind",
    "rule_id": "rule_id",
    "status": "status",
    "entity_id": "entity_id",
    "severity": "severity",
}


def _filters(given: dict[str, str | None]) -> tuple[str, list[Any]]:
    """``WHERE`` clause and parameters of filters by their keyword (``None``: not filtered)."""
    unknown = set(given) - set(_FILTER_COLUMNS)
    if unknown:
        raise TypeError(f"unknown filter {', '.join(sorted(unknown))}")
    conds = [f"{_FILTER_COLUMNS[k]} = ?" for k, v in given.items() if v]
    params: list[Any] = [v for v in given.values() if v]
    return ("WHERE " + " AND ".join(conds)) if conds else "", params


class AlertStore(CaseStoreMixin):
    """Alerts, their lifecycle and audit trail, and officers' cases (``riskflow/store/cases.py``)
    in one SQL database (see the module doc). ``risk_config`` gives the cases' disposal."""

    def __init__(self, dialect: Dialect, risk_config: RiskConfig | None = None) -> None:
        self.dialect = dialect
        self.risk_config = risk_config or RiskConfig()
        self._conn = dialect.connect()
        self._lock = threading.RLock()
        self._create_schema()

    # -- plumbing -----------------------------------------------------------------------------
    @contextmanager
    def _tx(self) -> Iterator[Any]:
        """One transaction on the store's connection; commits on success, rolls back on error."""
        with self._lock:
            if self.dialect.is_broken(self._conn):  # e.g. the database server restarted: reconnect
                with contextlib.suppress(Exception):
                    self._conn.close()
                self._conn = self.dialect.connect()
            cur = self._conn.cursor()
            try:
                self.dialect.begin(cur)
                yield cur
                self._conn.commit()
            except BaseException:
                with contextlib.suppress(Exception):  # a lost connection cannot roll back; keep the first error
                    self._conn.rollback()
                raise
            finally:
                with contextlib.suppress(Exception):
                    cur.close()

    def _x(self, cur: Any, q: str, params: Sequence[Any] = ()) -> Any:
        cur.execute(self.dialect.sql(q), tuple(params))
        return cur

    def _create_schema(self) -> None:
        """Bring the database to the latest schema version (``riskflow/store/migrations.py``)."""
        pk = self.dialect.autoinc_pk
        with self._tx() as cur:
            self.dialect.lock_schema(cur)
            self._x(cur, VERSION_TABLE)
            have = int(self._x(cur, "SELECT COALESCE(MAX(version), 0) FROM rf_schema_version").fetchone()[0])
            if have > LATEST:
                raise SchemaTooNew(f"store schema version {have} is newer than this RiskFlow's ({LATEST})")
            at = now_iso()
            for m in MIGRATIONS:
                if m.version <= have:
                    continue
                for q in m.statements:
                    self._x(cur, q.replace("{pk}", pk))
                row = (m.version, m.name, at)
                self._x(cur, "INSERT INTO rf_schema_version (version, name, applied_at) VALUES (?, ?, ?)", row)

    def schema_version(self) -> int:
        with self._tx() as cur:
            return int(self._x(cur, "SELECT COALESCE(MAX(version), 0) FROM rf_schema_version").fetchone()[0])

    def _next_seq(self, cur: Any, n: int, counter: str = "seq") -> int:
        """Reserve ``n`` change numbers of ``counter`` (``seq``: alerts; ``case_seq``: cases);
        returns the last. The counter row stays locked until commit, so change numbers become
        visible to readers in order (no gaps to skip past)."""
        row = self._x(cur, "UPDATE rf_meta SET v = v + ? WHERE k = ? RETURNING v", (n, counter)).fetchone()
        return int(row[0])

    def _counter(self, counter: str) -> int:
        with self._tx() as cur:
            return int(self._x(cur, "SELECT v FROM rf_meta WHERE k = ?", (counter,)).fetchone()[0])

    def _trail(self, table: str, key: str, value: str) -> list[tuple[Any, ...]]:
        """The rows of an audit trail (``rf_audit`` by alert, ``rf_case_log`` by case), oldest first."""
        with self._tx() as cur:
            cols = f"{key}, at, actor, action, from_status, to_status, note"
            q = f"SELECT {cols} FROM {table} WHERE {key} = ? ORDER BY id"
            return [tuple(r) for r in self._x(cur, q, (value,)).fetchall()]

    def _trail_add(self, cur: Any, table: str, key: str, row: tuple[str, ...]) -> None:
        """Append ``(id, at, actor, action, from, to, note)`` to an audit trail."""
        q = f"INSERT INTO {table} ({key}, at, actor, action, from_status, to_status, note) VALUES (?, ?, ?, ?, ?, ?, ?)"
        self._x(cur, q, row)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> AlertStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the sink's side ----------------------------------------------------------------------
    def upsert_alerts(self, alerts: Iterable[Alert]) -> list[str]:
        """Insert new alerts and newer revisions in one transaction; returns the ids that changed.

        Every revision in ``alerts`` joins the history (``history()``) once, by (id, revision);
        the current row takes the highest. An alert whose revision is not higher than the
        stored one changes no row (redelivery). A higher revision of a resolved alert re-opens
        it: the episode grew after it was closed. Raises ``Refused`` for a record that
        ``check_storable`` refuses (``write_batch`` ledgers it instead).
        """
        latest: dict[str, Alert] = {}
        revisions: dict[tuple[str, int], tuple[Any, ...]] = {}
        for a in alerts:
            check_storable(a)
            if not all(math.isfinite(v) for v in a.risk_dimensions.values()):  # a body must read back
                a = msgspec.structs.replace(
                    a, risk_dimensions={k: v for k, v in a.risk_dimensions.items() if math.isfinite(v)}
                )
            cur_a = latest.get(a.alert_id)
            if cur_a is None or a.revision > cur_a.revision:
                latest[a.alert_id] = a
            revisions.setdefault(
                (a.alert_id, a.revision),
                (
                    a.alert_id,
                    a.revision,
                    a.entity_id,
                    a.event_time,
                    a.rule_id,
                    a.risk_index,
                    a.risk_level,
                    _dimensions_json(a.risk_dimensions),
                ),
            )
        if not latest:
            return []
        changed: list[str] = []
        with self._tx() as cur:
            cur.executemany(
                self.dialect.sql(
                    "INSERT INTO rf_revisions (alert_id, revision, entity_id, event_time, rule_id, risk_index,"
                    " risk_level, dimensions) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (alert_id, revision) DO NOTHING"
                ),
                [revisions[k] for k in sorted(revisions)],  # in revision order, each (id, revision) once
            )
            have: dict[str, tuple[int, str, str]] = {}
            ids = list(latest)
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                marks = ",".join("?" * len(chunk))
                q = f"SELECT alert_id, revision, status, risk_level FROM rf_alerts WHERE alert_id IN ({marks})"
                for aid, rev, status, level in self._x(cur, q, chunk).fetchall():
                    have[aid] = (int(rev), status, level)
            todo = [a for a in latest.values() if a.alert_id not in have or a.revision > have[a.alert_id][0]]
            if not todo:
                return []
            seq = self._next_seq(cur, len(todo)) - len(todo)
            at = now_iso()
            new_ids = {a.alert_id for a in todo if a.alert_id not in have}
            for a in todo:
                seq += 1
                body = a.to_json().decode()
                fields = (a.entity_id, a.entity_kind, a.region, a.rule_id, a.severity, a.risk_level, a.risk_index)
                if a.alert_id not in have:
                    self._x(
                        cur,
                        f"INSERT INTO rf_alerts ({_COLUMNS}) VALUES ({', '.join('?' * 19)})",
                        (
                            a.alert_id,
                            a.revision,
                            *fields,
                            a.event_time,
                            a.detected_at,
                            body,
                            "open",
                            "",
                            "",
                            "",
                            at,
                            seq,
                            "",
                        ),
                    )
                else:
                    old_status, old_level = have[a.alert_id][1], have[a.alert_id][2]
                    # A snooze holds while the alert stays at its level: an escalation re-opens it.
                    escalated = old_status == "snoozed" and _RANK.get(a.risk_level, -1) > _RANK.get(old_level, -1)
                    status = "open" if old_status == "resolved" or escalated else old_status
                    if escalated:
                        self._x(
                            cur,
                            "UPDATE rf_alerts SET snooze_until = '', snooze_reason = '', snooze_by = ''"
                            " WHERE alert_id = ?",
                            (a.alert_id,),
                        )
                    self._x(
                        cur,
                        "UPDATE rf_alerts SET revision = ?, entity_id = ?, entity_kind = ?, region = ?, rule_id = ?,"
                        " severity = ?, risk_level = ?, risk_index = ?, event_time = ?, detected_at = ?, body = ?,"
                        " status = ?, updated_at = ?, seq = ? WHERE alert_id = ? AND revision < ?",
                        (
                            a.revision,
                            *fields,
                            a.event_time,
                            a.detected_at,
                            body,
                            status,
                            at,
                            seq,
                            *(a.alert_id, a.revision),
                        ),
                    )
                    if status != old_status:
                        self._audit(
                            cur,
                            a.alert_id,
                            at,
                            SYSTEM_ACTOR,
                            "reopen",
                            old_status,
                            status,
                            f"escalated {old_level} → {a.risk_level} while snoozed (revision {a.revision})"
                            if escalated
                            else f"new revision {a.revision} after resolution",
                        )
                changed.append(a.alert_id)
            self._apply_cases(cur, [(a, a.alert_id in new_ids) for a in todo], at)
        return changed

    def write_batch(self, items: Sequence[Incoming]) -> BatchResult:
        """Store a sink batch; records the store cannot keep go to the rejects ledger instead.

        The batch is one transaction. When the database refuses it for a record's content
        (``Dialect.refusal``), each alert is written in a transaction of its own, so that the
        refused ones are found and every other one is stored. A failure of the store itself
        is raised (the sink retries the batch; every write here is idempotent).
        """
        at = now_iso()
        rejects: list[Reject] = []
        good: list[Incoming] = []
        for it in items:
            if it.alert is None:
                rejects.append(Reject.of(it, "undecodable", it.error_class, it.error, at))
                continue
            try:
                check_storable(it.alert)
            except Refused as e:
                rejects.append(Reject.of(it, e.reason, error_class_name(e), str(e), at))
                continue
            good.append(it)
        try:
            changed = self.upsert_alerts([it.alert for it in good if it.alert is not None])
        except Exception as e:
            if self.dialect.refusal(e) is None:
                raise
            changed = []
            for it in good:
                assert it.alert is not None
                try:
                    one = self.upsert_alerts([it.alert])
                except Exception as e1:
                    reason = self.dialect.refusal(e1)
                    if reason is None:
                        raise
                    rejects.append(Reject.of(it, reason, error_class_name(e1), str(e1), at))
                    continue
                changed += [aid for aid in one if aid not in changed]
        if rejects:
            self._ledger(rejects)
        return BatchResult(changed, rejects)

    def _ledger(self, rejects: Sequence[Reject]) -> None:
        cols = ", ".join(Reject.__struct_fields__)
        with self._tx() as cur:
            cur.executemany(
                self.dialect.sql(
                    f"INSERT INTO rf_store_rejects ({cols}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (reject_id) DO NOTHING"
                ),
                [tuple(msgspec.structs.astuple(r)) for r in rejects],
            )

    def rejects(self, limit: int = 100) -> list[Reject]:
        """The store-rejects ledger, newest first."""
        with self._tx() as cur:
            rows = self._x(
                cur,
                f"SELECT {', '.join(Reject.__struct_fields__)} FROM rf_store_rejects"
                f" ORDER BY at DESC, reject_id LIMIT {int(limit)}",
            ).fetchall()
        return [Reject(**dict(zip(Reject.__struct_fields__, r, strict=True))) for r in rows]

    def _audit(self, cur: Any, aid: str, at: str, actor: str, action: str, frm: str, to: str, note: str) -> None:
        self._trail_add(cur, "rf_audit", "alert_id", (aid, at, actor, action, frm, to, note))

    # -- officers' side -----------------------------------------------------------------------
    def transition(
        self,
        alert_id: str,
        action: str,
        *,
        actor: str,
        note: str = "",
        assignee: str = "",
        until: str | _dt.datetime | None = None,
        reason: str = "",
        max_snooze: _dt.timedelta = _dt.timedelta(days=90),
        now: _dt.datetime | None = None,
    ) -> AlertRow:
        """Apply a lifecycle action and record it in the audit trail; returns the new row.

        ``snooze`` needs a ``reason`` and an ``until`` in the future, at most ``max_snooze``
        ahead: nothing is suppressed forever. ``assign`` needs an ``assignee``.
        """
        if action not in TRANSITIONS:
            raise TransitionError(f"unknown action {action!r}; one of {', '.join(TRANSITIONS)}")
        if not actor.strip():
            raise TransitionError("an action needs the officer's name")
        t_now = now or _dt.datetime.now(_dt.UTC)
        sets: dict[str, str] = {}
        if action == "assign":
            if not assignee.strip():
                raise TransitionError("assign needs an assignee")
            sets["assignee"] = assignee.strip()
        if action == "snooze":
            if not reason.strip():
                raise TransitionError("snooze needs a reason")
            if until is None:
                raise TransitionError("snooze needs an expiry (until)")
            try:
                u = _dt.datetime.fromisoformat(until) if isinstance(until, str) else until
            except ValueError as e:
                raise TransitionError(f"bad snooze expiry {until!r}") from e
            if u.tzinfo is None:
                raise TransitionError("snooze expiry needs a UTC offset")
            if u <= t_now:
                raise TransitionError("snooze expiry must be in the future")
            if u - t_now > max_snooze:
                raise TransitionError(f"snooze longer than the maximum of {max_snooze.days} days")
            sets["snooze_until"] = to_utc_iso(u)
            sets["snooze_reason"] = reason.strip()
            sets["snooze_by"] = actor.strip()
        else:
            sets["snooze_until"] = ""
            sets["snooze_reason"] = ""
            sets["snooze_by"] = ""
        allowed, to = TRANSITIONS[action]
        with self._tx() as cur:
            row = self._x(
                cur, "SELECT status FROM rf_alerts WHERE alert_id = ?" + self.dialect.for_update, (alert_id,)
            ).fetchone()
            if row is None:
                raise NotFound(alert_id)
            frm = row[0]
            if frm not in allowed:
                raise IllegalTransition(f"cannot {action} an alert that is {frm}")
            seq = self._next_seq(cur, 1)
            at = to_utc_iso(t_now)
            assigns = ", ".join(f"{k} = ?" for k in sets)
            self._x(
                cur,
                f"UPDATE rf_alerts SET status = ?, {assigns}, updated_at = ?, seq = ? WHERE alert_id = ?",
                (to, *sets.values(), at, seq, alert_id),
            )
            text = note.strip()
            if action == "snooze":
                text = f"until {sets['snooze_until']}: {sets['snooze_reason']}" + (f" — {text}" if text else "")
            elif action == "assign":
                text = f"to {sets['assignee']}" + (f" — {text}" if text else "")
            self._audit(cur, alert_id, at, actor.strip(), action, frm, to, text)
        return self.get(alert_id)

    def expire_snoozes(self, now: _dt.datetime | None = None) -> list[str]:
        """Re-open every alert whose snooze has run out; returns their ids."""
        at = to_utc_iso(now or _dt.datetime.now(_dt.UTC))
        with self._tx() as cur:
            ids = [
                r[0]
                for r in self._x(
                    cur, "SELECT alert_id FROM rf_alerts WHERE status = 'snoozed' AND snooze_until <= ?", (at,)
                ).fetchall()
            ]
            if not ids:
                return []
            seq = self._next_seq(cur, len(ids)) - len(ids)
            for aid in ids:
                seq += 1
                self._x(
                    cur,
                    "UPDATE rf_alerts SET status = 'open', snooze_until = '', snooze_reason = '', snooze_by = '',"
                    " updated_at = ?,"
                    " seq = ? WHERE alert_id = ?",
                    (at, seq, aid),
                )
                self._audit(cur, aid, at, SYSTEM_ACTOR, "snooze_expired", "snoozed", "open", "snooze expired")
        return ids

    # -- reading ------------------------------------------------------------------------------
    def _rows(self, where: str, params: Sequence[Any], order: str, limit: int | None) -> list[AlertRow]:
        q = f"SELECT {_COLUMNS} FROM rf_alerts {where} ORDER BY {order}"
        if limit is not None:
            q += f" LIMIT {int(limit)}"
        with self._tx() as cur:
            rows = self._x(cur, q, params).fetchall()
        return [
            AlertRow(
                alert=msgspec.json.decode(r[11], type=Alert),
                status=r[12],
                assignee=r[13],
                snooze_until=r[14],
                snooze_reason=r[15],
                updated_at=r[16],
                seq=int(r[17]),
                snooze_by=r[18],
            )
            for r in rows
        ]

    def get(self, alert_id: str) -> AlertRow:
        rows = self._rows("WHERE alert_id = ?", (alert_id,), "alert_id", None)
        if not rows:
            raise NotFound(alert_id)
        return rows[0]

    def list_alerts(
        self,
        *,
        region: str | None = None,
        level: str | None = None,
        entity_kind: str | None = None,
        rule_id: str | None = None,
        status: str | None = None,
        entity_id: str | None = None,
        severity: str | None = None,
        limit: int = 200,
        order: str = "event_time",
    ) -> list[AlertRow]:
        """Alerts matching every given filter, newest event first (or highest ``risk_index``)."""
        where, params = _filters(
            dict(
                region=region,
                level=level,
                entity_kind=entity_kind,
                rule_id=rule_id,
                status=status,
                entity_id=entity_id,
                severity=severity,
            )
        )
        orders = {
            "event_time": "event_time DESC, alert_id",
            "risk_index": "risk_index DESC, event_time DESC, alert_id",
            "seq": "seq DESC",
        }
        if order not in orders:
            raise ValueError(f"order: one of {', '.join(orders)}")
        return self._rows(where, params, orders[order], limit)

    def count_alerts(self, **filters: str | None) -> int:
        """How many alerts :meth:`list_alerts` would return with these filters (its keyword
        arguments ``region`` .. ``severity``) and no limit."""
        where, params = _filters(filters)
        with self._tx() as cur:
            return int(self._x(cur, f"SELECT COUNT(*) FROM rf_alerts {where}", params).fetchone()[0])

    def ids_with_prefix(self, prefix: str, limit: int = 2) -> list[str]:
        """Alert ids starting with ``prefix`` (at most ``limit``, in id order): an officer may type
        the first characters of an id, as with git commits."""
        pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        with self._tx() as cur:
            rows = self._x(
                cur,
                "SELECT alert_id FROM rf_alerts WHERE alert_id LIKE ? ESCAPE '\\'"
                f" ORDER BY alert_id LIMIT {int(limit)}",
                (pattern,),
            ).fetchall()
        return [str(r[0]) for r in rows]

    def changes_since(self, seq: int, limit: int = 500) -> list[AlertRow]:
        """Alerts changed after change number ``seq``, oldest change first."""
        return self._rows("WHERE seq > ?", (seq,), "seq", limit)

    def last_seq(self) -> int:
        return self._counter("seq")

    def audit(self, alert_id: str) -> list[AuditEntry]:
        rows = self._trail("rf_audit", "alert_id", alert_id)
        return [
            AuditEntry(alert_id=r[0], at=r[1], actor=r[2], action=r[3], from_status=r[4], to_status=r[5], note=r[6])
            for r in rows
        ]

    def history(self, entity_id: str, limit: int = 1000) -> list[Revision]:
        """Every received alert revision of an entity in event-time order: its risk-index history
        (the latest ``limit`` points, when there are more)."""
        cols = "alert_id, revision, event_time, rule_id, risk_index, risk_level, dimensions"
        with self._tx() as cur:
            rows = self._x(
                cur,
                f"SELECT {cols} FROM (SELECT {cols} FROM rf_revisions WHERE entity_id = ?"
                f" ORDER BY event_time DESC, alert_id DESC, revision DESC LIMIT {int(limit)}) latest"
                " ORDER BY event_time, alert_id, revision",
                (entity_id,),
            ).fetchall()
        return [
            Revision(
                alert_id=r[0],
                revision=int(r[1]),
                event_time=r[2],
                rule_id=r[3],
                risk_index=float(r[4]),
                risk_level=r[5],
                dimensions=_dimensions(r[6]),
            )
            for r in rows
        ]

    def rules(self) -> list[dict[str, str]]:
        """The rules seen in stored alerts, with their bilingual titles (for filter menus)."""
        with self._tx() as cur:
            rows = self._x(cur, "SELECT rule_id, MIN(body) FROM rf_alerts GROUP BY rule_id ORDER BY rule_id").fetchall()
        out = []
        for rule_id, body in rows:
            b = json.loads(body)
            out.append({"rule_id": rule_id, "title_zh": b.get("title_zh", ""), "title_en": b.get("title_en", "")})
        return out

    def count(self) -> int:
        with self._tx() as cur:
            return int(self._x(cur, "SELECT COUNT(*) FROM rf_alerts").fetchone()[0])
