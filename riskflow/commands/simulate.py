"""``riskflow simulate``: write a labelled event history (JSONL or .jsonl.gz)."""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
import textwrap
import time

from riskflow.core.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="generate a labelled event history (JSONL, .gz)")
    p.add_argument("--entities", type=int, default=200, help="population size (default 200)")
    p.add_argument("--days", type=float, default=90, help="length of the history in days (default 90)")
    p.add_argument("--seed", type=int, default=0, help="random seed: the same seed, the same history (default 0)")
    p.add_argument(
        "--start",
        default=None,
        help="first day, YYYY-MM-DD (China Standard Time; default 2025-01-01); the history must end in the past",
    )
    p.add_argument(
        "--scenarios",
        default=None,
        help="scenario mix as NAME=SHARE,... (share of the population; 0 disables; default: each scenario's own "
        "share); `--scenarios list` prints the library",
    )
    p.add_argument("--intensity", type=float, default=1.0, help="scale of every scenario signal rate (default 1)")
    p.add_argument("--out", help="events file (.jsonl or .jsonl.gz)")
    p.add_argument("--labels", default=None, help="ground-truth labels file (.jsonl)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from riskflow.core.errors import CommandError
    from riskflow.sim import CST, DEFAULT_START, SCENARIOS, generate, parse_mix
    from riskflow.sim.writer import write_events, write_labels

    if args.scenarios == "list":
        for name, cls in SCENARIOS.items():
            about = " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())
            print(f"{name}  (share {cls.share:g}; kinds {', '.join(cls.kinds)})")
            print(textwrap.fill(about, width=100, initial_indent="    ", subsequent_indent="    "))
        return 0
    if not args.out:
        raise CommandError("--out FILE is required (.jsonl or .jsonl.gz)")
    if args.entities < 1:
        raise CommandError(f"--entities {args.entities}: give at least 1")
    if args.days <= 0:
        raise CommandError(f"--days {args.days:g}: give a number of days above 0")
    if args.intensity < 0:
        raise CommandError(f"--intensity {args.intensity:g}: give 0 or more")
    start = DEFAULT_START
    if args.start:
        try:
            start = _dt.datetime.combine(_dt.date.fromisoformat(args.start), _dt.time(), CST)
        except ValueError:
            raise CommandError(f"--start {args.start}: give a date as YYYY-MM-DD") from None
    end = start + _dt.timedelta(days=args.days)
    if end > _dt.datetime.now(_dt.UTC):
        raise CommandError(
            f"the history would end on {end.date()}, in the future (workers reject future "
            "event times); pass an earlier --start or fewer --days"
        )
    try:
        mix = parse_mix(args.scenarios) if args.scenarios else None
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    t0 = time.perf_counter()
    try:
        h = generate(args.entities, args.days, args.seed, start, mix, args.intensity)
    except ValueError as exc:  # a population too small for the scenario mix
        raise CommandError(f"{exc}; give more --entities or fewer --scenarios") from None
    n = write_events(h.events, args.out)
    if args.labels:
        write_labels(h.labels, args.labels)
    dt = time.perf_counter() - t0
    print(
        f"wrote {n} events to {args.out}"
        + (f", {len(h.labels)} labels to {args.labels}" if args.labels else "")
        + f" in {dt:.1f}s ({n / max(dt, 1e-9):,.0f} events/s)",
        file=sys.stderr,
    )
    return 0
