"""The batch processor alone: ``BatchProcessor.process`` over a history, one core, events/s.

Runs the processor of ``detectors.factory.build_processor`` (every detector
the product has) over a simulated history in batches, keeping entity state
in a dict — the loop at the heart of an offline run, without the command around
it (file reading, Kafka placement, state bytes, scoring: ``bench/backtest.py``
times ``riskflow backtest`` itself) — and reports events/s, beside a raw
``orjson.loads`` loop over the same lines in the same run, and beside the same
batch processor with no detector and no risk index (parse, de-duplication,
state, event-time lanes): the per-event floor that detectors add to.

    python bench/processor.py [--events 200000] [--rounds 3] [--batch 1000]
"""

from __future__ import annotations

import argparse
import time

if __package__ in (None, ""):
    import _path  # noqa: F401

import orjson

import detectors
from bench.common import headline, history, median
from detectors.engine import Engine
from detectors.factory import build_processor
from detectors.lateness import DEFAULT_ALLOWED_LATENESS
from detectors.pipeline import BatchProcessor, RawMessage
from detectors.rules import load_pack
from riskflow.core.gctune import tune


def run_offline(lines: list[bytes], batch: int, bp: BatchProcessor | None = None) -> tuple[float, int]:
    """Seconds to process ``lines`` through a fresh processor (default: the product's), and the
    alert count."""
    bp = build_processor(load_pack()) if bp is None else bp
    states: dict = {}
    msgs = [RawMessage(v, "file", 0, i, None) for i, v in enumerate(lines)]
    alerts = 0
    t0 = time.perf_counter()
    for i in range(0, len(msgs), batch):
        res = bp.process(msgs[i : i + batch], states.get)
        for eid, (state, _) in res.states.items():
            states[eid] = state
        alerts += len(res.alerts)
    return time.perf_counter() - t0, alerts


def run_raw(lines: list[bytes]) -> float:
    loads = orjson.loads
    t0 = time.perf_counter()
    for v in lines:
        loads(v)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=1000)
    args = ap.parse_args(argv)

    lines = history(args.events)
    tune()  # as `riskflow backtest` does (riskflow/core/gctune.py)
    rates, ratios, floors = [], [], []
    for r in range(args.rounds):
        raw_s = run_raw(lines)
        # the product's engine settings (de-duplication window, lateness gate), no detector
        floor = BatchProcessor(Engine([], allowed_lateness=DEFAULT_ALLOWED_LATENESS))
        floor_s, _ = run_offline(lines, args.batch, floor)
        secs, alerts = run_offline(lines, args.batch)
        rate = len(lines) / secs
        rates.append(rate)
        ratios.append(raw_s / secs)
        floors.append(len(lines) / floor_s)
        print(
            f"round {r + 1}: batch processor {rate:,.0f} ev/s ({alerts} alerts), "
            f"no detector or risk index {len(lines) / floor_s:,.0f} ev/s, "
            f"orjson.loads alone {len(lines) / raw_s:,.0f} ev/s, ratio {raw_s / secs:.3f}",
            flush=True,
        )
    print(
        f"median processor / orjson-loads ratio: {median(ratios):.3f}; the floor (no detector, no risk "
        f"index): {median(floors):,.0f} ev/s; detectors: {detectors.build()}",
        flush=True,
    )
    value = median(rates)
    headline("processor_events_per_s", value, 0)
    return value


if __name__ == "__main__":
    main()
