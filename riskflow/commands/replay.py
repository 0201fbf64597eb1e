from __future__ import annotations

import argparse
import asyncio

from riskflow.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="replay an event file into the input topics")
    p.add_argument("file", help="JSONL (optionally .gz) in event-time order")
    p.add_argument("--speed", default="max", help="event-time seconds per wall second, or 'max' (default)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from riskflow.replay import parse_speed, produce, read_lines, route

    if not settings.kafka_bootstrap:
        raise SystemExit("riskflow replay: set RISKFLOW_KAFKA_BOOTSTRAP")
    n = asyncio.run(
        produce(route(read_lines(args.file), settings), settings.kafka_bootstrap, speed=parse_speed(args.speed))
    )
    print(f"replayed {n} events from {args.file}")
    return 0
