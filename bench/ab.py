"""Processor CPU per event, two checkouts side by side: same history, alternating, one run.

Wall-clock rates of one checkout move by ±15% between identical runs on this
shared 2-core machine, more than most single changes save. This compares two
versions of the processor the way earlier passes did by hand: each round runs
the offline processor (``detectors.factory.build_processor`` over the same
simulated history, in batches, state in a dict — what ``bench/processor.py``
times) once per checkout, each in a fresh subprocess, in alternating order,
and measures CPU time (``time.process_time``) of the processing loop only.
The two runs must produce the same alerts (a digest of every alert minus
``detected_at``, ``bench/offline_run.py``), else the comparison is reported as
unequal output; entity states are not compared (an output-neutral change may
store them differently).

A side is a directory (a checkout or worktree, compiled modules and all) or a
git revision, checked out once as a detached worktree under the benchmark
cache. ``--head`` defaults to this checkout.

``--instructions`` counts instead of timing: each side runs under valgrind's
cachegrind (no cache simulation, ~12× slower; default 20,000 events, one
round), once whole and once without the loop, and the difference is the
instructions of the processing (plus the output digest, alike on both sides
when the alerts are the same). With the hash seed fixed and one BLAS thread
the count repeats to a few instructions in a billion and does not move with
the machine's load, so a change of a fraction of a percent shows. It counts
work, not time: a cache miss or a slow instruction counts as one, like any
other.

    python bench/ab.py BASE [--head DIR_OR_REV] [--events 100000] [--rounds 5] [--instructions]

Headline: ``ab_cpu_ratio`` = median over rounds of head CPU ÷ base CPU per
event (below 1: head is cheaper); with ``--instructions``, ``ab_instructions_ratio``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
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
lines = open(sys.argv[2], "rb").read().splitlines()
rep = offline_run.run(lines, int(sys.argv[3]), process=sys.argv[5] == "process")
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


def run_side(directory: Path, history_file: Path, batch: int, *, process: bool = True, count: bool = False) -> dict:
    """One child run of a side's processor; ``count``: under cachegrind, with ``instructions``
    (the whole process's) added to the report."""
    env = dict(os.environ, PYTHONPATH=str(directory))
    child = [sys.executable, "-c", _CHILD, str(directory), str(history_file), str(batch), str(OFFLINE_RUN)]
    child.append("process" if process else "setup")
    with tempfile.TemporaryDirectory() as tmp:
        out_file = Path(tmp) / "cachegrind.out"
        if count:
            env["PYTHONHASHSEED"] = "0"  # the same dict and set layouts on both sides and every run
            # one BLAS thread: idle BLAS threads spin, and valgrind would count their spinning
            env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
            child = ["valgrind", "--tool=cachegrind", "--cache-sim=no", f"--cachegrind-out-file={out_file}", *child]
        out = subprocess.run(child, check=True, capture_output=True, text=True, cwd=directory, env=env).stdout
        rep = json.loads(out.strip().splitlines()[-1])
        if count:
            summary = [ln for ln in out_file.read_text().splitlines() if ln.startswith("summary:")]
            rep["instructions"] = int(summary[0].split()[1])
    return rep


def count_side(directory: Path, history_file: Path, batch: int) -> dict:
    """A side's report with ``loop_instructions``: the whole run's count less a run without the loop
    (that one first: it also writes any missing bytecode caches, which the whole run would count)."""
    setup = run_side(directory, history_file, batch, process=False, count=True)
    rep = run_side(directory, history_file, batch, count=True)
    rep["loop_instructions"] = rep["instructions"] - setup["instructions"]
    return rep


def main(argv: list[str] | None = None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base", help="directory or git revision of the reference")
    ap.add_argument("--head", default=str(ROOT), help="directory or git revision measured against it")
    ap.add_argument("--events", type=int, default=None, help="default 100,000 (20,000 with --instructions)")
    ap.add_argument("--rounds", type=int, default=None, help="default 5 (1 with --instructions)")
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--instructions", action="store_true", help="count instructions under valgrind, not CPU time")
    args = ap.parse_args(argv)
    if args.instructions and shutil.which("valgrind") is None:
        ap.error("--instructions needs valgrind (Debian: apt-get install valgrind)")
    if args.events is None:
        args.events = 20_000 if args.instructions else 100_000
    if args.rounds is None:
        args.rounds = 1 if args.instructions else 5

    lines = history(args.events)
    history_file = common.CACHE / f"ab-history-{args.events}.jsonl"
    history_file.write_bytes(b"\n".join(lines) + b"\n")
    sides = {"base": checkout(args.base), "head": checkout(args.head)}
    for name, d in sides.items():
        print(f"{name}: {d}", flush=True)
    per_event: dict[str, list[float]] = {"base": [], "head": []}
    ratios: list[float] = []
    unit = "instructions" if args.instructions else "µs CPU"
    outputs: dict[str, set[tuple[int, str]]] = {"base": set(), "head": set()}
    for r in range(args.rounds):
        order = ["base", "head"] if r % 2 == 0 else ["head", "base"]
        if args.instructions:
            got = {name: count_side(sides[name], history_file, args.batch) for name in order}
        else:
            got = {name: run_side(sides[name], history_file, args.batch) for name in order}
        for name, g in got.items():
            if r == 0:
                print(f"{name} ran {g['engine']}", flush=True)
            work = g["loop_instructions"] if args.instructions else g["cpu_seconds"] * 1e6
            per_event[name].append(work / g["events"])
            outputs[name].add((g["alerts"], g["alerts_digest"]))
        ratios.append(per_event["head"][-1] / per_event["base"][-1])
        print(
            f"round {r + 1} ({' then '.join(order)}): base {per_event['base'][-1]:,.2f} {unit}/event, "
            f"head {per_event['head'][-1]:,.2f} {unit}/event, ratio {ratios[-1]:.3f}",
            flush=True,
        )
    same = outputs["base"] == outputs["head"] and len(outputs["base"]) == 1
    print(
        f"median {unit} per event: base {median(per_event['base']):,.2f}, head {median(per_event['head']):,.2f}; "
        f"alerts {'identical' if same else 'DIFFER'} ({sorted(outputs['base'])} vs {sorted(outputs['head'])})",
        flush=True,
    )
    value = median(ratios)
    headline("ab_instructions_ratio" if args.instructions else "ab_cpu_ratio", value)
    return value


if __name__ == "__main__":
    main()
