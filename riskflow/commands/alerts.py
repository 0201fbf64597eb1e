"""``riskflow alerts``: follow the alerts topic, run the store sink, list and act on stored alerts.

Every line printed goes through ``riskflow.core.textsafe.printable``: ids and titles come
from the topic, and a control character in them must not reach the terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import getpass
import json
import re
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from riskflow.core.errors import CommandError
from riskflow.core.settings import Settings
from riskflow.core.textsafe import printable

if TYPE_CHECKING:
    from detectors.risk.config import RiskConfig
    from riskflow.store import AlertStore

LEVELS = ("red", "orange", "yellow", "green")
SEVERITIES = ("low", "medium", "high", "critical")
REGION_HELP = "only this city: code, English or Chinese name (330100, Hangzhou, 杭州)"


def region_code(value: str) -> str:
    """A city given as its code, English name (any case) or Chinese name, as its code; an
    unknown one is refused with the list of valid ones.

    >>> region_code("Hangzhou"), region_code("杭州"), region_code("330100"), region_code(" ningbo ")
    ('330100', '330100', '330100', '330200')
    """
    from riskflow.core.schema import REGIONS

    v = value.strip()
    for code, (en, zh) in REGIONS.items():
        if v in (code, zh) or v.lower() == en.lower():
            return code
    valid = ", ".join(f"{code} {en} {zh}" for code, (en, zh) in REGIONS.items())
    raise CommandError(f"unknown region {value!r}; one of: {valid}")


def one_of(what: str, value: str | None, valid: tuple[str, ...] | frozenset[str]) -> str | None:
    """``value`` if it is one of ``valid`` (or not given), else a :class:`CommandError` listing them."""
    if value is not None and value not in valid:
        raise CommandError(f"unknown {what} {value!r}; one of: {', '.join(valid)}")
    return value


def open_existing_store(settings: Settings, create: bool = False, risk: RiskConfig | None = None) -> AlertStore:
    """The configured alert store, refusing (unless ``create``) to create one: a command that
    reads or acts on stored alerts, run from a directory without the store, must say so rather
    than show an empty new one. A database that cannot be opened is one line, no password."""
    from riskflow.store import open_store
    from riskflow.store.sqlite import SQLiteDialect

    target = settings.store_target()
    if not create and (target.startswith("sqlite:") or "://" not in target):
        path = SQLiteDialect(target).path
        if path != ":memory:" and not Path(path).is_file():
            raise CommandError(
                f"no alert store at {Path(path).resolve()}; run from the directory the worker's sink or the demo "
                "ran in, or set RISKFLOW_STORE_URL (or RISKFLOW_DATA_DIR)"
            )
    try:
        return open_store(target, risk)
    except Exception as exc:  # the database server down, bad credentials: one line, no password
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CommandError(f"cannot open the alert store {_without_password(target)}: {why}") from None


def _without_password(url: str) -> str:
    """``url`` with any password replaced by ``***``.

    >>> _without_password("postgresql://rf:secret@db:5432/riskflow")
    'postgresql://rf:***@db:5432/riskflow'
    """
    return re.sub(r"(//[^:/@]+):[^@/]*@", r"\1:***@", url)


def store_name(store: AlertStore) -> str:
    """Which store a command used, for the line that says so (a file path made absolute, a
    database URL without its password)."""
    d = store.dialect
    path = getattr(d, "path", None)
    if path and path != ":memory:":
        return f"sqlite:{Path(path).resolve()}"
    return _without_password(d.describe())


def resolve_id(store: AlertStore, given: str, action: str) -> str | None:
    """The alert id ``given`` names: itself, or the one id it is a unique prefix of. ``None``
    after saying so on stderr if there is none (exit 1, as ``grep`` finding nothing); several
    are a :class:`CommandError` listing them."""
    from riskflow.store import NotFound

    try:
        return store.get(given).alert.alert_id
    except NotFound:
        pass
    ids = store.ids_with_prefix(given, limit=6) if given else []
    if len(ids) == 1:
        return ids[0]
    if not ids:
        print(printable(f"riskflow alerts {action}: no alert {given} in {store_name(store)}"), file=sys.stderr)
        return None
    more = ", ..." if len(ids) > 5 else ""
    raise CommandError(printable(f"alert id prefix {given} is ambiguous: {', '.join(ids[:5])}{more}"))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("alerts", help="follow, store, list and act on alerts")
    asub = p.add_subparsers(dest="alerts_command", required=True, metavar="ACTION")

    t = asub.add_parser("tail", help="follow the alerts topic (from the beginning; later revisions of an id marked)")
    t.add_argument("--json", action="store_true", help="one alert JSON object per line")
    t.add_argument("--severity", default=None, choices=SEVERITIES, help="only this severity")
    t.add_argument("--level", default=None, choices=LEVELS, help="only this risk level 风险等级")
    t.add_argument("--region", default=None, help=REGION_HELP)
    t.set_defaults(func=run_tail)

    s = asub.add_parser("sink", help="consume the alerts topic into the alert store (RISKFLOW_STORE_URL)")
    s.add_argument(
        "--metrics-port", type=int, default=0, help="serve the sink's metrics on this port (/metrics; 0: do not)"
    )
    s.set_defaults(func=run_sink_cmd)

    ls = asub.add_parser("list", help="alerts in the store, newest event first")
    ls.add_argument("--json", action="store_true", help="one JSON object per line (with status and assignee)")
    ls.add_argument("--level", default=None, choices=LEVELS, help="only this risk level 风险等级")
    ls.add_argument("--region", default=None, help=REGION_HELP)
    ls.add_argument("--kind", default=None, help="only this entity kind, e.g. private_fund, bank")
    ls.add_argument("--rule", default=None, help="only this rule id, e.g. pf.guaranteed_return")
    ls.add_argument("--status", default=None, help="only this status: open, acknowledged, assigned, snoozed, resolved")
    ls.add_argument("--entity", default=None, help="only this entity id")
    ls.add_argument("--by-risk", action="store_true", help="highest risk index first")
    ls.add_argument("--limit", type=int, default=50, help="show at most this many (default 50)")
    ls.set_defaults(func=run_list)

    rj = asub.add_parser("rejects", help="the store-rejects ledger: records the store refused, newest first")
    rj.add_argument("--json", action="store_true", help="one JSON object per line")
    rj.add_argument("--limit", type=int, default=50, help="show at most this many (default 50)")
    rj.set_defaults(func=run_rejects)

    sh = asub.add_parser("show", help="one stored alert with its audit trail")
    sh.add_argument("alert_id", help="alert id, or its first characters if no other id starts with them")
    sh.set_defaults(func=run_show)

    for action, helptext in (
        ("ack", "acknowledge 确认"),
        ("assign", "assign to an officer 分派"),
        ("resolve", "resolve 办结"),
        ("snooze", "snooze until a time, with a reason 暂缓"),
        ("reopen", "reopen 重新打开"),
    ):
        a = asub.add_parser(action, help=helptext)
        a.add_argument("alert_id", help="alert id, or its first characters if no other id starts with them")
        a.add_argument("--note", default="", help="recorded in the audit trail")
        a.add_argument("--as", dest="actor", default=None, help="officer name (default: the login name)")
        if action == "assign":
            a.add_argument("--to", dest="assignee", required=True, help="officer the alert is assigned to")
        if action == "snooze":
            a.add_argument("--reason", required=True, help="why, recorded in the audit trail")
            g = a.add_mutually_exclusive_group(required=True)
            g.add_argument("--until", help="RFC 3339 time with offset")
            g.add_argument("--days", type=float, help="snooze for this many days")
        a.set_defaults(func=run_action, action=action)


def run_until_signal(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main(stop)`` in a new event loop; SIGINT or SIGTERM sets ``stop``."""

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    asyncio.run(go())


