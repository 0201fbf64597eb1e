"""``riskflow cases``: officers' cases 案件 in the store — list, show, assign, note, check, close, reopen.

A case is one institution's unit of work (``riskflow/store/cases.py``); the alert sink
opens it. A refused action (unknown case, an illegal transition, a bad outcome, an
over-long note) prints one line and exits non-zero, changing nothing. Every printed line
goes through ``riskflow.core.textsafe.printable``: ids and notes come from outside.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import getpass
import json
import sys
from typing import Any

from riskflow.core.settings import Settings
from riskflow.core.textsafe import printable

LEVELS = ("red", "orange", "yellow")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cases", help="officers' cases 案件: one per institution at yellow or above")
    csub = p.add_subparsers(dest="cases_command", required=True, metavar="ACTION")

    ls = csub.add_parser("list", help="cases, most urgent first (open before closed, then level and index)")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    ls.add_argument("--status", default=None, help="open, assigned or closed")
    ls.add_argument("--open", action="store_true", help="only cases not closed")
    ls.add_argument("--level", default=None, help="red, orange or yellow")
    ls.add_argument("--region", default=None, help="region code, e.g. 330100")
    ls.add_argument("--kind", default=None, help="entity kind")
    ls.add_argument("--assignee", default=None, help="only cases assigned to this officer")
    ls.add_argument("--entity", default=None, help="institution id")
    ls.add_argument("--limit", type=int, default=100, help="show at most this many (default 100)")
    ls.set_defaults(func=run_list)

    sh = csub.add_parser("show", help="one case with its checklist, alerts and log (diary and audit trail)")
    sh.add_argument("case_id", help="case id")
    sh.add_argument("--json", action="store_true", help="the case as one JSON object")
    sh.set_defaults(func=run_show)

    def action(name: str, helptext: str) -> argparse.ArgumentParser:
        a = csub.add_parser(name, help=helptext)
        a.add_argument("case_id", help="case id")
        a.add_argument("--as", dest="actor", default=None, help="officer name (default: the login name)")
        a.set_defaults(func=run_action, action=name)
        return a

    a = action("assign", "assign to an officer 分派")
    a.add_argument("assignee", help="officer the case is assigned to")
    a.add_argument("--note", default="", help="recorded in the case log")
    a = action("note", "write a note in the case diary 办案记录")
    a.add_argument("note", help="the diary entry")
    a = action("check", "tick (or untick) a checklist step 处置步骤, numbered from 1")
    a.add_argument("step", type=int, help="checklist step number, from 1")
    a.add_argument("--note", default="", help="recorded in the case log")
    a = action("close", "close with an outcome and a reason 结案")
    a.add_argument(
        "--outcome", required=True, help="confirmed 确认风险, false_alarm 误报, rectified 整改完成, referred 已移交"
    )
    a.add_argument("--reason", required=True, help="why, recorded in the case log")
    a.add_argument("--note", default="", help="recorded in the case log")
    a = action("reopen", "reopen a closed case 重新立案")
    a.add_argument("--note", default="", help="recorded in the case log")

    ex = csub.add_parser("export", help="closed cases as labels for `riskflow backtest --labels` 结案标注")
    ex.add_argument("--labels", required=True, metavar="FILE", help="write the labels here (JSONL)")
    ex.set_defaults(func=run_export)


def _open(settings: Settings) -> Any:
    from riskflow.store import open_store

    return open_store(settings.store_target())


def _line(c: Any, now: str) -> str:
    from riskflow.core.schema import REGIONS

    en, zh = REGIONS.get(c.region, (c.region, ""))
    due = ("OVERDUE 逾期 " if c.overdue(now) else "due ") + c.due_at[:16].replace("T", " ")
    state = f"{c.status}" + (f" → {c.assignee}" if c.assignee else "") + (f" ({c.outcome})" if c.outcome else "")
    return (
        f"{c.case_id}  {c.level:<6} {c.risk_index:5.1f}  {state:<24}  {due}  {en} {zh}  {c.entity_id}"
        f"  {c.route_en} {c.route_zh}"
    )


def _now() -> str:
    from riskflow.store.base import now_iso

    return now_iso()


def run_list(args: argparse.Namespace, settings: Settings) -> int:
    import msgspec

    with _open(settings) as store:
        cases = store.list_cases(
            status=args.status,
            level=args.level,
            region=args.region,
            entity_kind=args.kind,
            assignee=args.assignee,
            entity_id=args.entity,
            open_only=args.open,
            limit=max(1, args.limit),
        )
    now = _now()
    for c in cases:
        if args.json:
            d = msgspec.to_builtins(c) | {"overdue": c.overdue(now)}
            print(printable(json.dumps(d, ensure_ascii=False), json=True))
        else:
            print(printable(_line(c, now)))
    return 0


def run_show(args: argparse.Namespace, settings: Settings) -> int:
    import msgspec

    from riskflow.store import CaseNotFound

    with _open(settings) as store:
        try:
            c = store.get_case(args.case_id)
        except CaseNotFound:
            print(printable(f"riskflow cases: no case {args.case_id}"), file=sys.stderr)
            return 1
        log = store.case_log(c.case_id)
        alerts = [store.get(aid) for aid in store.case_alert_ids(c.case_id)]
    now = _now()
    if args.json:
        d = msgspec.to_builtins(c) | {
            "overdue": c.overdue(now),
            "log": msgspec.to_builtins(log),
            "alerts": [r.alert.alert_id for r in alerts],
        }
        print(printable(json.dumps(d, ensure_ascii=False, indent=2), json=True))
        return 0
    out = [
        _line(c, now),
        f"people 影响人数 {c.people}  amount 影响金额 {c.amount:,.0f} CNY  opened {c.opened_at}",
        f"regulation 依据: {c.regulation}",
        "checklist 处置步骤:",
        *(
            f"  {i}. [{'x' if s['done'] else ' '}] {s['en']} {s['zh']}" + (f" ({s['by']})" if s["done"] else "")
            for i, s in enumerate(c.checklist, 1)
        ),
        f"alerts 预警 ({len(alerts)}):",
        *(
            f"  {r.alert.event_time[:16].replace('T', ' ')}  {r.alert.rule_id}  {r.alert.title_zh} {r.alert.title_en}"
            for r in alerts
        ),
        "log 办案记录:",
        *(f"  {e.at[:19].replace('T', ' ')}  {e.actor}  {e.action}  {e.note}" for e in log),
    ]
    if c.outcome:
        out.insert(2, f"closed 结案 {c.closed_at} by {c.closed_by}: {c.outcome} — {c.close_reason}")
    for line in out:
        print(printable(line))
    return 0


def run_action(args: argparse.Namespace, settings: Settings) -> int:
    from riskflow.store import CaseError, CaseNotFound

    with _open(settings) as store:
        try:
            c = store.case_action(
                args.case_id,
                args.action,
                actor=args.actor if args.actor is not None else getpass.getuser(),
                note=getattr(args, "note", "") or "",
                assignee=getattr(args, "assignee", "") or "",
                outcome=getattr(args, "outcome", "") or "",
                reason=getattr(args, "reason", "") or "",
                step=getattr(args, "step", None),
                now=_dt.datetime.now(_dt.UTC),
            )
        except CaseNotFound:
            print(printable(f"riskflow cases: no case {args.case_id}"), file=sys.stderr)
            return 1
        except CaseError as e:
            print(printable(f"riskflow cases {args.action}: refused: {e}"), file=sys.stderr)
            return 2
    print(printable(_line(c, _now())))
    return 0


def run_export(args: argparse.Namespace, settings: Settings) -> int:
    """Officers' closed cases as labels in the simulator's format (riskflow/store/quality.py)."""
    from riskflow.core.errors import CommandError
    from riskflow.store.quality import case_labels

    with _open(settings) as store:
        labels = case_labels(store.list_cases(status="closed", limit=10**9))
    try:
        with open(args.labels, "w", encoding="utf-8") as f:
            for lab in labels:
                f.write(json.dumps(lab, ensure_ascii=False) + "\n")
    except OSError as e:
        raise CommandError(f"cannot write {args.labels}: {e.strerror or e}") from e
    normal = sum(1 for lab in labels if lab.get("normal"))
    print(printable(f"wrote {len(labels)} labels to {args.labels}: {len(labels) - normal} risk, {normal} normal"))
    return 0
