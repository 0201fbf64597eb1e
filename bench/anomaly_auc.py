"""Rank entities by anomaly score on a simulated history and report ROC AUC per scenario.

    .venv/bin/python bench/anomaly_auc.py --entities 400 --days 180 --seed 7 [--train-seed 1007] [--share 0.02]

With ``--train-seed``, a peer-group model is first trained (``riskflow train``)
on another simulated history of the same size, and both anomaly detectors run;
without it, only the streaming detector (the peer detector has no model).

An entity's score is the highest score any anomaly detector gave it (from the
alerts' evidence, i.e. flagged observations; 0 if never flagged). Each
labelled scenario is compared against the normal (unlabelled) entities.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

if __package__ in (None, ""):
    import _path  # noqa: F401

import msgspec

from detectors.anomaly import anomaly_detectors
from detectors.engine import Engine
from detectors.pipeline import BatchProcessor, RawMessage
from riskflow.simulate import simulate


def roc_auc(pos: list[float], neg: list[float]) -> float:
    """Probability that a random positive outranks a random negative (ties count half)."""
    if not pos or not neg:
        return float("nan")
    wins = 0.0
    for p in pos:
        for n in neg:
            wins += 1.0 if p > n else 0.5 if p == n else 0.0
    return wins / (len(pos) * len(neg))


def entity_scores(events: list[dict], detectors=None) -> tuple[dict[str, float], int, float]:
    bp = BatchProcessor(Engine(detectors or anomaly_detectors()))
    enc = msgspec.json.Encoder()
    msgs = [RawMessage(enc.encode(e), "t", 0, i, None) for i, e in enumerate(events)]
    states: dict = {}
    best: dict[str, float] = defaultdict(float)
    n_alerts = 0
    t0 = time.perf_counter()
    by_detector: dict[str, int] = defaultdict(int)
    for i in range(0, len(msgs), 1000):
        res = bp.process(msgs[i : i + 1000], lambda e: states.get(e), now=4e9)
        for eid, (st, _) in res.states.items():
            states[eid] = st
        for a in res.alerts:
            n_alerts += 1
            by_detector[a.rule_id] += 1
            best[a.entity_id] = max(best[a.entity_id], float(a.evidence.get("score", 0.0)))
    print("alerts by detector:", dict(by_detector))
    return best, n_alerts, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entities", type=int, default=300)
    ap.add_argument("--days", type=int, default=120)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--train-seed", type=int, default=None)
    ap.add_argument("--share", type=float, default=None, help="share of the population in EACH scenario")
    args = ap.parse_args()
    from riskflow.sim import SCENARIOS

    mix = {name: args.share for name in SCENARIOS} if args.share is not None else None
    detectors = None
    if args.train_seed is not None:
        import tempfile

        from riskflow.commands.train import train
        from riskflow.schema import encode_event

        hist, _ = simulate(entities=args.entities, days=args.days, seed=args.train_seed, scenarios=mix)
        with tempfile.TemporaryDirectory() as tmp:
            model = train([encode_event(e) for e in hist], tmp)
        detectors = anomaly_detectors(model)
        print(f"peer model {model.version} trained on seed {args.train_seed}")
    events, labels = simulate(entities=args.entities, days=args.days, seed=args.seed, scenarios=mix)
    best, n_alerts, secs = entity_scores(events, detectors)
    # Benign look-alikes (labels with "normal": true) are normal entities, reported apart.
    scenario = {lab["entity_id"]: lab["scenario"] for lab in labels}
    benign = {lab["entity_id"] for lab in labels if lab.get("normal")}
    entities = {e["entity_id"] for e in events}
    normal = [best.get(e, 0.0) for e in entities if e not in scenario or e in benign]
    print(f"{len(events)} events, {len(entities)} entities, {n_alerts} anomaly alerts, {secs:.2f} s")
    print(f"normal entities flagged: {sum(1 for s in normal if s > 0)}/{len(normal)}")
    for name in sorted(set(scenario.values())):
        pos = [best.get(e, 0.0) for e, s in scenario.items() if s == name and e not in benign]
        if not pos:
            pos = [best.get(e, 0.0) for e, s in scenario.items() if s == name]
            print(f"benign {name}: n={len(pos)} flagged={sum(1 for s in pos if s > 0)}")
            continue
        flagged = sum(1 for s in pos if s > 0)
        print(f"scenario {name}: n={len(pos)} flagged={flagged} ROC AUC={roc_auc(pos, normal):.3f}")


if __name__ == "__main__":
    main()
