"""Processor CPU per event, two checkouts side by side: same history, alternating, one run.

Wall-clock rates of one checkout move by ±15% between identical runs on this
shared 2-core machine, more than most single changes save. This compares two
versions of the processor the way earlier passes did by hand: each round runs
the offline processor (``detectors.factory.build_processor`` over the same
simulated history, in batches, state in a dict — what ``bench/backtest.py``
times) once per checkout, each in a fresh subprocess, in alternating order,
and measures CPU time (``time.process_time``) of the processing loop only.
The two runs must produce the same alerts (a digest of every alert minus
``detected_at``, ``bench/offline_run.py``), else the comparison is reported as
unequal output; entity states are not compared (an output-neutral change may
store them differently).

A side is a directory (a checkout or worktree, compiled modules and all) or a
git revision, checked out once as a detached worktree under the benchmark
cache. ``--head`` defaults to this checkout.

    python bench/ab.py BASE [--head DIR_OR_REV] [--events 100000] [--rounds 5]

Headline: ``ab_cpu_ratio`` = median over rounds of head CPU ÷ base CPU per
event (below 1: head is cheaper).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

if __package__ in (None, ""):
    import _path  # noqa: F401

from bench import common
from bench.common import ROOT, headline, history, median

#: The timed loop, loaded by path into each side's interpreter (that side's detectors, this harness).
OFFLINE_RUN = Path(__file__).resolve().parent / "offline_run.py"

#: Runs in the side's own interpreter process, with the side's directory first on sys.path.
_CHILD = r"""
import importlib.util, json, sys
sys.path.insert(0, sys.argv[1])
spec = importlib.util.spec_from_file_location("offline_run", sys.argv[4])
offline_run = importlib.util.module_from_spec(spec)
spec.loader.exec_module(offline_run)
rep = offline_run.run(open(sys.argv[2], "rb").read().splitlines(), int(sys.argv[3]))
import detectors.engine
rep["engine"] = detectors.engine.__file__
print(json.dumps(rep))
"""


def checkout(side: str) -> Path:
    """The directory of ``side``: itself if it is one, else a detached worktree of that revision."""
    p = Path(side)
    if p.is_dir():
        return p.resolve()
    sha = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", f"{side}^{{commit}}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    wt = common.CACHE / f"ab-{sha[:12]}"
    if not (wt / "detectors").is_dir():
        common.CACHE.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(wt), sha], check=True)
    return wt


def run_side(directory: Path, history_file: Path, batch: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(directory))
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(directory), str(history_file), str(batch), str(OFFLINE_RUN)],
        check=True,
        capture_output=True,
        text=True,
        cwd=directory,
        env=env,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base", help="directory or git revision of the reference")
    ap.add_argument("--head", default=str(ROOT), help="directory or git revision measured against it")
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=1000)
    args = ap.parse_args(argv)

    lines = history(args.events)
    history_file = common.CACHE / f"ab-history-{args.events}.jsonl"
    history_file.write_bytes(b"\n".join(lines) + b"\n")
    sides = {"base": checkout(args.base), "head": checkout(args.head)}
    for name, d in sides.items():
        print(f"{name}: {d}", flush=True)
    per_event: dict[str, list[float]] = {"base": [], "head": []}
    ratios: list[float] = []
    outputs: dict[str, set[tuple[int, str]]] = {"base": set(), "head": set()}
    for r in range(args.rounds):
        order = ["base", "head"] if r % 2 == 0 else ["head", "base"]
        got = {name: run_side(sides[name], history_file, args.batch) for name in order}
        for name, g in got.items():
            if r == 0:
                print(f"{name} ran {g['engine']}", flush=True)
            per_event[name].append(g["cpu_seconds"] / g["events"] * 1e6)
            outputs[name].add((g["alerts"], g["alerts_digest"]))
        ratios.append(per_event["head"][-1] / per_event["base"][-1])
        print(
            f"round {r + 1} ({' then '.join(order)}): base {per_event['base'][-1]:.2f} µs/event, "
            f"head {per_event['head'][-1]:.2f} µs/event, ratio {ratios[-1]:.3f}",
            flush=True,
        )
    same = outputs["base"] == outputs["head"] and len(outputs["base"]) == 1
    print(
        f"median CPU per event: base {median(per_event['base']):.2f} µs, head {median(per_event['head']):.2f} µs; "
        f"alerts {'identical' if same else 'DIFFER'} ({sorted(outputs['base'])} vs {sorted(outputs['head'])})",
        flush=True,
    )
    value = median(ratios)
    headline("ab_cpu_ratio", value)
    return value


if __name__ == "__main__":
    main()
