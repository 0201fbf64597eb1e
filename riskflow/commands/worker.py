from __future__ import annotations

import argparse

from riskflow.core.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("worker", help="run the stream processor (needs RISKFLOW_KAFKA_BOOTSTRAP)")
    p.add_argument("--rules", default=None, help="rule pack file or directory (default: the built-in pack)")
    p.add_argument(
        "--processes",
        default="1",
        metavar="N",
        help="worker processes of one consumer group, each on its own metrics and web port (base + i); "
        "0 or auto: one per core (default: 1)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from riskflow.supervisor import resolve_processes

    count = resolve_processes(args.processes)
    if count == 1:
        from riskflow.worker import run_worker

        return run_worker(settings, args.rules)
    from riskflow.supervisor import run_supervisor

    return run_supervisor(settings, count, args.rules)
