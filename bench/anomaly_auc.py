"""Quality of the anomaly detectors on labelled simulated histories, next to the rules.

    .venv/bin/python bench/anomaly_auc.py --entities 400 --days 180 --share 0.05 --seeds 7 8 9 [--peer]

Each seed simulates a history (``--share X``: a share X of the population in
EVERY scenario, benign look-alikes included) and runs it through
``build_processor`` (the worker's and the backtest's processor: rule pack,
anomaly detectors, risk index). With ``--peer``, a peer-group model is first
trained (``riskflow train``) on another history of the same size (seed + 1000),
so ``anomaly.peer`` runs too.

Entities are *scenario* entities (labelled failures), *look-alikes*
(``benign_lookalike``: healthy firms with harmless spikes) and *normal* ones.
Per detector group (``rules``, ``anomaly.daily``, ``anomaly.peer``) it reports,
over the whole history, distinct alerts per entity and the share of entities
alerted in each class; in the *window that matters* (onset -> failure for a
scenario entity; for every normal entity and look-alike, a window of the same
length and position, borrowed from a scenario entity chosen by a hash of its id,
and for a look-alike starting at its own onset, i.e. over its spike), the
recall per scenario, the share of negatives alerted, the alert precision and
ROC AUC (an entity's score: the highest score of the group's alerts in the
window, 0 without one; rules score by severity). For the peer model it also
counts scenario entities that it alerts in the window *before* any rule does or
that no rule alerts at all (what it adds over the rules).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import statistics
import time
import zlib
from collections import defaultdict
from typing import Any

if __package__ in (None, ""):
    import _path  # noqa: F401

import msgspec

from detectors.anomaly import anomaly_detectors
from detectors.engine import Engine
from detectors.pipeline import BatchProcessor, RawMessage
from riskflow.simulate import simulate

GROUPS = ("rules", "anomaly.daily", "anomaly.peer")
_SEVERITY_SCORE = {"low": 0.25, "medium": 0.5, "high": 0.75, "critical": 1.0}


def roc_auc(pos: list[float], neg: list[float]) -> float:
    """Probability that a random positive outranks a random negative (ties count half)."""
    if not pos or not neg:
        return float("nan")
    wins = 0.0
    for p in pos:
        for n in neg:
            wins += 1.0 if p > n else 0.5 if p == n else 0.0
    return wins / (len(pos) * len(neg))


def entity_scores(events: list[dict], detectors=None) -> tuple[dict[str, float], int, float]:  # type: ignore[no-untyped-def]
    """Highest anomaly score per entity over the whole history (anomaly detectors only)."""
    bp = BatchProcessor(Engine(detectors or anomaly_detectors()))
    best: dict[str, float] = defaultdict(float)
    t0 = time.perf_counter()
    alerts = run_alerts(bp, events)
    for a in alerts.values():
        best[a["entity"]] = max(best[a["entity"]], a["score"])
    return best, len(alerts), time.perf_counter() - t0


def _ts(iso: str) -> float:
    return _dt.datetime.fromisoformat(iso).timestamp()


def run_alerts(bp: BatchProcessor, events: list[dict]) -> dict[str, dict[str, Any]]:
    """Distinct alerts (by id; an episode's revisions count once): entity, group, first event time, score."""
    enc = msgspec.json.Encoder()
    msgs = [RawMessage(enc.encode(e), "t", 0, i, None) for i, e in enumerate(events)]
    states: dict = {}
    out: dict[str, dict[str, Any]] = {}
    for i in range(0, len(msgs), 1000):
        res = bp.process(msgs[i : i + 1000], states.get, now=4e9)
        for eid, (st, _) in res.states.items():
            states[eid] = st
        for a in res.alerts:
            group = a.rule_id if a.rule_id.startswith("anomaly.") else "rules"
            score = float(a.evidence.get("score", 0.0)) if group != "rules" else _SEVERITY_SCORE.get(a.severity, 0.5)
            prev = out.get(a.alert_id)
            t = _ts(a.event_time)
            if prev is None:
                out[a.alert_id] = {"entity": a.entity_id, "group": group, "t": t, "score": score}
            else:
                prev["t"] = min(prev["t"], t)
                prev["score"] = max(prev["score"], score)
    return out


def evaluate(events: list[dict], labels: list[dict], alerts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per group: whole-history and in-window figures (see module doc)."""
    entities = sorted({e["entity_id"] for e in events})
    scen: dict[str, str] = {}
    window: dict[str, tuple[float, float]] = {}
    benign_onset: dict[str, float] = {}
    for lab in labels:
        if lab.get("normal"):
            benign_onset[lab["entity_id"]] = _ts(lab["onset_time"])
        else:
            scen[lab["entity_id"]] = lab["scenario"]
            window[lab["entity_id"]] = (_ts(lab["onset_time"]), _ts(lab["failure_time"]))
    normal = [e for e in entities if e not in scen and e not in benign_onset]
    benign = sorted(benign_onset)
    by_ent: dict[str, dict[str, list[dict[str, Any]]]] = {g: defaultdict(list) for g in GROUPS}
    for a in alerts.values():
        by_ent[a["group"]][a["entity"]].append(a)
    scenarios = sorted(set(scen.values()))
    members = {s: sorted(e for e, n in scen.items() if n == s) for s in scenarios}

    def neg_window(e: str, s: str) -> tuple[float, float]:
        donor = members[s][zlib.crc32(e.encode()) % len(members[s])]
        t0, t1 = window[donor]
        if e in benign_onset:
            return benign_onset[e], benign_onset[e] + (t1 - t0)
        return t0, t1

    def in_window(g: str, e: str, w: tuple[float, float]) -> list[dict[str, Any]]:
        return [a for a in by_ent[g].get(e, ()) if w[0] <= a["t"] <= w[1]]

    out: dict[str, Any] = {
        "n": {"scenario": len(scen), "benign": len(benign), "normal": len(normal)},
        "groups": {},
    }
    for g in GROUPS:
        ents = by_ent[g]
        total = sum(len(v) for v in ents.values())
        r: dict[str, Any] = {"alerts": total}
        for cls, ids in (("scenario", sorted(scen)), ("benign", benign), ("normal", normal)):
            r[f"{cls}_alerts_per_entity"] = sum(len(ents.get(e, ())) for e in ids) / max(1, len(ids))
            r[f"{cls}_alerted"] = sum(1 for e in ids if ents.get(e))
        hits = sum(len(in_window(g, e, window[e])) for e in scen)
        r["precision"] = hits / total if total else float("nan")
        per: dict[str, Any] = {}
        for s in scenarios:
            pos = [max((a["score"] for a in in_window(g, e, window[e])), default=0.0) for e in members[s]]
            negb = [max((a["score"] for a in in_window(g, e, neg_window(e, s))), default=0.0) for e in benign]
            negn = [max((a["score"] for a in in_window(g, e, neg_window(e, s))), default=0.0) for e in normal]
            per[s] = {
                "n": len(pos),
                "recall": sum(1 for p in pos if p > 0) / len(pos),
                "auc": roc_auc(pos, negn + negb),
                "auc_vs_benign": roc_auc(pos, negb),
                "neg_alerted_normal": sum(1 for v in negn if v > 0) / max(1, len(negn)),
                "neg_alerted_benign": sum(1 for v in negb if v > 0) / max(1, len(negb)),
            }
        r["scenarios"] = per
        if g != "rules":
            inf = float("inf")
            first_rule = {e: min((a["t"] for a in in_window("rules", e, window[e])), default=inf) for e in scen}
            mine = {e: min((a["t"] for a in in_window(g, e, window[e])), default=inf) for e in scen}
            r["adds_uncaught"] = sum(1 for e in scen if mine[e] < inf and first_rule[e] == inf)
            r["adds_earlier"] = sum(1 for e in scen if mine[e] < first_rule[e] < inf)
        out["groups"][g] = r
    return out


def _fmt(x: float) -> str:
    return "  nan" if x != x else f"{x:5.2f}"


def report(results: list[dict[str, Any]], seeds: list[int], groups: tuple[str, ...]) -> None:
    n = results[0]["n"]
    print(f"seeds {seeds}; per seed ~{n['scenario']} scenario, {n['benign']} look-alike, {n['normal']} normal entities")
    for g in groups:
        rs = [r["groups"][g] for r in results]
        print(f"\n== {g} ==   (mean over seeds; per seed in [])")
        for key in (
            "alerts",
            "scenario_alerts_per_entity",
            "benign_alerts_per_entity",
            "normal_alerts_per_entity",
            "scenario_alerted",
            "benign_alerted",
            "normal_alerted",
            "precision",
            "adds_uncaught",
            "adds_earlier",
        ):
            if key not in rs[0]:
                continue
            vals = [r[key] for r in rs]
            print(f"  {key:28s} {statistics.fmean(vals):8.3f}  [{', '.join(f'{v:.3g}' for v in vals)}]")
        print(
            "  in window:  scenario              n  recall   AUC  AUC(vs look-alikes)  neg alerted: normal  look-alike"
        )
        for s in rs[0]["scenarios"]:
            ps = [r["scenarios"][s] for r in rs if s in r["scenarios"]]

            def m(k: str, ps: list[dict[str, Any]] = ps) -> float:
                v = [p[k] for p in ps if p[k] == p[k]]
                return statistics.fmean(v) if v else float("nan")

            print(
                f"    {s:26s} {sum(p['n'] for p in ps):4d}  {_fmt(m('recall'))}  {_fmt(m('auc'))}"
                f"  {_fmt(m('auc_vs_benign'))}{'':14s}{_fmt(m('neg_alerted_normal'))}  {_fmt(m('neg_alerted_benign'))}"
            )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entities", type=int, default=400)
    ap.add_argument("--days", type=int, default=180)
    ap.add_argument("--seeds", type=int, nargs="+", default=[7, 8, 9])
    ap.add_argument("--share", type=float, default=0.05, help="share of the population in EACH scenario")
    ap.add_argument("--peer", action="store_true", help="train a peer model on seed+1000 and run it too")
    args = ap.parse_args()
    from detectors.factory import build_processor
    from detectors.rules import load_pack
    from riskflow.sim import SCENARIOS

    mix = {name: args.share for name in SCENARIOS}
    pack = load_pack()
    results = []
    for seed in args.seeds:
        model = None
        if args.peer:
            import tempfile

            from riskflow.commands.train import train
            from riskflow.core.schema import encode_event

            hist, _ = simulate(entities=args.entities, days=args.days, seed=seed + 1000, scenarios=mix)
            with tempfile.TemporaryDirectory() as tmp:
                model = train([encode_event(e) for e in hist], tmp)
        events, labels = simulate(entities=args.entities, days=args.days, seed=seed, scenarios=mix)
        t0 = time.perf_counter()
        alerts = run_alerts(build_processor(pack, model=model), events)
        print(f"seed {seed}: {len(events)} events, {len(alerts)} alerts, {time.perf_counter() - t0:.1f} s")
        results.append(evaluate(events, labels, alerts))
    report(results, args.seeds, GROUPS if args.peer else GROUPS[:2])


if __name__ == "__main__":
    main()
