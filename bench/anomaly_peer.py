"""Peer-group model candidates against the rules, on labelled simulated histories.

    .venv/bin/python bench/anomaly_peer.py --entities 400 --days 180 --share 0.05 --seeds 7 8 9

For each seed, candidates are fitted per entity kind on a *training* history
(seed + 1000, the simulator's default scenario mix: a realistic few failing
entities among healthy ones) and applied to a *test* history (``--share`` of the
population in every scenario). Rows are the peer detector's own weekly feature
vectors (``detectors/anomaly/peer.py``: prudential ratios and 30-day activity
rates) past its warm-up; ``prud`` candidates use the prudential features only,
on weeks after a first report; ``+delta`` adds each ratio's change since the
previous report and loans / related-party loans to net assets.

Scorers (robust-scaled features: median, 1.4826 MAD floored): ``zmax`` (largest
|robust z|), ``iforest`` (scikit-learn IsolationForest, 100 trees), ``lof``
(LocalOutlierFactor(n_neighbors=20, novelty=True)). Each threshold is the 99th
percentile of the training entities' highest score (so ~1 % of healthy entities
are flagged over a training-length window).

Reported per candidate, mean over seeds: recall in the window that matters
(onset -> failure), per scenario; ``earlier``: scenario entities flagged in the
window before any rule alerted them (the rules alert every scenario entity in
its window, so nothing is *uncaught* by them); the share of normal entities and
of benign look-alikes flagged at any time.
"""

from __future__ import annotations

import argparse
import math
import statistics
from collections import defaultdict
from collections.abc import Callable
from typing import Any

if __package__ in (None, ""):
    import _path  # noqa: F401

import numpy as np

from bench.anomaly_auc import _ts, run_alerts
from detectors.anomaly.peer import PRUDENTIAL, WARMUP_DAYS, PeerGroupDetector, features
from riskflow.core.schema import InvalidEvent, encode_event, parse_event
from riskflow.simulate import simulate

Row = tuple[str, str, float, dict[str, float]]  # entity, kind, week-close time, features
_RATIOS = ("borrowed_to_net_assets", "related_party_loan_share")
_LEVELS = (*PRUDENTIAL, *_RATIOS, "log_loan_balance")


