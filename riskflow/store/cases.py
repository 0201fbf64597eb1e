"""Officers' cases: one open case per institution at yellow or above, opened by the alert sink.

The unit of an officer's work is the institution, not the alert. When an alert lands
(``AlertStore.upsert_alerts``, in the same transaction) that puts an institution at
yellow, orange or red and the institution has no open case, a case opens carrying the
level's disposal from the risk configuration (``detectors/risk/risk.yaml``: route,
checklist, deadline, regulation). Later alerts of the institution join the open case; one
that raises its level re-prioritises it (the new level's route and checklist, an earlier
due date if the new deadline is shorter) and is written in the case's log. After a case
is closed, a new one opens only when the institution rises again: a new ``risk.level``
alert raising it to yellow or above, or any alert at a level above the closed case's.

A case's id is a hash of the institution and the alert (and revision) that opened it, so a
replay or a re-delivered batch re-creates nothing: the alert is then no change, and no
case code runs for it. Officers act on a case::

    open -> assigned -> closed (outcome from OUTCOMES, reason)
      note, check (a checklist step) on an open or assigned case; reopen (closed -> open)

and every action, the system's included (open, raise), is one row of the case log (who,
when, from which status to which, the note): the case's diary and audit trail.

>>> from riskflow.core.alerts import Alert
>>> from riskflow.store import open_store
>>> s = open_store(":memory:")
>>> a = Alert(alert_id="a1", entity_id="PF-1", entity_kind="private_fund", region="330100",
...           rule_id="pf.guaranteed_return", severity="high", title_zh="承诺保本保收益",
...           title_en="Guaranteed-return promise", event_time="2025-01-01T00:00:00+08:00",
...           risk_level="orange", risk_index=64.0)
>>> _ = s.upsert_alerts([a])
>>> c = s.list_cases()[0]
>>> c.status, c.level, c.route_zh
('open', 'orange', '现场检查')
>>> s.case_action(c.case_id, "close", actor="li.na", outcome="confirmed", reason="checked").status
'closed'
>>> [e.action for e in s.case_log(c.case_id)]
['open', 'close']
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
from collections.abc import Sequence
from typing import Any, Final

import msgspec

from detectors.risk.config import CASE_LEVELS, RiskConfig
from riskflow.core.alerts import Alert

CASE_STATUSES: Final = ("open", "assigned", "closed")
CASE_STATUS_ZH: Final = {"open": "待处置", "assigned": "处置中", "closed": "已结案"}
CASE_ACTIONS: Final = ("assign", "note", "check", "close", "reopen")
#: Close outcomes: id -> (English, Chinese).
OUTCOMES: Final = {
    "confirmed": ("confirmed risk", "确认风险"),
    "false_alarm": ("false alarm", "误报"),
    "rectified": ("resolved after rectification", "整改完成"),
    "referred": ("referred", "已移交"),
}
# action -> (statuses it may start from, status it leads to; "" keeps the status)
CASE_TRANSITIONS: Final[dict[str, tuple[tuple[str, ...], str]]] = {
    "assign": (("open", "assigned"), "assigned"),
    "note": (("open", "assigned"), ""),
    "check": (("open", "assigned"), ""),
    "close": (("open", "assigned"), "closed"),
    "reopen": (("closed",), "open"),
}
#: Largest note, reason or assignee the store keeps, in UTF-8 bytes (the feed's default limit).
TEXT_LIMIT_BYTES: Final = 4096
LEVEL_RULE: Final = "risk.level"
_RANK: Final = {"green": 0, "yellow": 1, "orange": 2, "red": 3}
CASE_COLUMNS: Final = (
    "case_id, entity_id, entity_kind, region, status, level, risk_index, people, amount, route_en, route_zh,"
    " regulation, checklist, assignee, opened_at, due_at, first_action_at, closed_at, outcome, close_reason,"
    " closed_by, first_alert_id, first_event_time, last_event_time, updated_at, seq"
)


class CaseError(ValueError):
    """A case action with a bad argument (HTTP 400)."""


class IllegalCaseTransition(CaseError):
    """The case's status does not allow the action (HTTP 409)."""


class CaseNotFound(KeyError):
    """No case with that id."""


class Case(msgspec.Struct, kw_only=True):
    """One institution's case as stored."""

    case_id: str
    entity_id: str
    entity_kind: str
    region: str
    status: str
    level: str
    risk_index: float
    people: int
    amount: float
    route_en: str
    route_zh: str
    regulation: str
    checklist: list[dict[str, Any]]  # {en, zh, done, by, at}
    assignee: str
    opened_at: str
    due_at: str
    first_action_at: str
    closed_at: str
    outcome: str
    close_reason: str
    closed_by: str
    first_alert_id: str
    first_event_time: str
    last_event_time: str
    updated_at: str
    seq: int

    def overdue(self, now: str) -> bool:
        """Still open after its due date (``now`` in the store's UTC format)."""
        return self.status != "closed" and self.due_at < now


