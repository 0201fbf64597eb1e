"""``riskflow bench nab --data DIR --out DIR``: the univariate detector over an NAB-layout corpus.

The Numenta Anomaly Benchmark lays its corpus out as ``DIR/<category>/<name>.csv``
with a ``timestamp,value`` header. Each file gets a fresh
:class:`~detectors.anomaly.univariate.UnivariateAnomaly` with its defaults (the
product's parameters); the one thing the runner passes is the warm-up, NAB's
probationary period (15 % of the file, at most 750 points), which NAB hands every
detector. One pass in time order, each value scored before it is learned, by
:meth:`~detectors.anomaly.univariate.UnivariateAnomaly.step` (what the detector does
with an event's field), the hour of the week from each row's timestamp, no labels.
The results are written as NAB expects them from a detector:
``OUT/<detector>/<category>/<detector>_<name>.csv`` with
``timestamp,value,anomaly_score,label`` (label 0: NAB's scorer adds the truth).
The command prints the values scored per second (docs/anomaly.md has the scores).
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import math
import time
from pathlib import Path

from riskflow.core.settings import Settings

DETECTOR_NAME = "riskflow"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmark runners")
    bsub = p.add_subparsers(dest="bench", required=True, metavar="BENCH")
    nab = bsub.add_parser("nab", help="run the univariate detector over a Numenta Anomaly Benchmark layout")
    nab.add_argument("--data", required=True, help="corpus: DIR/<category>/<name>.csv with timestamp,value")
    nab.add_argument("--out", required=True, help="results: OUT/<detector>/<category>/<detector>_<name>.csv")
    nab.add_argument("--detector", default=DETECTOR_NAME, help="detector name in the output paths")
    nab.set_defaults(func=run_nab)


def probation(n: int) -> int:
    """NAB's probationary period: the first 15 % of a file, at most 750 points."""
    return min(math.floor(0.15 * n), 750)


def read_series(src: Path) -> list[tuple[str, str]]:
    """(timestamp, value) rows of one NAB file; SystemExit with one line if it has no such columns."""
    try:
        with src.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or "value" not in reader.fieldnames:
                raise SystemExit(f"riskflow bench nab: {src}: no 'value' column")
            return [(r.get("timestamp") or "", r.get("value") or "") for r in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SystemExit(f"riskflow bench nab: cannot read {src}: {exc}") from None


def score_series(values: list[float], hours: list[int | None] | None = None) -> list[float]:
    """Scores of one file's values by the product detector, one pass in time order (used by tests and bench/).

    ``hours``: each value's hour of the week (``weekday * 24 + hour``), None where unknown.
    """
    from detectors.anomaly.univariate import UnivariateAnomaly

    det = UnivariateAnomaly(warmup=probation(len(values)))
    state = det.init_state()
    hrs = hours if hours is not None else [None] * len(values)
    return [det.step(state, x, h) for x, h in zip(values, hrs, strict=True)]


def hour_of(timestamp: str) -> int | None:
    """The hour of the week (``weekday * 24 + hour``) of an NAB timestamp (``2014-04-01 00:05:00``).

    None if it is not a timestamp.
    """
    try:
        t = _dt.datetime.fromisoformat(timestamp.strip().split(".")[0])
    except ValueError:
        return None
    return t.weekday() * 24 + t.hour


def parse_value(raw: str) -> float:
    """A CSV cell as a float; NaN (scored 0, not learned) when it is not a number."""
    try:
        return float(raw)
    except ValueError:
        return math.nan


def score_file(src: Path, dst: Path) -> int:
    """Score one NAB file into ``dst``; returns the number of rows."""
    rows = read_series(src)
    scores = score_series([parse_value(v) for _, v in rows], [hour_of(t) for t, _ in rows])
    dst.parent.mkdir(parents=True, exist_ok=True)
    with dst.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", "value", "anomaly_score", "label"])
        for (ts, raw), score in zip(rows, scores, strict=True):
            w.writerow([ts, raw, f"{score:.6f}", 0])
    return len(rows)


def run_nab(args: argparse.Namespace, settings: Settings) -> int:
    data, out = Path(args.data), Path(args.out)
    files = sorted(p for p in data.glob("*/*.csv") if p.is_file())
    if not files:
        raise SystemExit(f"riskflow bench nab: no DIR/<category>/<name>.csv under {data}")
    total, t0 = 0, time.perf_counter()
    for src in files:
        category = src.parent.name
        dst = out / args.detector / category / f"{args.detector}_{src.name}"
        total += score_file(src, dst)
    rate = total / max(time.perf_counter() - t0, 1e-9)
    print(f"scored {len(files)} files, {total} rows, into {out / args.detector} ({rate:,.0f} values/s)")
    return 0
