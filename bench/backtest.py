"""``riskflow backtest`` itself: the command's events/s over a simulated history file.

Each round runs ``python -m riskflow backtest FILE --json --jobs N`` as a child process
and times all of it — interpreter start, reading the file, Kafka placement, every
detector, state kept as bytes, the report — as a user waits for it; beside it, the
CPU the command's processes spent per event (user + system, children included) and the
report's own rate (its processing loop alone). ``bench/processor.py`` times the batch
processor without the command around it.

    python bench/backtest.py [--events 200000] [--rounds 3] [--jobs 1] [--batch-size 20000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    import _path  # noqa: F401

from bench import common
from bench.common import headline, history, median


def history_file(events: int) -> Path:
    """The simulated history of ``events`` lines as a JSONL file (cached beside the lines)."""
    lines = history(events)
    path = common.CACHE / f"backtest-history-{events}.jsonl"
    if not path.exists() or path.stat().st_size != sum(len(x) + 1 for x in lines):
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(b"".join(x + b"\n" for x in lines))
        tmp.replace(path)
    return path


@dataclass
class Run:
    jobs: int
    events: int
    seconds: float  # wall clock of the whole command
    cpu_seconds: float  # user + system of the command and its children
    report: dict[str, Any]  # the --json report, without its timings
    loop_events_per_s: float  # the report's own rate: its processing loop alone
    alerts_digest: str  # every alert written, in order, without the wall-clock detected_at

    @property
    def per_s(self) -> float:
        return self.events / self.seconds

    @property
    def cpu_us_per_event(self) -> float:
        return 1e6 * self.cpu_seconds / self.events


def run_command(path: Path, jobs: int, batch_size: int = 20_000) -> Run:
    """One ``riskflow backtest`` of ``path`` with ``--jobs jobs``, timed; exits on its failure."""
    alerts = path.with_name(f"{path.stem}-alerts-{os.getpid()}-{jobs}.jsonl")
    cmd = [sys.executable, "-m", "riskflow", "backtest", str(path), "--json", "--jobs", str(jobs)]
    cmd += ["--batch-size", str(batch_size), "--alerts-out", str(alerts)]
    env = dict(os.environ, PYTHONPATH=str(common.ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=common.ROOT)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        sys.exit(f"riskflow backtest --jobs {jobs} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    report = json.loads(proc.stdout)
    digest = hashlib.blake2b(digest_size=8)
    try:
        for line in alerts.read_bytes().splitlines():
            whole = json.loads(line)
            whole.pop("detected_at", None)
            digest.update(json.dumps(whole, sort_keys=True).encode())
    finally:
        alerts.unlink(missing_ok=True)
    loop_rate = report.pop("events_per_second") or 0.0
    report.pop("seconds")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Run(jobs, report["events"], seconds, cpu, report, loop_rate, digest.hexdigest())


def describe(run: Run) -> str:
    return (
        f"--jobs {run.jobs}: {run.per_s:,.0f} ev/s ({run.events:,} events in {run.seconds:.2f}s, "
        f"CPU {run.cpu_us_per_event:.1f} µs/event; its processing loop {run.loop_events_per_s:,.0f} ev/s), "
        f"{run.report['alerts']:,} alerts"
    )


def main(argv: list[str] | None = None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=20_000)
    args = ap.parse_args(argv)

    path = history_file(args.events)
    rates = []
    for r in range(args.rounds):
        run = run_command(path, args.jobs, args.batch_size)
        rates.append(run.per_s)
        print(f"round {r + 1}: riskflow backtest {describe(run)}", flush=True)
    value = median(rates)
    headline("backtest_events_per_s", value, 0)
    return value


if __name__ == "__main__":
    main()
