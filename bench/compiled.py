"""The compiled build ÷ pure Python: the offline processor over the same history, side by side.

Each round runs both variants, each in its own fresh subprocess, over the same history
file: the pure one imports the compiled build's modules (``detectors.MYPYC_MODULES``)
from their ``.py`` source (``bench/purepy.py``), the compiled one uses the extension
modules that ``RISKFLOW_COMPILE=1 pip install -e .`` built next to them. The loop is
``bench/offline_run.py``'s (``bench/processor.py``'s loop, shared with ``bench/ab.py``).
Each child reports events/s, the modules it ran compiled, and a digest of its whole
output: every alert (all fields but the wall-clock ``detected_at``, in emission order)
and the msgpack bytes of every entity's final state. The variants must agree on it.

Ends with ``compiled_vs_pure_ratio`` = median compiled events/s ÷ median pure events/s.
Exits with an error when the compiled build is not installed or the outputs differ.

    python bench/compiled.py [--events 100000] [--rounds 3] [--batch 1000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

if __package__ in (None, ""):
    import _path  # noqa: F401

HERE = Path(__file__).resolve().parent


def child(variant: str, path: Path, batch: int) -> dict:
    """One variant's run, in this (fresh) process: what the parent compares."""
    if variant == "pure":
        from bench import purepy

        purepy.install()
    import detectors
    from bench import offline_run

    rep = offline_run.run(path.read_bytes().splitlines(), batch)
    return {
        "variant": variant,
        "compiled": detectors.compiled(),
        "events": rep["events"],
        "seconds": rep["seconds"],
        "alerts": rep["alerts"],
        "digest": f"{rep['alerts_digest']}{rep['states_digest']}",
    }


def run_variant(variant: str, path: Path, batch: int) -> dict:
    """Run one variant in a fresh interpreter and return its report."""
    cmd = [sys.executable, str(HERE / "compiled.py"), "--child", variant, "--file", str(path), "--batch", str(batch)]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--file", type=Path, help="a JSONL history (default: bench/common.py's simulated one)")
    ap.add_argument("--child", choices=("pure", "compiled"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.file, args.batch)), flush=True)
        return 0.0

    from bench.common import CACHE, headline, history, median

    path = args.file
    if path is None:
        lines = history(args.events)
        path = CACHE / f"compiled-bench-{len(lines)}.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
    rates: dict[str, list[float]] = {"pure": [], "compiled": []}
    digests: set[str] = set()
    for r in range(args.rounds):
        for variant in ("pure", "compiled"):
            rep = run_variant(variant, path, args.batch)
            if variant == "pure" and rep["compiled"]:
                raise SystemExit(f"the pure run imported compiled modules: {rep['compiled']}")
            if variant == "compiled" and not rep["compiled"]:
                raise SystemExit("the compiled build is not installed: RISKFLOW_COMPILE=1 pip install -e . (README)")
            rate = rep["events"] / rep["seconds"]
            rates[variant].append(rate)
            digests.add(f"{rep['alerts']}:{rep['digest']}")
            n = len(rep["compiled"])
            print(
                f"round {r + 1}: {variant:8} {rate:,.0f} ev/s ({rep['alerts']} alerts, output {rep['digest']}, "
                f"{n} modules compiled)",
                flush=True,
            )
    if len(digests) != 1:
        raise SystemExit(f"the variants' outputs differ: {sorted(digests)}")
    pure, comp = median(rates["pure"]), median(rates["compiled"])
    print(f"median: pure {pure:,.0f} ev/s, compiled {comp:,.0f} ev/s; same output in every run", flush=True)
    value = comp / pure
    headline("compiled_vs_pure_ratio", value)
    return value


if __name__ == "__main__":
    main()
