"""Run every benchmark in turn, then repeat their headline lines together.

    python bench/run_all.py [--quick]

Each benchmark runs as its own process (clean memory, its own broker) and
ends with one ``name=value`` line; ``--quick`` passes small sizes, for a
smoke run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

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
}
#: Scripts that need an argument (not run by default): bench/ab.py BASE compares two checkouts.


def _compiled_build() -> bool:
    code = "import detectors, sys; sys.exit(0 if detectors.compiled() else 1)"
    return subprocess.run([sys.executable, "-c", code], cwd=HERE.parent).returncode == 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="run all RiskFlow benchmarks")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: checks that the scripts run")
    ap.add_argument("--only", default="", help="comma-separated script names to run")
    args = ap.parse_args(argv)
    heads: list[str] = []
    failed = 0
    for script, quick in BENCHES.items():
        if args.only and script.removesuffix(".py") not in args.only.split(","):
            continue
        print(f"== {script}", flush=True)
        if script == "compiled.py" and not _compiled_build():
            heads.append(f"{script}: skipped (the compiled build is not installed)")
            continue
        proc = subprocess.run(
            [sys.executable, str(HERE / script), *(quick if args.quick else [])],
            stdout=subprocess.PIPE,
            text=True,
        )
        sys.stdout.write(proc.stdout)
        lines = proc.stdout.strip().splitlines()
        if proc.returncode or not lines or "=" not in lines[-1]:
            failed += 1
            heads.append(f"{script}: FAILED (exit {proc.returncode})")
        else:
            heads.append(lines[-1])
    print("== summary")
    print("\n".join(heads))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