def run_tail(args: argparse.Namespace, settings: Settings) -> int:
    from riskflow.core.kafka import check_reachable, client_config, require_bootstrap
    from riskflow.feedprint import tail_alerts, terminal_width

    region = region_code(args.region) if args.region else None
    require_bootstrap(settings)

    async def go(stop: asyncio.Event) -> None:
        await check_reachable(settings)
        await tail_alerts(
            client_config(settings),
            settings.topic_alerts,
            as_json=args.json,
            stop=stop,
            width=None if args.json else terminal_width(sys.stdout),
            keep=lambda a: (
                (args.severity in (None, a.severity))
                and (region in (None, a.region))
                and (args.level in (None, a.risk_level))
            ),
        )

    run_until_signal(go)
    return 0


def run_sink_cmd(args: argparse.Namespace, settings: Settings) -> int:
    from riskflow.core.kafka import check_reachable, client_config, require_bootstrap
    from riskflow.sinks.store import run_sink

    require_bootstrap(settings)
    metrics = None
    if args.metrics_port:
        from prometheus_client import CollectorRegistry

        from riskflow.store.metrics import StoreMetrics
        from riskflow.worker import serve_metrics

        registry = CollectorRegistry()
        metrics = StoreMetrics.create(registry)
        serve_metrics(settings.metrics_host, args.metrics_port, registry, setting="--metrics-port")

    from detectors.risk import load_risk_config
    from riskflow.core.errors import CommandError

    try:  # the sink opens officers' cases with the configured disposal routes and deadlines
        risk = load_risk_config(settings.risk_config)
    except ValueError as e:
        raise CommandError(f"RISKFLOW_RISK_CONFIG: {e}") from e

    async def go(stop: asyncio.Event) -> None:
        await check_reachable(settings)
        with open_existing_store(settings, create=True, risk=risk) as store:
            await run_sink(
                store,
                client_config(settings),
                settings.topic_alerts,
                settings.store_group_id(),
                stop=stop,
                session_timeout=settings.session_timeout,
                metrics=metrics,
            )

    run_until_signal(go)
    return 0


