"""Cost of the rule pack: the batch pipeline with the full pack ÷ with the three seed rules.

The same simulated history goes through ``detectors.factory.build_processor``
offline (no broker: parse, dedup, rules, risk index, Kafka-like partitions so
timed rules follow partitions), once with the whole pack and once with only
the three rules the project started with (``pf.guaranteed_return``,
``pf.unqualified_investor``, ``pf.amac_lost_contact``), alternating, several
rounds. Anomaly detectors are off in both, to isolate the rules. Prints both
rates and the ratio (full ÷ seed; 1.0 = the pack costs nothing).

    python bench/rules.py [--events 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import time

if __package__ in (None, ""):
    import _path  # noqa: F401

from bench.common import headline, history, median
from detectors.factory import build_processor
from detectors.pipeline import RawMessage
from detectors.rules import RulePack, load_pack
from riskflow.core.partitioning import partition_for

SEED_RULES = {"pf.guaranteed_return", "pf.unqualified_investor", "pf.amac_lost_contact"}


def messages(lines: list[bytes], partitions: int = 4) -> list[RawMessage]:
    out = []
    for i, line in enumerate(lines):
        d = json.loads(line)
        key = d["entity_id"].encode()
        topic = "funds" if d["entity_kind"] in ("private_fund", "private_fund_manager") else "inst"
        out.append(RawMessage(line, topic, partition_for(key, partitions), i, key))
    return out


def rate(pack: RulePack, msgs: list[RawMessage], batch: int = 1000) -> tuple[float, int]:
    bp = build_processor(pack, anomaly=False)
    store: dict = {}
    alerts = 0
    t0 = time.perf_counter()
    for i in range(0, len(msgs), batch):
        res = bp.process(msgs[i : i + batch], store.get, now=4e9)
        alerts += len(res.alerts)
        store.update({k: v for k, (v, _) in res.states.items()})
    return len(msgs) / (time.perf_counter() - t0), alerts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    msgs = messages(history(args.events))
    full = load_pack()
    seed = RulePack(full.version, [r for r in full.detectors if r.id in SEED_RULES], full.constants, full.files)
    ratios = []
    for r in range(args.rounds):
        s_rate, s_alerts = rate(seed, msgs)
        f_rate, f_alerts = rate(full, msgs)
        ratios.append(f_rate / s_rate)
        print(
            f"round {r + 1}: {len(msgs)} events; seed rules ({len(seed.detectors)}) {s_rate:,.0f} ev/s, "
            f"{s_alerts} alerts; full pack ({len(full.detectors)}) {f_rate:,.0f} ev/s, {f_alerts} alerts; "
            f"ratio {ratios[-1]:.3f}",
            flush=True,
        )
    headline("rules_full_over_seed_throughput", median(ratios))


if __name__ == "__main__":
    main()