class CaseEntry(msgspec.Struct, kw_only=True):
    """One line of a case's log: its diary and audit trail."""

    case_id: str
    at: str
    actor: str
    action: str
    from_status: str
    to_status: str
    note: str = ""


def case_id_for(entity_id: str, alert: Alert) -> str:
    """The id of the case ``alert`` opens: same institution, same alert and revision, same id."""
    raw = f"case\x1f{entity_id}\x1f{alert.alert_id}\x1f{alert.revision}".encode()
    return hashlib.blake2b(raw, digest_size=12).hexdigest()


def _case(r: Sequence[Any]) -> Case:
    names = [c.strip() for c in CASE_COLUMNS.split(",")]
    d = dict(zip(names, r, strict=True))
    d["checklist"] = json.loads(d["checklist"])
    d["risk_index"], d["amount"] = float(d["risk_index"]), float(d["amount"])
    d["people"], d["seq"] = int(d["people"]), int(d["seq"])
    return Case(**d)


def _plus_days(at: str, days: float) -> str:
    t = _dt.datetime.fromisoformat(at) + _dt.timedelta(days=days)
    return t.astimezone(_dt.UTC).isoformat(timespec="milliseconds")


def _people(a: Alert) -> int:
    """People affected, within a 64-bit column whatever the alert says."""
    return max(0, min(int(a.affected_people), 2**53))


def _amount(a: Alert) -> float:
    """CNY affected as a finite number (a JSON answer cannot carry an infinity)."""
    x = float(a.affected_amount)
    return min(max(x, 0.0), 1e18) if math.isfinite(x) else 0.0


def _is_rise(a: Alert) -> bool:
    """A ``risk.level`` alert that raises its institution to yellow or above."""
    if a.rule_id != LEVEL_RULE:
        return False
    ev = a.evidence or {}
    frm, to = str(ev.get("from", "")), str(ev.get("to", a.risk_level))
    return to in CASE_LEVELS and _RANK.get(to, 0) > _RANK.get(frm, 0)


