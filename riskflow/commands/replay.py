"""``riskflow replay``: an event file into the input topics, paced by event time, resumable."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from pathlib import Path

from riskflow.core.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="replay an event file (JSONL or CSV, .gz) into the input topics")
    p.add_argument("file", help="JSONL or CSV (optionally .gz) in event-time order")
    p.add_argument(
        "--speed", default="max", help="event-time seconds per wall second (1, 60, 3600, ...) or 'max' (default)"
    )
    p.add_argument("--from", dest="start", default=None, help="skip events before this time (RFC 3339 or date)")
    p.add_argument("--to", dest="end", default=None, help="skip events at or after this time (RFC 3339 or date)")
    p.add_argument("--format", choices=("jsonl", "csv"), default=None, help="input format (default: from the name)")
    p.add_argument("--checkpoint", default=None, help="checkpoint file (default: FILE.replay-checkpoint)")
    p.add_argument("--resume", action="store_true", help="skip the lines a previous run's checkpoint records as sent")
    p.add_argument("--no-progress", action="store_true", help="no progress line on stderr")
    p.set_defaults(func=run)


def _time_arg(option: str, text: str | None) -> float | None:
    from riskflow.core.errors import CommandError
    from riskflow.replay import parse_time

    if text is None:
        return None
    try:
        return parse_time(text)
    except ValueError:
        raise CommandError(
            f"{option} {text}: not a time; give RFC 3339 (2025-03-01T09:30:00+08:00) or a date (2025-03-01)"
        ) from None


def run(args: argparse.Namespace, settings: Settings) -> int:
    from riskflow.core.errors import CommandError
    from riskflow.core.kafka import check_reachable, client_config, ensure_topics, require_bootstrap
    from riskflow.replay import Checkpoint, EventFile, Progress, parse_speed, produce, route

    source = EventFile(args.file, args.format)
    cp_path = Path(args.checkpoint or f"{args.file}.replay-checkpoint")
    if args.resume and cp_path.exists():
        try:
            cp = Checkpoint.load(cp_path, str(args.file), source.size)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        print(f"resuming after line {cp.lines_done:,} ({cp_path})", file=sys.stderr)
    else:
        cp = Checkpoint(cp_path, str(args.file), source.size)
    start, end = _time_arg("--from", args.start), _time_arg("--to", args.end)
    try:
        speed = parse_speed(args.speed)
    except ValueError:
        raise CommandError(f"--speed {args.speed}: give event-time seconds per wall second (> 0) or 'max'") from None
    require_bootstrap(settings)
    progress = None if args.no_progress else Progress(source)
    stopped = False

    async def go() -> int:
        nonlocal stopped
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await check_reachable(settings)
        # Missing topics are created with the configured partition counts before anything is
        # produced: a broker that auto-creates a topic on first write gives it its own default
        # (Tansu 4, Kafka's num.partitions 1), and the workers then keep that count.
        await ensure_topics(settings, retries=3)
        records = route(source, settings, start=start, end=end, skip=cp.lines_done)
        n = await produce(
            records,
            client_config(settings),
            speed=speed,
            checkpoint=cp,
            progress=progress,
            stop=stop,
        )
        stopped = stop.is_set()
        return n

    t0 = time.monotonic()
    n = asyncio.run(go())
    if progress is not None:
        progress.close()
    dt = time.monotonic() - t0
    if stopped:
        print(f"interrupted: {n:,} events sent; resume with --resume (checkpoint {cp_path})", file=sys.stderr)
        return 130
    print(f"replayed {n:,} events from {args.file} in {dt:.1f}s ({n / max(dt, 1e-9):,.0f} events/s)", file=sys.stderr)
    return 0
