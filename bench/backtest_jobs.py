"""``riskflow backtest --jobs 2`` ÷ ``--jobs 1``: the same command over the same file, same run.

Each round runs the command once with each count, in alternating order (round 1: 1 then
2; round 2: 2 then 1; ...), so a change in the machine's load during the run does not
favour one side. The two must agree — the report (all but its timings) and every alert
(all but the wall-clock ``detected_at``, in order) — or the script fails. The headline
is the median of the rounds' ratios of wall-clock rates; beside it, the CPU per event of
each (the parallel run pays for its exchange of batches and links, and for idle waits at
each batch's barrier only in wall time).

    python bench/backtest_jobs.py [--events 200000] [--rounds 3] [--batch-size 20000]
"""

from __future__ import annotations

import argparse
import sys

if __package__ in (None, ""):
    import _path  # noqa: F401

from bench.backtest import Run, describe, history_file, run_command
from bench.common import headline, median


def main(argv: list[str] | None = None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=20_000)
    args = ap.parse_args(argv)
    if args.events <= args.batch_size:
        sys.exit("--events must exceed --batch-size: a history of one batch runs in one process")

    path = history_file(args.events)
    ratios = []
    for r in range(args.rounds):
        runs: dict[int, Run] = {}
        for jobs in (1, 2) if r % 2 == 0 else (2, 1):
            runs[jobs] = run_command(path, jobs, args.batch_size)
        one, two = runs[1], runs[2]
        if (one.report, one.alerts_digest) != (two.report, two.alerts_digest):
            sys.exit(
                f"round {r + 1}: --jobs 2 and --jobs 1 disagree (alerts {two.alerts_digest} vs {one.alerts_digest})"
            )
        ratios.append(two.per_s / one.per_s)
        print(
            f"round {r + 1}: {describe(one)}; {describe(two)}; ratio {ratios[-1]:.3f}, same report and alerts",
            flush=True,
        )
    value = median(ratios)
    headline("backtest_jobs2_vs_jobs1", value)
    return value


if __name__ == "__main__":
    main()
