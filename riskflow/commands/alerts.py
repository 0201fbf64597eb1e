from __future__ import annotations

import argparse
import asyncio
import signal

from riskflow.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("alerts", help="read alerts")
    asub = p.add_subparsers(dest="alerts_command", required=True, metavar="ACTION")
    t = asub.add_parser("tail", help="follow the alerts topic (from the beginning, once per alert id)")
    t.add_argument("--json", action="store_true", help="one alert JSON object per line")
    t.add_argument("--severity", default=None, help="only this severity")
    t.add_argument("--region", default=None, help="only this region code, e.g. 330100")
    t.set_defaults(func=run_tail)


def run_tail(args: argparse.Namespace, settings: Settings) -> int:
    from riskflow.feedprint import tail_alerts

    if not settings.kafka_bootstrap:
        raise SystemExit("riskflow alerts tail: set RISKFLOW_KAFKA_BOOTSTRAP")

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await tail_alerts(
            settings.kafka_bootstrap,  # type: ignore[arg-type]
            settings.topic_alerts,
            as_json=args.json,
            stop=stop,
            keep=lambda a: (args.severity in (None, a.severity)) and (args.region in (None, a.region)),
        )

    asyncio.run(go())
    return 0
