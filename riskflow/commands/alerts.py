"""``riskflow alerts``: follow the alerts topic, run the store sink, list and act on stored alerts.

Every line printed goes through ``riskflow.textsafe.printable``: ids and titles come
from the topic, and a control character in them must not reach the terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import getpass
import json
import signal
import sys
from collections.abc import Awaitable, Callable

from riskflow.settings import Settings
from riskflow.textsafe import printable

LEVELS = ("red", "orange", "yellow", "green")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("alerts", help="follow, store, list and act on alerts")
    asub = p.add_subparsers(dest="alerts_command", required=True, metavar="ACTION")

    t = asub.add_parser("tail", help="follow the alerts topic (from the beginning; later revisions of an id marked)")
    t.add_argument("--json", action="store_true", help="one alert JSON object per line")
    t.add_argument("--severity", default=None, help="only this severity")
    t.add_argument("--level", default=None, choices=LEVELS, help="only this risk level 风险等级")
    t.add_argument("--region", default=None, help="only this region code, e.g. 330100")
    t.set_defaults(func=run_tail)

    s = asub.add_parser("sink", help="consume the alerts topic into the alert store (RISKFLOW_STORE_URL)")
    s.add_argument(
        "--metrics-port", type=int, default=0, help="serve the sink's metrics on this port (/metrics; 0: do not)"
    )
    s.set_defaults(func=run_sink_cmd)

    ls = asub.add_parser("list", help="alerts in the store, newest event first")
    ls.add_argument("--json", action="store_true", help="one JSON object per line (with status and assignee)")
    ls.add_argument("--level", default=None, choices=LEVELS)
    ls.add_argument("--region", default=None)
    ls.add_argument("--kind", default=None, help="entity kind")
    ls.add_argument("--rule", default=None, help="rule id")
    ls.add_argument("--status", default=None, help="open, acknowledged, assigned, snoozed or resolved")
    ls.add_argument("--entity", default=None, help="entity id")
    ls.add_argument("--by-risk", action="store_true", help="highest risk index first")
    ls.add_argument("--limit", type=int, default=50)
    ls.set_defaults(func=run_list)

    rj = asub.add_parser("rejects", help="the store-rejects ledger: records the store refused, newest first")
    rj.add_argument("--json", action="store_true", help="one JSON object per line")
    rj.add_argument("--limit", type=int, default=50)
    rj.set_defaults(func=run_rejects)

    sh = asub.add_parser("show", help="one stored alert with its audit trail")
    sh.add_argument("alert_id")
    sh.set_defaults(func=run_show)

    for action, helptext in (
        ("ack", "acknowledge 确认"),
        ("assign", "assign to an officer 分派"),
        ("resolve", "resolve 办结"),
        ("snooze", "snooze until a time, with a reason 暂缓"),
        ("reopen", "reopen 重新打开"),
    ):
        a = asub.add_parser(action, help=helptext)
        a.add_argument("alert_id")
        a.add_argument("--note", default="", help="recorded in the audit trail")
        a.add_argument("--as", dest="actor", default=None, help="officer name (default: the login name)")
        if action == "assign":
            a.add_argument("--to", dest="assignee", required=True, help="officer the alert is assigned to")
        if action == "snooze":
            a.add_argument("--reason", required=True)
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
    from riskflow.feedprint import tail_alerts
    from riskflow.kafka import check_reachable, client_config, require_bootstrap

    require_bootstrap(settings)

    async def go(stop: asyncio.Event) -> None:
        await check_reachable(settings)
        await tail_alerts(
            client_config(settings),
            settings.topic_alerts,
            as_json=args.json,
            stop=stop,
            keep=lambda a: (
                (args.severity in (None, a.severity))
                and (args.region in (None, a.region))
                and (args.level in (None, a.risk_level))
            ),
        )

    run_until_signal(go)
    return 0


def run_sink_cmd(args: argparse.Namespace, settings: Settings) -> int:
    from riskflow.kafka import check_reachable, client_config, require_bootstrap
    from riskflow.store import open_store
    from riskflow.store.sink import run_sink

    require_bootstrap(settings)
    metrics = None
    if args.metrics_port:
        from prometheus_client import CollectorRegistry

        from riskflow.store.metrics import StoreMetrics
        from riskflow.worker import serve_metrics

        registry = CollectorRegistry()
        metrics = StoreMetrics.create(registry)
        serve_metrics(settings.metrics_host, args.metrics_port, registry, setting="--metrics-port")

    async def go(stop: asyncio.Event) -> None:
        await check_reachable(settings)
        with open_store(settings.store_target()) as store:
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
    from riskflow.schema import REGIONS

    en, zh = REGIONS.get(str(d["region"]), (d["region"], ""))
    level = d["risk_level"] or "-"
    who = f" → {d['assignee']}" if d["assignee"] else ""
    return (
        f"{d['alert_id']}  {str(d['event_time'])[:16].replace('T', ' ')}  {level:<6} {float(d['risk_index']):5.1f}  "  # type: ignore[arg-type]
        f"{d['status']:<12}{who}  {en} {zh}  {d['entity_id']}  {d['title_zh']} {d['title_en']}"
    )


def run_list(args: argparse.Namespace, settings: Settings) -> int:
    from riskflow.store import open_store

    with open_store(settings.store_target()) as store:
        rows = store.list_alerts(
            region=args.region,
            level=args.level,
            entity_kind=args.kind,
            rule_id=args.rule,
            status=args.status,
            entity_id=args.entity,
            limit=args.limit,
            order="risk_index" if args.by_risk else "event_time",
        )
    for r in rows:
        d = r.to_dict()
        print(printable(json.dumps(d, ensure_ascii=False), json=True) if args.json else printable(_fmt_row(d)))
    return 0


def run_rejects(args: argparse.Namespace, settings: Settings) -> int:
    import msgspec

    from riskflow.store import open_store

    with open_store(settings.store_target()) as store:
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

    from riskflow.store import NotFound, open_store

    with open_store(settings.store_target()) as store:
        try:
            row = store.get(args.alert_id)
        except NotFound:
            print(printable(f"no alert {args.alert_id}"), file=sys.stderr)
            return 1
        d = row.to_dict()
        d["audit"] = msgspec.to_builtins(store.audit(args.alert_id))
    print(printable(json.dumps(d, ensure_ascii=False, indent=2), json=True))
    return 0


def run_action(args: argparse.Namespace, settings: Settings) -> int:
    from riskflow.store import NotFound, TransitionError, open_store

    until = args.until if args.action == "snooze" else None
    if args.action == "snooze" and args.days is not None:
        until = _dt.datetime.now(_dt.UTC) + _dt.timedelta(days=args.days)
    with open_store(settings.store_target()) as store:
        try:
            row = store.transition(
                args.alert_id,
                args.action,
                actor=args.actor or getpass.getuser(),
                note=args.note,
                assignee=getattr(args, "assignee", "") or "",
                until=until,
                reason=getattr(args, "reason", "") or "",
                max_snooze=_dt.timedelta(days=settings.snooze_max_days),
            )
        except NotFound:
            print(printable(f"no alert {args.alert_id}"), file=sys.stderr)
            return 1
        except TransitionError as e:
            print(printable(f"refused: {e}"), file=sys.stderr)
            return 2
    print(printable(_fmt_row(row.to_dict())))
    return 0
