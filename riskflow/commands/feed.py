"""``riskflow feed``: the officers' live alert feed (web page + JSON API), with the alert sink."""

from __future__ import annotations

import argparse
import asyncio

from riskflow.core.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("feed", help="serve the officers' live alert feed and its JSON API")
    p.add_argument("--port", type=int, default=None, help="listen port (default RISKFLOW_FEED_PORT; 0: any free)")
    p.add_argument("--host", default=None, help="listen address (default RISKFLOW_FEED_HOST)")
    p.add_argument(
        "--no-sink", action="store_true", help="serve the store only; do not consume the alerts topic into it"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from detectors.risk import load_risk_config
    from riskflow.commands.alerts import open_existing_store, run_until_signal
    from riskflow.core.errors import CommandError
    from riskflow.feed.server import serve_feed

    if args.port is not None and not 0 <= args.port <= 65535:
        raise CommandError(f"--port {args.port}: a port is 0..65535")
    if args.host:
        settings = settings.model_copy(update={"feed_host": args.host})

    try:  # the feed opens officers' cases with the configured disposal routes and deadlines
        risk = load_risk_config(settings.risk_config)
    except ValueError as e:
        raise CommandError(f"RISKFLOW_RISK_CONFIG: {e}") from e
    with open_existing_store(settings, create=not args.no_sink, risk=risk) as store:

        async def go(stop: asyncio.Event) -> None:
            await serve_feed(settings, stop, with_sink=not args.no_sink, port=args.port, store=store)

        run_until_signal(go)
    return 0
