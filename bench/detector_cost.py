"""Cost of each detector kind alone: its ``process`` over the events it applies to.

The history (a JSONL file, or a simulated one) is parsed once; then, per kind
(threshold, window, surge, ..., ``daily``), every detector of that kind runs
over the events it applies to in order, with a per-entity state, as the engine
would call it (no engine, no risk index, no codec). Prints CPU µs per call and
a digest of the signals per kind (equal digests: equal findings), the best of
``--rounds``, and ends with the sum over kinds in µs per event of the history.
CPU time (``time.process_time``), so that a busy machine disturbs it less; for
load-independent figures run it under ``valgrind --tool=cachegrind`` with
``--rounds 1`` and ``--kinds`` (``--none`` runs the same set-up without the
detectors, to subtract).

    python bench/detector_cost.py [--file history.jsonl | --events 20000] [--rounds 3] [--kinds daily,window]
"""

from __future__ import annotations

import argparse
import hashlib
import time
from collections import defaultdict
from pathlib import Path

if __package__ in (None, ""):
    import _path  # noqa: F401

from bench.common import headline, history
from detectors.anomaly import anomaly_detectors
from detectors.base import Detector
from detectors.rules import load_pack
from riskflow.core.schema import Event, parse_event


def run_kind(work: list[tuple[Detector, list[Event]]]) -> tuple[float, int, str]:
    """(CPU seconds, signals, digest of the signals) of one pass of a kind's detectors."""
    found = []
    c0 = time.process_time()
    for det, events in work:
        states: dict[str, object] = {}
        process, init = det.process, det.init_state
        for e in events:
            state, signals = process(states.get(e.entity_id) or init(), e)
            states[e.entity_id] = state
            if signals:
                found.append(signals)
    cpu = time.process_time() - c0
    flat = [(s.detector_id, s.key, s.severity, s.score, sorted(s.evidence.items(), key=str)) for g in found for s in g]
    return cpu, len(flat), hashlib.blake2b(repr(flat).encode(), digest_size=6).hexdigest()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--file", type=Path, help="a JSONL history (default: a simulated one of --events)")
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--kinds", default="", help="comma-separated kinds (default: all)")
    ap.add_argument("--none", action="store_true", help="set up only, run no detector (to subtract)")
    args = ap.parse_args(argv)
    lines = args.file.read_bytes().splitlines() if args.file else history(args.events)
    events = [e for e in (parse_event(line, now=4e9) for line in lines if line.strip()) if isinstance(e, Event)]
    by_kind: dict[str, list[Detector]] = defaultdict(list)
    for det in [*load_pack().detectors, *anomaly_detectors(None)]:
        by_kind[getattr(det, "kind", "detector")].append(det)
    wanted = set(filter(None, args.kinds.split(","))) or set(by_kind)
    total = 0.0
    for kind in sorted(wanted & set(by_kind)):
        work = [(d, [e for e in events if d.applies_to(e)]) for d in by_kind[kind]]
        if args.none:
            continue
        calls = sum(len(evs) for _, evs in work)
        runs = [run_kind(work) for _ in range(args.rounds)]
        cpu = min(r[0] for r in runs)
        total += cpu
        print(
            f"{kind:18s} calls={calls:7d} cpu_s={cpu:.3f} us_per_call={1e6 * cpu / max(calls, 1):6.2f} "
            f"signals={runs[0][1]} digest={runs[0][2]}",
            flush=True,
        )
    headline("detectors_cpu_us_per_event", 1e6 * total / max(len(events), 1), 2)


if __name__ == "__main__":
    main()
