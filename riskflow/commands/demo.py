from __future__ import annotations

import argparse

from riskflow.core.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="embedded broker + worker + simulated stream; print alerts")
    p.add_argument("--duration", type=float, default=None, help="stop after SECONDS (default: run until Ctrl-C)")
    p.add_argument("--json", action="store_true", help="one alert JSON object per line on stdout")
    p.add_argument("--entities", type=int, default=300, help="simulated entities (default 300)")
    p.add_argument("--seed", type=int, default=7, help="seed of the simulated history (default 7)")
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show the worker's and Kafka clients' logs here (default: in RISKFLOW_DATA_DIR/demo*.log)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from riskflow.demo import run_demo

    return run_demo(settings, args.duration, args.json, args.entities, args.seed, verbose=args.verbose)
