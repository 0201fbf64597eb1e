"""Cost of the anomaly detectors on the worker's hot path, side by side with rules only.

    .venv/bin/python bench/anomaly_cost.py --entities 300 --days 120 --rounds 3

The same simulated history goes through ``build_processor`` (the worker's and
the backtest's processor) in batches of 1000, with state carried through the
msgpack codec as in the worker's table: rules only, rules + ``anomaly.daily``
(the default) and rules + ``anomaly.daily`` + ``anomaly.peer`` with a trained
model (opt-in: ``RISKFLOW_MODEL_DIR``). Rounds
are interleaved; the median of each is reported with its ratio to rules only.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

if __package__ in (None, ""):
    import _path  # noqa: F401

from detectors.engine import decode_state, encode_state
from detectors.factory import build_processor
from detectors.pipeline import BatchProcessor, RawMessage
from detectors.rules import load_pack
from riskflow.core.schema import encode_event
from riskflow.simulate import simulate


def run(bp: BatchProcessor, msgs: list[RawMessage]) -> float:
    store: dict[str, bytes] = {}

    def get(k: str):  # type: ignore[no-untyped-def]
        raw = store.get(k)
        return decode_state(raw) if raw is not None else None

    t0 = time.perf_counter()
    for i in range(0, len(msgs), 1000):
        res = bp.process(msgs[i : i + 1000], get, now=4e9)
        for k, (st, _) in res.states.items():
            store[k] = encode_state(st)
    return len(msgs) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entities", type=int, default=300)
    ap.add_argument("--days", type=int, default=120)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    from riskflow.commands.train import train

    hist, _ = simulate(entities=args.entities, days=args.days, seed=99)
    with tempfile.TemporaryDirectory() as tmp:
        model = train([encode_event(e) for e in hist], tmp)
    events, _ = simulate(entities=args.entities, days=args.days, seed=1)
    msgs = [RawMessage(encode_event(e), "t", 0, i, None) for i, e in enumerate(events)]
    pack = load_pack()
    variants = {
        "rules": lambda: build_processor(pack, anomaly=False),
        "rules+daily": lambda: build_processor(pack),  # the default: the peer model is opt-in
        "rules+daily+peer": lambda: build_processor(pack, model=model),
    }
    rates: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.rounds):
        for name, make in variants.items():
            bp = make()
            bp.engine._by_type.clear()
            rates[name].append(run(bp, msgs))
    base = statistics.median(rates["rules"])
    print(f"{len(msgs)} events, {args.rounds} rounds (median events/s, ratio to rules only)")
    for name, r in rates.items():
        m = statistics.median(r)
        print(f"{name:18s} {m:10.0f} ev/s  ratio {m / base:.2f}")
    print(f"peer_opt_in_ratio={statistics.median(rates['rules+daily+peer']) / base:.2f}")
    print(f"anomaly_cost_ratio={statistics.median(rates['rules+daily']) / base:.2f}")


if __name__ == "__main__":
    main()
