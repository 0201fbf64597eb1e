"""``riskflow train --history events.jsonl --out models/``: fit the peer-group model.

The history is replayed through the peer detector's own feature code
(:mod:`detectors.anomaly.peer`), one entity at a time in event-time order;
every closed event-time week of an entity past its warm-up is one training
row of its kind. One IsolationForest per entity kind with at least
``--min-rows`` rows; a feature is kept for a kind when at least half of its
rows have it (missing values become the peer median). The artefact
(:mod:`riskflow.core.models`) records the training window, the feature list per
kind, library versions, parameters and a content hash in its version; with
``RISKFLOW_MODEL_KEY`` set it is also signed (``model.hmac``, HMAC-SHA256), and
workers that have the key load only artefacts whose signature verifies.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import platform
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from riskflow.core.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="fit the peer-group anomaly model from an event history")
    p.add_argument("--history", required=True, help="events file (.jsonl or .jsonl.gz)")
    p.add_argument("--out", required=True, help="models directory; the artefact is written to OUT/<version>/")
    p.add_argument("--seed", type=int, default=0, help="random seed of the training (default 0)")
    p.add_argument("--trees", type=int, default=100, help="trees per model (default 100)")
    p.add_argument("--min-rows", type=int, default=20, help="kinds with fewer training rows get no model")
    p.add_argument(
        "--quantile",
        type=float,
        default=0.99,
        help="quantile of the training entities' highest scores used as thresholds",
    )
    p.set_defaults(func=run)


def training_rows(
    lines: Iterable[bytes],
) -> tuple[dict[str, list[dict[str, float]]], dict[str, list[str]], float, float, int]:
    """Feature rows per entity kind, their entity ids, and the history's first/last event time
    and event count."""
    from detectors.anomaly.peer import WARMUP_DAYS, PeerGroupDetector, features
    from riskflow.core.schema import InvalidEvent, parse_event

    events = []
    for line in lines:
        try:
            events.append(parse_event(line, now=1e12))
        except InvalidEvent:
            continue
    events.sort(key=lambda e: e.ts)  # stable: ties keep file order
    det = PeerGroupDetector()
    states: dict[str, Any] = {}
    rows: dict[str, list[dict[str, float]]] = {}
    groups: dict[str, list[str]] = {}
    for ev in events:
        st = states.get(ev.entity_id)
        if st is None:
            st = states[ev.entity_id] = det.init_state()
        wk = st["wk"]
        fs = st["f"]
        closes = wk >= 0 and (int((ev.ts + 8 * 3600) // 86400) + 3) // 7 > wk
        if closes and fs["d"] - fs["first"] >= WARMUP_DAYS:
            rows.setdefault(ev.entity_kind, []).append(features(fs))
            groups.setdefault(ev.entity_kind, []).append(ev.entity_id)
        det.process(st, ev)
    first = events[0].ts if events else 0.0
    last = events[-1].ts if events else 0.0
    return rows, groups, first, last, len(events)


def fit_kind(
    rows: list[dict[str, float]],
    *,
    trees: int,
    seed: int,
    quantile: float,
    groups: list[str] | None = None,
) -> Any:
    """One :class:`riskflow.core.models.KindModel` fitted on a kind's rows.

    Thresholds are the ``quantile`` of each training entity's *highest* value over its rows
    (``groups``: the entity of each row; default: one row per entity): an entity is scored
    every week, so a per-row quantile would flag most entities at some point.
    """
    from sklearn.ensemble import IsolationForest

    from detectors.anomaly.peer import FEATURES
    from riskflow.core.models import KindModel, avg_path_length, psi_reference

    feats = [f for f in FEATURES if sum(1 for r in rows if f in r) >= 0.5 * len(rows)]
    X = np.array([[r.get(f, np.nan) for f in feats] for r in rows], dtype=float)
    median = np.nanmedian(X, axis=0)
    X = np.where(np.isfinite(X), X, median)
    mad = np.median(np.abs(X - median), axis=0) * 1.4826
    # Floors: a zero MAD (a feature that is 0 for most peers) would make any value "infinitely" odd.
    spread = (np.quantile(X, 0.99, axis=0) - np.quantile(X, 0.01, axis=0)) / 4.65
    scale = np.maximum.reduce([mad, spread, 0.1 * np.abs(median), np.full_like(mad, 1e-6)])
    forest = IsolationForest(n_estimators=trees, max_samples=min(256, len(rows)), random_state=seed).fit(X)
    n_nodes = max(e.tree_.node_count for e in forest.estimators_)
    shape = (len(forest.estimators_), n_nodes)
    feature = np.full(shape, -1, dtype=np.int64)
    split = np.zeros(shape)
    left = np.full(shape, -1, dtype=np.int64)
    right = np.full(shape, -1, dtype=np.int64)
    leaf_value = np.zeros(shape)
    depth_max = 0
    for t, (est, cols) in enumerate(zip(forest.estimators_, forest.estimators_features_, strict=True)):
        tr = est.tree_
        depth = np.zeros(tr.node_count, dtype=np.int64)
        for node in range(tr.node_count):  # children always follow their parent
            lft, rgt = tr.children_left[node], tr.children_right[node]
            if lft >= 0:
                depth[lft] = depth[rgt] = depth[node] + 1
                feature[t, node] = cols[tr.feature[node]]
                split[t, node] = tr.threshold[node]
                left[t, node], right[t, node] = lft, rgt
            else:
                leaf_value[t, node] = depth[node] + avg_path_length(tr.n_node_samples[node])
        depth_max = max(depth_max, int(depth.max()))
    km = KindModel(
        features=feats,
        median=median,
        scale=scale,
        threshold=0.0,
        feature=feature,
        split=split,
        left=left,
        right=right,
        leaf_value=leaf_value,
        norm=avg_path_length(forest.max_samples_),
        depth=depth_max,
    )
    scores = km.score_matrix(X)
    zmax = np.max(np.abs(km.robust_z(X)), axis=1) if X.shape[1] else np.zeros(len(X))
    ids = groups if groups is not None else [str(i) for i in range(len(rows))]
    best_s: dict[str, float] = {}
    best_z: dict[str, float] = {}
    for g, sc, z in zip(ids, scores, zmax, strict=True):
        best_s[g] = max(best_s.get(g, 0.0), float(sc))
        best_z[g] = max(best_z.get(g, 0.0), float(z))
    km.threshold = float(np.quantile(list(best_s.values()), quantile))
    km.z_threshold = max(3.0, float(np.quantile(list(best_z.values()), quantile)))
    km.reference = psi_reference(scores)
    return km, forest, X


def train(
    lines: Iterable[bytes],
    out: str | Path,
    *,
    seed: int = 0,
    trees: int = 100,
    min_rows: int = 20,
    quantile: float = 0.99,
    key: bytes | None = None,
) -> Any:
    """Fit and write a peer-group model (signed with ``key`` if given); returns the
    :class:`riskflow.core.models.PeerModel`."""
    import sklearn

    from riskflow.core.models import save_model

    rows, groups, first, last, n_events = training_rows(lines)
    kinds = {}
    counts = {}
    for kind in sorted(rows):
        if len(rows[kind]) < min_rows:
            continue
        kinds[kind] = fit_kind(rows[kind], trees=trees, seed=seed, quantile=quantile, groups=groups[kind])[0]
        counts[kind] = len(rows[kind])
    if not kinds:
        raise SystemExit(f"riskflow train: no entity kind has {min_rows} training rows; give a longer history")

    def iso(ts: float) -> str:
        return _dt.datetime.fromtimestamp(ts, _dt.UTC).isoformat()

    end = _dt.datetime.fromtimestamp(last, _dt.UTC).strftime("%Y%m%d")
    meta = {
        "model": "peer-isolation-forest",
        "training_window": {"start": iso(first), "end": iso(last)},
        "events": n_events,
        "rows": counts,
        "params": {"trees": trees, "seed": seed, "min_rows": min_rows, "quantile": quantile},
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scikit-learn": sklearn.__version__,
        },
    }
    return save_model(kinds, meta, out, f"peer-{end}", key=key)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from riskflow.replay import read_lines

    model = train(
        read_lines(args.history),
        args.out,
        seed=args.seed,
        trees=args.trees,
        min_rows=args.min_rows,
        quantile=args.quantile,
        key=settings.model_key.get_secret_value().encode() if settings.model_key else None,
    )
    rows = model.metadata["rows"]
    signed = "signed" if settings.model_key else "unsigned: RISKFLOW_MODEL_KEY is not set"
    kinds = ", ".join(f"{k} ({n} rows)" for k, n in rows.items())
    print(f"wrote {Path(args.out) / model.version} ({signed}): kinds {kinds}")
    return 0
