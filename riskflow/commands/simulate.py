from __future__ import annotations

import argparse
import gzip
from pathlib import Path

import msgspec

from riskflow.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="generate a labelled event history (JSONL)")
    p.add_argument("--entities", type=int, default=200)
    p.add_argument("--days", type=int, default=90)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="events file (.jsonl or .jsonl.gz)")
    p.add_argument("--labels", default=None, help="ground-truth labels file (.jsonl)")
    p.set_defaults(func=run)


def _write(path: str, rows: list[dict]) -> None:
    enc = msgspec.json.Encoder()
    opener = gzip.open if path.endswith(".gz") else open
    with opener(Path(path), "wb") as f:
        for r in rows:
            f.write(enc.encode(r) + b"\n")


def run(args: argparse.Namespace, settings: Settings) -> int:
    from riskflow.simulate import simulate

    events, labels = simulate(entities=args.entities, days=args.days, seed=args.seed)
    _write(args.out, events)
    if args.labels:
        _write(args.labels, labels)
    print(
        f"wrote {len(events)} events to {args.out}"
        + (f", {len(labels)} labels to {args.labels}" if args.labels else "")
    )
    return 0