def text_ok(name: str, text: str) -> str:
    """``text`` stripped, or a ``CaseError`` when it is too long or not storable."""
    if "\x00" in text:
        raise CaseError(f"{name} contains a NUL character")
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > TEXT_LIMIT_BYTES:
        raise CaseError(f"{name} is {size} bytes (UTF-8); at most {TEXT_LIMIT_BYTES}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise CaseError(f"{name} is not valid Unicode text") from e
    return text.strip()


class CaseStoreMixin:
    """The case side of ``AlertStore`` (same connection, transactions and change sequence)."""

    risk_config: RiskConfig
    _tx: Any
    _x: Any
    _next_seq: Any
    _counter: Any
    _trail: Any
    _trail_add: Any

    def _next_case_seq(self, cur: Any) -> int:
        """The next case change number: a counter of its own, so that alert change numbers
        (``changes_since``) stay as they were."""
        return int(self._next_seq(cur, 1, "case_seq"))

    def last_case_seq(self) -> int:
        return int(self._counter("case_seq"))

    # -- opened and raised by the sink, inside upsert_alerts' transaction --------------------
    def _apply_cases(self, cur: Any, alerts: Sequence[tuple[Alert, bool]], at: str) -> None:
        """Open, join or raise cases for stored alerts (``(alert, is_new_id)`` in arrival order)."""
        open_by_entity: dict[str, Case | None] = {}
        for a, is_new in alerts:
            eid = a.entity_id
            if eid not in open_by_entity:
                open_by_entity[eid] = self._open_case_of(cur, eid)
            case = open_by_entity[eid]
            lv = a.risk_level if a.risk_level in _RANK else "green"
            if case is None:
                if lv not in CASE_LEVELS:
                    continue
                closed_level = self._last_closed_level(cur, eid)
                if closed_level is not None and not (
                    _RANK[lv] > _RANK.get(closed_level, 0) or (is_new and _is_rise(a))
                ):
                    continue
                open_by_entity[eid] = self._open_case(cur, a, lv, at)
                continue
            self._x(
                cur,
                "INSERT INTO rf_case_alerts (case_id, alert_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (case.case_id, a.alert_id),
            )
            sets: dict[str, Any] = {
                "risk_index": a.risk_index,
                "people": max(case.people, _people(a)),
                "amount": max(case.amount, _amount(a)),
                "last_event_time": max(case.last_event_time, a.event_time),
            }
            if lv in CASE_LEVELS and _RANK[lv] > _RANK[case.level]:
                d = self.risk_config.disposal_for(lv)
                due = min(case.due_at, _plus_days(at, d.deadline_days))
                checklist = _checklist(d.checklist)
                sets.update(
                    level=lv,
                    route_en=d.route_en,
                    route_zh=d.route_zh,
                    regulation=d.regulation,
                    checklist=json.dumps(checklist, ensure_ascii=False),
                    due_at=due,
                )
                note = (
                    f"level raised {case.level} → {lv} (index {a.risk_index:.1f}, {a.rule_id}):"
                    f" route {d.route_en} {d.route_zh}, due {due}"
                )
                self._log(cur, case.case_id, at, "system", "raise", case.status, case.status, note)
                case = msgspec.structs.replace(case, level=lv, due_at=due, checklist=checklist)
            case = msgspec.structs.replace(
                case, people=sets["people"], amount=sets["amount"], last_event_time=sets["last_event_time"]
            )
            open_by_entity[eid] = case
            self._update_case(cur, case.case_id, sets, at)

    def _open_case(self, cur: Any, a: Alert, lv: str, at: str) -> Case:
        d = self.risk_config.disposal_for(lv)
        cid = case_id_for(a.entity_id, a)
        seq = self._next_case_seq(cur)
        checklist = _checklist(d.checklist)
        c = Case(
            case_id=cid,
            entity_id=a.entity_id,
            entity_kind=a.entity_kind,
            region=a.region,
            status="open",
            level=lv,
            risk_index=a.risk_index,
            people=_people(a),
            amount=_amount(a),
            route_en=d.route_en,
            route_zh=d.route_zh,
            regulation=d.regulation,
            checklist=checklist,
            assignee="",
            opened_at=at,
            due_at=_plus_days(at, d.deadline_days),
            first_action_at="",
            closed_at="",
            outcome="",
            close_reason="",
            closed_by="",
            first_alert_id=a.alert_id,
            first_event_time=a.event_time,
            last_event_time=a.event_time,
            updated_at=at,
            seq=seq,
        )
        row = [getattr(c, n.strip()) for n in CASE_COLUMNS.split(",")]
        row[12] = json.dumps(checklist, ensure_ascii=False)
        self._x(cur, f"INSERT INTO rf_cases ({CASE_COLUMNS}) VALUES ({', '.join('?' * len(row))})", row)
        self._x(cur, "INSERT INTO rf_case_alerts (case_id, alert_id) VALUES (?, ?)", (cid, a.alert_id))
        note = f"{lv} ({a.rule_id}, index {a.risk_index:.1f}): route {d.route_en} {d.route_zh}, due {c.due_at}"
        self._log(cur, cid, at, "system", "open", "", "open", note)
        return c

    def _open_case_of(self, cur: Any, entity_id: str) -> Case | None:
        row = self._x(
            cur,
            f"SELECT {CASE_COLUMNS} FROM rf_cases WHERE entity_id = ? AND status <> 'closed'",
            (entity_id,),
        ).fetchone()
        return _case(row) if row else None

    def _last_closed_level(self, cur: Any, entity_id: str) -> str | None:
        row = self._x(
            cur,
            "SELECT level FROM rf_cases WHERE entity_id = ? AND status = 'closed' ORDER BY closed_at DESC LIMIT 1",
            (entity_id,),
        ).fetchone()
        return str(row[0]) if row else None

    def _update_case(self, cur: Any, case_id: str, sets: dict[str, Any], at: str) -> Case:
        seq = self._next_case_seq(cur)
        assigns = ", ".join(f"{k} = ?" for k in sets)
        self._x(
            cur,
            f"UPDATE rf_cases SET {assigns}, updated_at = ?, seq = ? WHERE case_id = ?",
            (*sets.values(), at, seq, case_id),
        )
        return _case(self._x(cur, f"SELECT {CASE_COLUMNS} FROM rf_cases WHERE case_id = ?", (case_id,)).fetchone())

    def _log(self, cur: Any, cid: str, at: str, actor: str, action: str, frm: str, to: str, note: str) -> None:
        self._trail_add(cur, "rf_case_log", "case_id", (cid, at, actor, action, frm, to, note))

    # -- officers' side -----------------------------------------------------------------------
    def case_action(
        self,
        case_id: str,
        action: str,
        *,
        actor: str,
        note: str = "",
        assignee: str = "",
        outcome: str = "",
        reason: str = "",
        step: int | None = None,
        now: _dt.datetime | None = None,
    ) -> Case:
        """Apply an officer's action to a case and write it in the case log; returns the case.

        Refuses (``CaseError``, nothing changed) a missing officer name, assignee, note,
        reason or step, an outcome outside ``OUTCOMES``, text over ``TEXT_LIMIT_BYTES``;
        ``IllegalCaseTransition`` when the status does not allow the action, or a reopen
        while the institution has another open case; ``CaseNotFound`` for an unknown id.
        """
        if action not in CASE_TRANSITIONS:
            raise CaseError(f"unknown action {action!r}; one of {', '.join(CASE_TRANSITIONS)}")
        actor = text_ok("officer", actor)
        if not actor:
            raise CaseError("an action needs the officer's name")
        note, assignee, reason = text_ok("note", note), text_ok("assignee", assignee), text_ok("reason", reason)
        if action == "assign" and not assignee:
            raise CaseError("assign needs an assignee")
        if action == "note" and not note:
            raise CaseError("a note needs text")
        if action == "close":
            if outcome not in OUTCOMES:
                raise CaseError(f"bad outcome {outcome[:40]!r}; one of {', '.join(OUTCOMES)}")
            if not reason:
                raise CaseError("close needs a reason")
        if action == "check" and step is None:
            raise CaseError("check needs a step number")
        at = (now or _dt.datetime.now(_dt.UTC)).astimezone(_dt.UTC).isoformat(timespec="milliseconds")
        allowed, to = CASE_TRANSITIONS[action]
        with self._tx() as cur:
            row = self._x(
                cur,
                f"SELECT {CASE_COLUMNS} FROM rf_cases WHERE case_id = ?" + self.dialect.for_update,  # type: ignore[attr-defined]
                (case_id,),
            ).fetchone()
            if row is None:
                raise CaseNotFound(case_id)
            c = _case(row)
            if c.status not in allowed:
                raise IllegalCaseTransition(f"cannot {action} a case that is {c.status}")
            to = to or c.status
            sets: dict[str, Any] = {"status": to}
            text = note
            if action == "assign":
                sets["assignee"] = assignee
                text = f"to {assignee}" + (f" — {note}" if note else "")
            elif action == "check":
                assert step is not None
                if not 1 <= step <= len(c.checklist):
                    raise CaseError(f"no step {step}; the checklist has {len(c.checklist)}")
                item = c.checklist[step - 1]
                done = not item.get("done", False)
                item.update(done=done, by=actor if done else "", at=at if done else "")
                sets["checklist"] = json.dumps(c.checklist, ensure_ascii=False)
                text = f"step {step} {'done' if done else 'undone'}: {item['en']} {item['zh']}" + (
                    f" — {note}" if note else ""
                )
            elif action == "close":
                en, zh = OUTCOMES[outcome]
                sets.update(outcome=outcome, close_reason=reason, closed_at=at, closed_by=actor)
                text = f"{outcome} ({en} {zh}): {reason}" + (f" — {note}" if note else "")
            elif action == "reopen":
                other = self._open_case_of(cur, c.entity_id)
                if other is not None:
                    raise IllegalCaseTransition(
                        f"{c.entity_id} already has an open case {other.case_id}; one open case per institution"
                    )
                sets.update(
                    status="assigned" if c.assignee else "open", outcome="", close_reason="", closed_at="", closed_by=""
                )
                to = sets["status"]
                text = note or "reopened"
            if not c.first_action_at:
                sets["first_action_at"] = at
            self._update_case(cur, case_id, sets, at)
            self._log(cur, case_id, at, actor, action, c.status, to, text)
        return self.get_case(case_id)

    # -- reading ------------------------------------------------------------------------------
    def get_case(self, case_id: str) -> Case:
        with self._tx() as cur:
            row = self._x(cur, f"SELECT {CASE_COLUMNS} FROM rf_cases WHERE case_id = ?", (case_id,)).fetchone()
        if row is None:
            raise CaseNotFound(case_id)
        return _case(row)

    def list_cases(
        self,
        *,
        status: str | None = None,
        level: str | None = None,
        region: str | None = None,
        entity_kind: str | None = None,
        assignee: str | None = None,
        entity_id: str | None = None,
        open_only: bool = False,
        limit: int = 500,
    ) -> list[Case]:
        """Cases matching every given filter, most urgent first (level, then index)."""
        conds: list[str] = []
        params: list[Any] = []
        for col, val in (
            ("status", status),
            ("level", level),
            ("region", region),
            ("entity_kind", entity_kind),
            ("assignee", assignee),
            ("entity_id", entity_id),
        ):
            if val:
                conds.append(f"{col} = ?")
                params.append(val)
        if open_only:
            conds.append("status <> 'closed'")
        where = ("WHERE " + " AND ".join(conds)) if conds else ""
        rank = "CASE level WHEN 'red' THEN 3 WHEN 'orange' THEN 2 WHEN 'yellow' THEN 1 ELSE 0 END"
        q = (
            f"SELECT {CASE_COLUMNS} FROM rf_cases {where}"
            f" ORDER BY (CASE status WHEN 'closed' THEN 1 ELSE 0 END), {rank} DESC, risk_index DESC, case_id"
            f" LIMIT {int(limit)}"
        )
        with self._tx() as cur:
            return [_case(r) for r in self._x(cur, q, params).fetchall()]

    def cases_since(self, seq: int, limit: int = 500) -> list[Case]:
        """Cases changed after change number ``seq``, oldest change first."""
        with self._tx() as cur:
            rows = self._x(
                cur, f"SELECT {CASE_COLUMNS} FROM rf_cases WHERE seq > ? ORDER BY seq LIMIT {int(limit)}", (seq,)
            ).fetchall()
        return [_case(r) for r in rows]

    def case_log(self, case_id: str) -> list[CaseEntry]:
        """The case's diary and audit trail, oldest first."""
        rows = self._trail("rf_case_log", "case_id", case_id)
        return [
            CaseEntry(case_id=r[0], at=r[1], actor=r[2], action=r[3], from_status=r[4], to_status=r[5], note=r[6])
            for r in rows
        ]

    def case_metric_rows(self) -> list[tuple[str, str, str, str, str, str, str]]:
        """(case_id, level, region, status, opened_at, due_at, first_action_at) of every case."""
        with self._tx() as cur:
            rows = self._x(
                cur, "SELECT case_id, level, region, status, opened_at, due_at, first_action_at FROM rf_cases"
            ).fetchall()
        return [tuple(str(x) for x in r) for r in rows]  # type: ignore[misc]

    def alert_first_seen(self) -> list[tuple[str, str, str, str, str]]:
        """(alert_id, entity_id, entity_kind, rule_id, earliest event time of its revisions) of every
        alert: when it first fired, as the backtest counts it."""
        with self._tx() as cur:
            alerts = self._x(
                cur, "SELECT alert_id, entity_id, entity_kind, rule_id, event_time FROM rf_alerts"
            ).fetchall()
            revs = self._x(cur, "SELECT alert_id, event_time FROM rf_revisions").fetchall()
        first: dict[str, tuple[float, str]] = {}
        for aid, t in revs:
            ts = _dt.datetime.fromisoformat(t).timestamp()
            if aid not in first or ts < first[aid][0]:
                first[aid] = (ts, t)
        return [(a, e, k, r, first[a][1] if a in first else t) for a, e, k, r, t in alerts]

    def case_alert_pairs(self) -> list[tuple[str, str]]:
        """(case_id, alert_id) of every alert that joined a case."""
        with self._tx() as cur:
            return [
                (str(c), str(a)) for c, a in self._x(cur, "SELECT case_id, alert_id FROM rf_case_alerts").fetchall()
            ]

    def latest_by_entity(self) -> list[tuple[Alert, int]]:
        """Each institution's latest alert (by event time, then change) and its number of alerts:
        the rows of the risk board."""
        q = (
            "SELECT body, n FROM (SELECT body, COUNT(*) OVER (PARTITION BY entity_id) AS n,"
            " ROW_NUMBER() OVER (PARTITION BY entity_id ORDER BY event_time DESC, seq DESC) AS rn"
            " FROM rf_alerts) latest WHERE rn = 1"
        )
        with self._tx() as cur:
            rows = self._x(cur, q).fetchall()
        return [(msgspec.json.decode(body, type=Alert), int(n)) for body, n in rows]

    def case_alert_ids(self, case_id: str) -> list[str]:
        """The alerts that joined the case (the one that opened it first)."""
        with self._tx() as cur:
            rows = self._x(
                cur,
                "SELECT ca.alert_id FROM rf_case_alerts ca JOIN rf_alerts a ON a.alert_id = ca.alert_id"
                " WHERE ca.case_id = ? ORDER BY a.event_time, ca.alert_id",
                (case_id,),
            ).fetchall()
        return [str(r[0]) for r in rows]


def _checklist(steps: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    return [{"en": en, "zh": zh, "done": False, "by": "", "at": ""} for en, zh in steps]
