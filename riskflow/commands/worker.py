from __future__ import annotations

import argparse

from riskflow.core.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("worker", help="run the stream processor (needs RISKFLOW_KAFKA_BOOTSTRAP)")
    p.add_argument("--rules", default=None, help="rule pack file or directory (default: the built-in pack)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from riskflow.worker import run_worker

    return run_worker(settings, args.rules)
