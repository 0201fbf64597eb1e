"""``riskflow bench nab --data DIR --out DIR``: the univariate detector over an NAB-layout corpus.

The Numenta Anomaly Benchmark lays its corpus out as ``DIR/<category>/<name>.csv``
with a ``timestamp,value`` header. Each file gets a fresh
:class:`~detectors.anomaly.univariate.UnivariateAnomaly` (raw values, no log;
``span`` 100 points; warm-up = NAB's probationary period, 15 % of the file
and at most 750 points; flags not learned until 20 on balance) and the results
are written as NAB expects them from a detector:
``OUT/<detector>/<category>/<detector>_<name>.csv`` with
``timestamp,value,anomaly_score,label`` (label 0: NAB's scorer adds the truth).
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

from riskflow.settings import Settings

DETECTOR_NAME = "riskflow"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmark runners")
    bsub = p.add_subparsers(dest="bench", required=True, metavar="BENCH")
    nab = bsub.add_parser("nab", help="run the univariate detector over a Numenta Anomaly Benchmark layout")
    nab.add_argument("--data", required=True, help="corpus: DIR/<category>/<name>.csv with timestamp,value")
    nab.add_argument("--out", required=True, help="results: OUT/<detector>/<category>/<detector>_<name>.csv")
    nab.add_argument("--detector", default=DETECTOR_NAME, help="detector name in the output paths")
    nab.add_argument("--span", type=float, default=100.0, help="EWMA span, in points")
    nab.set_defaults(func=run_nab)


def probation(n: int) -> int:
    """NAB's probationary period: the first 15 % of a file, at most 750 points."""
    return min(math.floor(0.15 * n), 750)


def score_file(src: Path, dst: Path, *, span: float = 100.0) -> int:
    """Score one NAB file into ``dst``; returns the number of rows."""
    from detectors.anomaly.univariate import UnivariateAnomaly

    with src.open(newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f)]
    det = UnivariateAnomaly(span=span, warmup=probation(len(rows)), log=False)
    state = det.init_state()
    dst.parent.mkdir(parents=True, exist_ok=True)
    with dst.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", "value", "anomaly_score", "label"])
        for r in rows:
            raw = r.get("value", "")
            try:
                x = float(raw)
            except (TypeError, ValueError):
                x = math.nan
            state, score, _ = det.score_value(state, x)
            w.writerow([r.get("timestamp", ""), raw, f"{score:.6f}", 0])
    return len(rows)


def run_nab(args: argparse.Namespace, settings: Settings) -> int:
    data, out = Path(args.data), Path(args.out)
    files = sorted(p for p in data.glob("*/*.csv") if p.is_file())
    if not files:
        raise SystemExit(f"riskflow bench nab: no DIR/<category>/<name>.csv under {data}")
    total = 0
    for src in files:
        category = src.parent.name
        dst = out / args.detector / category / f"{args.detector}_{src.name}"
        total += score_file(src, dst, span=args.span)
    print(f"scored {len(files)} files, {total} rows, into {out / args.detector}")
    return 0