def _fmt_row(d: dict[str, object]) -> str:
    from riskflow.core.schema import REGIONS

    en, zh = REGIONS.get(str(d["region"]), (d["region"], ""))
    level = d["risk_level"] or "-"
    who = f" → {d['assignee']}" if d["assignee"] else ""
    return (
        f"{d['alert_id']}  {str(d['event_time'])[:16].replace('T', ' ')}  {level:<6} {float(d['risk_index']):5.1f}  "  # type: ignore[arg-type]
        f"{d['status']:<12}{who}  {en} {zh}  {d['entity_id']}  {d['title_zh']} {d['title_en']}"
    )


def run_list(args: argparse.Namespace, settings: Settings) -> int:
    from riskflow.core.schema import ENTITY_KINDS
    from riskflow.store import STATUSES

    if args.limit < 1:
        raise CommandError(f"--limit {args.limit}: give 1 or more")
    filters = dict(
        region=region_code(args.region) if args.region else None,
        level=args.level,
        entity_kind=one_of("entity kind", args.kind, ENTITY_KINDS),
        rule_id=args.rule,
        status=one_of("status", args.status, STATUSES),
        entity_id=args.entity,
    )
    with open_existing_store(settings) as store:
        rows = store.list_alerts(**filters, limit=args.limit, order="risk_index" if args.by_risk else "event_time")
        total = len(rows) if len(rows) < args.limit else store.count_alerts(**filters)
        where = store_name(store)
    for r in rows:
        d = r.to_dict()
        print(printable(json.dumps(d, ensure_ascii=False), json=True) if args.json else printable(_fmt_row(d)))
    sys.stdout.flush()
    if total > len(rows):
        note = f"{len(rows)} of {total} shown (--limit for more); store {where}"
    else:
        note = f"{total} alert{'s' if total != 1 else ''}; store {where}"
    print(printable(note), file=sys.stderr)
    return 0


def run_rejects(args: argparse.Namespace, settings: Settings) -> int:
    import msgspec

    if args.limit < 1:
        raise CommandError(f"--limit {args.limit}: give 1 or more")
    with open_existing_store(settings) as store:
        rows = store.rejects(limit=args.limit)
    for r in rows:
        if args.json:
            print(printable(json.dumps(msgspec.to_builtins(r), ensure_ascii=False), json=True))
        else:
            what = f"{r.error_class}: {r.error}" if r.error_class else r.error
            print(printable(f"{r.at}  {r.reason:<12} {r.alert_id or '-'}  {r.source or '-'}  {what}"))
    return 0


def run_show(args: argparse.Namespace, settings: Settings) -> int:
    import msgspec

    with open_existing_store(settings) as store:
        alert_id = resolve_id(store, args.alert_id, "show")
        if alert_id is None:
            return 1
        d = store.get(alert_id).to_dict()
        d["audit"] = msgspec.to_builtins(store.audit(alert_id))
    print(printable(json.dumps(d, ensure_ascii=False, indent=2), json=True))
    return 0


def run_action(args: argparse.Namespace, settings: Settings) -> int:
    from riskflow.store import TransitionError

    until = args.until if args.action == "snooze" else None
    if args.action == "snooze" and args.days is not None:
        if args.days <= 0:
            raise CommandError(f"--days {args.days:g}: give a number of days above 0")
        until = _dt.datetime.now(_dt.UTC) + _dt.timedelta(days=args.days)
    with open_existing_store(settings) as store:
        alert_id = resolve_id(store, args.alert_id, args.action)
        if alert_id is None:
            return 1
        try:
            row = store.transition(
                alert_id,
                args.action,
                actor=args.actor or getpass.getuser(),
                note=args.note,
                assignee=getattr(args, "assignee", "") or "",
                until=until,
                reason=getattr(args, "reason", "") or "",
                max_snooze=_dt.timedelta(days=settings.snooze_max_days),
            )
        except TransitionError as e:
            print(printable(f"riskflow alerts {args.action}: refused: {e}"), file=sys.stderr)
            return 2
    print(printable(_fmt_row(row.to_dict())))
    return 0
