"""Run every benchmark in turn, then repeat their headline lines together.

    python bench/run_all.py [--quick] [--only latency,pipeline]

Each benchmark runs as its own process (clean memory, its own broker) and
ends with its ``name=value`` headline line(s); ``--quick`` passes small sizes,
for a smoke run. The summary gives, per script, its headlines and the load
average at its start and end (the machine is shared: a figure is read beside
the load it was measured under), then the ratios of issue 23 one per line,
each from its one run above, and the machine line (cores, load at the start
and the end of the whole run).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: A headline: ``name=value`` (bench/common.py ``headline``).
_HEADLINE = re.compile(r"^[a-z][a-z0-9_]*=\S+$")
#: The issue's figures, in its order: (headline name, script that prints it).
ISSUE_RATIOS: list[tuple[str, str]] = [
    ("backtest_jobs2_vs_jobs1", "backtest_jobs.py"),
    ("worker_processes2_vs_1", "scaleout.py"),
    ("latency_p99_vs_relay", "latency.py"),
    ("pipeline_vs_raw_ratio", "pipeline.py"),
    ("backtest_events_per_s", "backtest.py"),
    ("columnar_vs_current_cpu_ratio", "columnar_bench.py"),
]

#: script -> arguments of a quick run
BENCHES: dict[str, list[str]] = {
    "parse.py": ["--events", "5000", "--rounds", "1"],
    "processor.py": ["--events", "5000", "--rounds", "1"],
    "backtest.py": ["--events", "5000", "--rounds", "1"],
    "backtest_jobs.py": ["--events", "5000", "--rounds", "1", "--batch-size", "1000"],
    # needs the compiled build (RISKFLOW_COMPILE=1 pip install -e .): skipped without it
    "compiled.py": ["--events", "5000", "--rounds", "1"],
    "memory.py": ["--sizes", "1000,10000", "--history", "5000"],
    "pipeline.py": ["--events", "5000", "--rounds", "1"],
    "latency.py": ["--rate", "200", "--seconds", "5", "--warmup", "3", "--rounds", "1"],
    "scaleout.py": ["--events", "5000", "--rounds", "1"],
    "produce.py": ["--records", "500", "--rounds", "1"],
    "broker_hop.py": ["--rate", "200", "--seconds", "3", "--warmup", "1", "--rounds", "1"],
    # the execution-model prototype (bench/columnar); the full run also counts instructions under valgrind
    "columnar_bench.py": ["--events", "5000", "--rounds", "1", "--no-instructions"],
}
#: Scripts that need an argument (not run by default): bench/ab.py BASE compares two checkouts.


def _compiled_build() -> bool:
    code = "import detectors, sys; sys.exit(0 if detectors.compiled() else 1)"
    return subprocess.run([sys.executable, "-c", code], cwd=HERE.parent).returncode == 0


def headlines(out: str) -> list[str]:
    """The headline lines that end a script's output (one, or several in a row).

    >>> headlines("round 1: 3 ms\\nlatency_p99_vs_raw=1.5\\nlatency_p99_vs_relay=1.1\\n")
    ['latency_p99_vs_raw=1.5', 'latency_p99_vs_relay=1.1']
    >>> headlines("no headline at the end\\n")
    []
    """
    lines = out.strip().splitlines()
    n = 0
    while n < len(lines) and _HEADLINE.match(lines[len(lines) - 1 - n]):
        n += 1
    return lines[len(lines) - n :]


def _load() -> str:
    return f"{os.getloadavg()[0]:.2f}"


def issue_lines(results: dict[str, tuple[list[str], str]]) -> list[str]:
    """One line per figure of :data:`ISSUE_RATIOS`: its headline and the load it ran under,
    else why it is missing. ``results``: script -> (its headlines, its load note, or why none).

    >>> issue_lines({"latency.py": (["latency_p99_vs_relay=1.10"], "load 2.00 -> 2.50")})[2]
    'latency_p99_vs_relay=1.10  (bench/latency.py; load 2.00 -> 2.50)'
    >>> issue_lines({})[0]
    'backtest_jobs2_vs_jobs1: not run (bench/backtest_jobs.py)'
    """
    out = []
    for name, script in ISSUE_RATIOS:
        if script not in results:
            out.append(f"{name}: not run (bench/{script})")
            continue
        heads, note = results[script]
        found = [h for h in heads if h.partition("=")[0] == name]
        if found:
            out.append(f"{found[0]}  (bench/{script}; {note})")
        elif heads:  # the script names its figure otherwise: shown as it is
            out.append(f"{name}: see {heads[-1]}  (bench/{script}; {note})")
        else:
            out.append(f"{name}: missing (bench/{script} {note})")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="run all RiskFlow benchmarks")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: checks that the scripts run")
    ap.add_argument("--only", default="", help="comma-separated script names to run")
    args = ap.parse_args(argv)
    heads: list[str] = []
    results: dict[str, tuple[list[str], str]] = {}
    failed = 0
    load_at_start = _load()
    for script, quick in BENCHES.items():
        if args.only and script.removesuffix(".py") not in args.only.split(","):
            continue
        print(f"== {script}", flush=True)
        if script == "compiled.py" and not _compiled_build():
            heads.append(f"{script}: skipped (the compiled build is not installed)")
            continue
        before = _load()
        proc = subprocess.run(
            [sys.executable, str(HERE / script), *(quick if args.quick else [])],
            stdout=subprocess.PIPE,
            text=True,
        )
        note = f"load {before} -> {_load()}"
        sys.stdout.write(proc.stdout)
        found = headlines(proc.stdout)
        if proc.returncode or not found:
            failed += 1
            heads.append(f"{script}: FAILED (exit {proc.returncode}; {note})")
            results[script] = ([], f"FAILED, exit {proc.returncode}; {note}")
        else:
            heads.extend(f"{h}  ({script}; {note})" for h in found)
            results[script] = (found, note)
    print("== summary")
    print("\n".join(heads))
    print("== issue 23")
    print("\n".join(issue_lines(results)))
    print(
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average {load_at_start} at the start, {_load()} at the end"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