def weekly_rows(events: list[dict]) -> list[Row]:
    """Every closed event-time week past the warm-up, with report deltas and net-asset ratios."""
    evs = []
    for e in events:
        try:
            evs.append(parse_event(encode_event(e), now=1e12))
        except InvalidEvent:
            continue
    evs.sort(key=lambda e: e.ts)
    det = PeerGroupDetector()
    states: dict[str, Any] = {}
    prev: dict[str, dict[str, float]] = {}
    extra: dict[str, dict[str, float]] = {}
    out: list[Row] = []
    for ev in evs:
        st = states.get(ev.entity_id)
        if st is None:
            st = states[ev.entity_id] = det.init_state()
        fs = st["f"]
        closes = st["wk"] >= 0 and (int((ev.ts + 8 * 3600) // 86400) + 3) // 7 > st["wk"]
        if closes and fs["d"] - fs["first"] >= WARMUP_DAYS:
            f = features(fs)
            before = prev.get(ev.entity_id, {})
            for k in (*PRUDENTIAL, *_RATIOS):
                if k in f and k in before:
                    f[f"d_{k}"] = f[k] - before[k]
            f.update(extra.get(ev.entity_id, {}))
            out.append((ev.entity_id, ev.entity_kind, ev.ts, f))
        if ev.event_type == "report.prudential":
            if fs["p"]:
                prev[ev.entity_id] = dict(fs["p"])
            p: Any = ev.payload
            if p.net_assets and p.net_assets > 0:
                x = extra.setdefault(ev.entity_id, {})
                if p.loan_balance is not None:
                    x["loan_to_net_assets"] = p.loan_balance / p.net_assets
                if p.related_party_loans is not None:
                    x["related_loans_to_net_assets"] = p.related_party_loans / p.net_assets
        det.process(st, ev)
    return out


def _matrix(rows: list[Row], feats: list[str], med: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    X = np.array([[r[3].get(f, np.nan) for f in feats] for r in rows], dtype=float)
    if med is None:
        med = np.nanmedian(X, axis=0)
        med = np.where(np.isfinite(med), med, 0.0)
    return np.where(np.isfinite(X), X, med), med


def _scaled(train: list[Row], test: list[Row], feats: list[str]) -> tuple[np.ndarray, np.ndarray]:
    Xt, med = _matrix(train, feats)
    Xs, _ = _matrix(test, feats, med)
    mad = np.median(np.abs(Xt - med), axis=0) * 1.4826
    spread = (np.quantile(Xt, 0.99, axis=0) - np.quantile(Xt, 0.01, axis=0)) / 4.65
    sc = np.maximum.reduce([mad, spread, 0.1 * np.abs(med), np.full_like(mad, 1e-6)])
    return (Xt - med) / sc, (Xs - med) / sc


def zmax(Zt: np.ndarray, Zs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.max(np.abs(Zt), axis=1), np.max(np.abs(Zs), axis=1)


def iforest(Zt: np.ndarray, Zs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.ensemble import IsolationForest

    m = IsolationForest(n_estimators=100, max_samples=min(256, len(Zt)), random_state=0).fit(Zt)
    return -m.score_samples(Zt), -m.score_samples(Zs)


def lof(Zt: np.ndarray, Zs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.neighbors import LocalOutlierFactor

    m = LocalOutlierFactor(n_neighbors=min(20, len(Zt) - 1), novelty=True).fit(Zt)
    return -m.score_samples(Zt), -m.score_samples(Zs)


SCORERS: dict[str, Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]] = {
    "zmax": zmax,
    "iforest": iforest,
    "lof": lof,
}
FEATURE_SETS = ("prud", "prud+delta", "all", "all+delta")


def _features(rows: list[Row], name: str) -> list[str]:
    have = sorted({k for r in rows for k in r[3]})
    levels = [f for f in have if f in _LEVELS]
    delta = [f for f in have if f.startswith("d_") or f in ("loan_to_net_assets", "related_loans_to_net_assets")]
    act = [f for f in have if f.endswith("_rate")]
    sets = {"prud": levels, "prud+delta": levels + delta, "all": levels + act, "all+delta": levels + delta + act}
    chosen = sets[name]
    return [f for f in chosen if sum(1 for r in rows if f in r[3]) >= 0.5 * len(rows)]


def flagged_times(train: list[Row], test: list[Row], scorer: str, fset: str) -> dict[str, list[float]]:
    out: dict[str, list[float]] = defaultdict(list)
    for kind in sorted({r[1] for r in train}):
        trk = [r for r in train if r[1] == kind]
        tek = [r for r in test if r[1] == kind]
        if fset.startswith("prud"):  # scored from the first prudential report on
            trk = [r for r in trk if "log_loan_balance" in r[3] or any(k in r[3] for k in PRUDENTIAL)]
            tek = [r for r in tek if "log_loan_balance" in r[3] or any(k in r[3] for k in PRUDENTIAL)]
        if len(trk) < 20 or not tek:
            continue
        feats = _features(trk, fset)
        if not feats:
            continue
        st, ss = SCORERS[scorer](*_scaled(trk, tek, feats))
        best: dict[str, float] = defaultdict(float)
        for r, s in zip(trk, st, strict=True):
            best[r[0]] = max(best[r[0]], float(s))
        thr = float(np.quantile(list(best.values()), 0.99))
        for r, s in zip(tek, ss, strict=True):
            if s > thr:
                out[r[0]].append(r[2])
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entities", type=int, default=400)
    ap.add_argument("--days", type=int, default=180)
    ap.add_argument("--seeds", type=int, nargs="+", default=[7, 8, 9])
    ap.add_argument("--share", type=float, default=0.05)
    args = ap.parse_args(argv)
    from detectors.factory import build_processor
    from detectors.rules import load_pack
    from riskflow.sim import SCENARIOS

    mix = {n: args.share for n in SCENARIOS}
    pack = load_pack()
    res: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for seed in args.seeds:
        train_ev, _ = simulate(entities=args.entities, days=args.days, seed=seed + 1000)
        test_ev, labels = simulate(entities=args.entities, days=args.days, seed=seed, scenarios=mix)
        train, test = weekly_rows(train_ev), weekly_rows(test_ev)
        benign = {lab["entity_id"] for lab in labels if lab.get("normal")}
        scen = {lab["entity_id"]: lab["scenario"] for lab in labels if not lab.get("normal")}
        win = {
            lab["entity_id"]: (_ts(lab["onset_time"]), _ts(lab["failure_time"]))
            for lab in labels
            if not lab.get("normal")
        }
        first_rule: dict[str, float] = {}
        for a in run_alerts(build_processor(pack, anomaly=False), test_ev).values():
            e = a["entity"]
            if e in win and win[e][0] <= a["t"] <= win[e][1]:
                first_rule[e] = min(first_rule.get(e, math.inf), a["t"])
        normal = {e["entity_id"] for e in test_ev} - benign - set(scen)
        for scorer in SCORERS:
            for fset in FEATURE_SETS:
                flags = flagged_times(train, test, scorer, fset)
                first = {
                    e: min((t for t in flags.get(e, ()) if win[e][0] <= t <= win[e][1]), default=math.inf) for e in scen
                }
                r = res[(scorer, fset)]
                r["recall"].append(sum(1 for e in scen if first[e] < math.inf) / len(scen))
                r["earlier"].append(sum(1 for e in scen if first[e] < first_rule.get(e, math.inf)))
                r["normal_flagged"].append(sum(1 for e in normal if e in flags) / len(normal))
                r["benign_flagged"].append(sum(1 for e in benign if e in flags) / len(benign))
                for s in sorted(set(scen.values())):
                    ids = [e for e, n in scen.items() if n == s]
                    r[s].append(sum(1 for e in ids if first[e] < math.inf) / len(ids))
        print(f"seed {seed}: {len(scen)} scenario, {len(benign)} look-alike, {len(normal)} normal entities")
    scen_names = sorted(k for k in next(iter(res.values())) if k not in ("recall", "earlier") and "_flagged" not in k)
    print(f"{'candidate':20s} recall earlier normal_fp benign_fp  " + " ".join(n[:10] for n in scen_names))
    for (scorer, fset), r in res.items():
        m = {k: statistics.fmean(v) for k, v in r.items()}
        print(
            f"{scorer + ' ' + fset:20s} {m['recall']:6.2f} {m['earlier']:7.2f} {m['normal_flagged']:9.3f}"
            f" {m['benign_flagged']:9.3f}  " + " ".join(f"{m[n]:10.2f}" for n in scen_names)
        )


if __name__ == "__main__":
    main()
