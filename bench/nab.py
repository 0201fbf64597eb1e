"""The full Numenta Anomaly Benchmark score of ``riskflow bench nab``, beside the published scoreboard.

    .venv/bin/python bench/nab.py NAB_ROOT [--out DIR]

NAB_ROOT is a checkout of the NAB corpus (``data/``, ``labels/``, ``config/``)
with its stdlib scorer ``score.py`` beside them. The script runs the runner of
``riskflow bench nab`` over ``NAB_ROOT/data`` (one pass per file, each value
scored before it is learned, no labels), scores the results with
``NAB_ROOT/score.py`` and prints the three profiles, the values scored per
second (detector alone, and with the CSV reading and writing), and the
published entries the score passes. Not a timed test: run it by hand.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    import _path  # noqa: F401

from riskflow.commands.bench import DETECTOR_NAME, hour_of, parse_value, read_series, score_file, score_series


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("nab_root", type=Path, help="NAB corpus root: data/, labels/, config/, score.py")
    ap.add_argument("--out", type=Path, default=None, help="results directory (default: a temporary one)")
    args = ap.parse_args(argv)
    root: Path = args.nab_root
    if not (root / "score.py").is_file() or not (root / "data").is_dir():
        print(f"bench/nab.py: {root} has no score.py and data/", file=sys.stderr)
        return 2
    files = sorted(p for p in (root / "data").glob("*/*.csv") if p.is_file())
    rows = [read_series(p) for p in files]
    series = [([parse_value(v) for _, v in r], [hour_of(t) for t, _ in r]) for r in rows]
    n = sum(len(r) for r in rows)
    t0 = time.perf_counter()
    for values, hours in series:
        score_series(values, hours)
    detector_rate = n / (time.perf_counter() - t0)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        t0 = time.perf_counter()
        for p in files:
            score_file(p, out / DETECTOR_NAME / p.parent.name / f"{DETECTOR_NAME}_{p.name}")
        runner_rate = n / (time.perf_counter() - t0)
        line = subprocess.run(
            [sys.executable, str(root / "score.py"), str(out / DETECTOR_NAME)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    print(line)
    rates = f"{detector_rate:,.0f} values/s detector alone, {runner_rate:,.0f} with CSV I/O"
    print(f"{len(files)} files, {n} values: {rates}")
    published = root / "published_results.json"
    if published.is_file():
        ours = {k: float(v) for k, v in re.findall(r"nab_(\w+?)=([\d.]+)", line)}
        board = json.loads(published.read_text())
        std = ours.get("standard", 0.0)
        below = sorted(((v["standard"], k) for k, v in board.items() if v["standard"] < std), reverse=True)
        above = sorted((v["standard"], k) for k, v in board.items() if v["standard"] >= std)
        print("standard profile, published entries above:", ", ".join(f"{k} {v:.2f}" for v, k in above) or "none")
        print("published entries below:", ", ".join(f"{k} {v:.2f}" for v, k in below[:4]), "...")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
