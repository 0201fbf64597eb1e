from __future__ import annotations

import argparse
import contextlib
import signal

from riskflow.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("broker", help="run the embedded Tansu broker alone, in the foreground")
    p.add_argument("--port", type=int, default=9092)
    p.add_argument("--host", default="127.0.0.1")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from riskflow.broker import EmbeddedBroker

    with EmbeddedBroker(port=args.port, host=args.host) as b:
        print(f"Tansu broker on {b.bootstrap} (in-memory; Ctrl-C stops it)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
    return 0
