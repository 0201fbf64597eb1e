"""``riskflow backtest``: the live pipeline over a file, scored against ground-truth labels."""

from __future__ import annotations

import argparse
import os
import sys

import msgspec

from riskflow.core.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("backtest", help="run the detectors over an event file offline and score them against labels")
    p.add_argument("file", help="events: JSONL or CSV, optionally .gz, in event-time order")
    p.add_argument("--labels", default=None, help="ground-truth labels (JSONL, docs/events.md)")
    p.add_argument("--rules", default=None, help="rule pack file or directory (default: the built-in pack)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON document")
    p.add_argument("--alerts-out", default=None, help="also write every alert (JSONL) to this file")
    p.add_argument("--batch-size", default="20000", help="events per pipeline batch (default 20000)")
    p.add_argument(
        "--jobs",
        default=None,
        help="processes sharing the input partitions (default: the machine's cores, at most "
        "RISKFLOW_PARTITIONS); the alerts and the report are the same for every value",
    )
    p.set_defaults(func=run)


def _count(option: str, text: str) -> int:
    """A whole number >= 1, or the one-line error of the command (exit 2)."""
    from riskflow.core.errors import CommandError

    try:
        n = int(text)
    except ValueError:
        raise CommandError(f"{option} must be a whole number, not {text!r}") from None
    if n < 1:
        raise CommandError(f"{option} must be at least 1, not {n}")
    return n


def run(args: argparse.Namespace, settings: Settings) -> int:
    batch_size = _count("--batch-size", args.batch_size)
    jobs = _count("--jobs", args.jobs) if args.jobs is not None else os.cpu_count() or 1
    from detectors.rules import load_pack
    from riskflow.backtest import BacktestWorkerError, backtest, format_table
    from riskflow.core.gctune import tune

    tune()  # an entry point: freeze start-up objects, fewer collector passes (riskflow/core/gctune.py)
    from riskflow.replay import read_events

    labels = []
    if args.labels:
        labels = [msgspec.json.decode(x) for x in read_events(args.labels)]
    out = open(args.alerts_out, "wb") if args.alerts_out else None  # noqa: SIM115
    try:
        rep = backtest(
            read_events(args.file),
            labels,
            load_pack(args.rules) if args.rules else None,
            settings,
            batch_size=batch_size,
            on_alert=(lambda a: out.write(a.to_json() + b"\n")) if out else None,
            jobs=jobs,
            progress=lambda text: sys.stderr.write(f"riskflow backtest: {text}\n"),
        )
    except BacktestWorkerError as exc:
        sys.stderr.write(f"riskflow backtest: {exc}\n")
        return 1
    finally:
        if out:
            out.close()
    summary = rep.summary()
    if args.json:
        sys.stdout.write(msgspec.json.encode(summary).decode() + "\n")
    else:
        print(format_table(summary))
    return 0
