"""The full Numenta Anomaly Benchmark score of ``riskflow bench nab``, beside the published scoreboard.

    .venv/bin/python bench/nab.py NAB_ROOT [--out DIR] [--folds 2]

NAB_ROOT is a checkout of the NAB corpus (``data/``, ``labels/``, ``config/``)
with its stdlib scorer ``score.py`` beside them. The script runs the runner of
``riskflow bench nab`` over ``NAB_ROOT/data`` (one pass per file, each value
scored before it is learned, no labels), scores the results with
``NAB_ROOT/score.py`` and prints the three profiles, the values scored per
second (detector alone, and with the CSV reading and writing), and the
published entries the score passes. With ``--folds K`` it also scores the corpus
split into K parts by file (the CRC-32 of the file name modulo K: deterministic,
mixed across NAB's categories), each part on its own with the same results, so
that a score made in-sample on the whole corpus can be compared across halves
(NAB's optimiser picks each part's threshold, as it does for the whole). Not a
timed test: run it by hand.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

if __package__ in (None, ""):
    import _path  # noqa: F401

from riskflow.commands.bench import DETECTOR_NAME, hour_of, parse_value, read_series, score_file, score_series


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("nab_root", type=Path, help="NAB corpus root: data/, labels/, config/, score.py")
    ap.add_argument("--out", type=Path, default=None, help="results directory (default: a temporary one)")
    ap.add_argument("--folds", type=int, default=0, help="also score the corpus split into this many parts by file")
    args = ap.parse_args(argv)
    root: Path = args.nab_root
    if args.folds == 1 or args.folds < 0:
        print("bench/nab.py: --folds must be 0 (none) or at least 2", file=sys.stderr)
        return 2
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
        line = _score(root, out / DETECTOR_NAME)
        parts = [_score_part(root, out / DETECTOR_NAME, k, args.folds) for k in range(args.folds)]
    print(line)
    for part in parts:
        print(part)
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


def fold_of(name: str, folds: int) -> int:
    """The part (0 .. folds - 1) of the file ``name`` (``speed_7578.csv``): its CRC-32 modulo ``folds``."""
    return zlib.crc32(name.encode()) % folds


def _score(root: Path, results: Path) -> str:
    """The scorer's one line for ``results`` against ``root``'s labels."""
    return subprocess.run(
        [sys.executable, str(root / "score.py"), str(results)], check=True, capture_output=True, text=True
    ).stdout.strip()


def _score_part(root: Path, results: Path, k: int, folds: int) -> str:
    """Part ``k``'s score: the scorer run beside a copy of the labels holding that part's files only."""
    windows = json.loads((root / "labels" / "combined_windows.json").read_text())
    part = {rel: w for rel, w in windows.items() if fold_of(Path(rel).name, folds) == k}
    cats = sorted({rel.split("/")[0] for rel in part})
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        (t / "labels").mkdir()
        (t / "labels" / "combined_windows.json").write_text(json.dumps(part))
        shutil.copytree(root / "config", t / "config")
        shutil.copy(root / "score.py", t / "score.py")
        line = _score(t, results)
    n_win = sum(len(w) for w in part.values())
    return f"part {k + 1}/{folds}: {len(part)} files, {n_win} windows, {len(cats)} categories: {line}"


if __name__ == "__main__":
    raise SystemExit(main())
