"""Peer-group model artefacts: format, content hash, loading, scoring and score drift.

A model is fitted offline (``riskflow train``) and shipped as a directory
``<out>/<version>/`` holding ``model.json`` (metadata: training window,
feature list per entity kind, library versions, thresholds, peer medians)
and ``trees.npz`` (the IsolationForest trees, as flat arrays). The version
ends with a hash of both files' content; :func:`load_model` recomputes it and
refuses a model whose files do not match it.

Scoring needs numpy only: the trees are walked for one entity at a time with
a handful of vector operations (all trees at once), far cheaper than calling
scikit-learn per entity on the worker's hot path, and equal to
``IsolationForest.score_samples`` (``tests/test_train.py``).

>>> m = PeerModel.toy()
>>> round(m.score("bank", [0.12, 0.01]), 3) < round(m.score("bank", [0.01, 0.3]), 3)
True
>>> [d["feature"] for d in m.explain("bank", [0.01, 0.3])][:1]
['npl_ratio']
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MODEL_FILE = "model.json"
TREES_FILE = "trees.npz"
PSI_BINS = 10


def avg_path_length(n: float) -> float:
    """c(n): the average path length of an unsuccessful BST search (Liu et al. 2008)."""
    if n <= 1:
        return 0.0
    if n == 2:
        return 1.0
    return 2.0 * (math.log(n - 1.0) + 0.5772156649015329) - 2.0 * (n - 1.0) / n


@dataclass
class KindModel:
    """The model of one entity kind: features, peer statistics and trees (padded 2-D arrays)."""

    features: list[str]
    median: np.ndarray
    scale: np.ndarray  # robust scale: 1.4826 * MAD, floored
    threshold: float  # scores from here are flagged
    feature: np.ndarray  # (trees, nodes) int: split feature, -1 at a leaf
    split: np.ndarray  # (trees, nodes) float: split threshold
    left: np.ndarray  # (trees, nodes) int
    right: np.ndarray  # (trees, nodes) int
    leaf_value: np.ndarray  # (trees, nodes) float: depth + c(samples) at a leaf
    norm: float  # c(max_samples)
    depth: int
    reference: list[float] = field(default_factory=list)  # training score share per PSI bin
    z_threshold: float = 0.0  # largest |robust z| from which a vector is flagged (0: never)

    def vector(self, values: dict[str, float]) -> np.ndarray:
        """The kind's feature vector from a feature dict; a missing value is the peer median."""
        x = np.array([values.get(f, math.nan) for f in self.features], dtype=float)
        bad = ~np.isfinite(x)
        x[bad] = self.median[bad]
        return x

    def _flat(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Trees as flat arrays of global node ids; a leaf points to itself, so every walk
        can take exactly ``depth`` steps without a leaf test."""
        cached = self.__dict__.get("_flat_cache")
        if cached is not None:
            return cached
        n_trees, n_nodes = self.feature.shape
        base = (np.arange(n_trees) * n_nodes)[:, None]
        own = base + np.arange(n_nodes)[None, :]
        leaf = self.left < 0
        left = np.where(leaf, own, base + self.left).ravel()
        right = np.where(leaf, own, base + self.right).ravel()
        feature = np.where(leaf, 0, self.feature).ravel()
        cached = (base.ravel(), feature, self.split.ravel(), left, right, self.leaf_value.ravel())
        self.__dict__["_flat_cache"] = cached
        return cached

    def score_matrix(self, X: np.ndarray) -> np.ndarray:
        """IsolationForest anomaly scores in (0, 1] of the rows of ``X``."""
        X = np.atleast_2d(np.asarray(X, dtype=float))
        roots, feature, split, left, right, leaf_value = self._flat()
        rows = np.arange(X.shape[0])[None, :]
        node = np.repeat(roots[:, None], X.shape[0], axis=1)
        for _ in range(self.depth):
            go_left = X[rows, feature[node]] <= split[node]
            node = np.where(go_left, left[node], right[node])
        path = leaf_value[node].mean(axis=0)
        return np.power(2.0, -path / self.norm)

    def score_one(self, x: np.ndarray) -> float:
        """:meth:`score_matrix` of one vector, without the 2-D bookkeeping."""
        _, feature, split, left, right, leaf_value = self._flat()
        node = self._roots_cache()
        for _ in range(self.depth):
            node = np.where(x[feature[node]] <= split[node], left[node], right[node])
        return float(2.0 ** (-leaf_value[node].mean() / self.norm))

    def _roots_cache(self) -> np.ndarray:
        return self._flat()[0]

    def robust_z(self, x: np.ndarray) -> np.ndarray:
        return (x - self.median) / self.scale

    def common_score(self, x: np.ndarray, forest_score: float | None = None) -> float:
        """The detector's score in [0, 1]: 0.5 at the forest's threshold, or when the largest
        |robust z| of a feature reaches ``z_threshold``; both calibrated on the training
        entities (see ``riskflow train``). 1 at a forest score of 1 or twice ``z_threshold``.

        IsolationForest cannot see how far *beyond* the training range a value lies (every split
        sends it where the most extreme peer went); the robust-z term covers that case.
        """
        s = self.score_one(x) if forest_score is None else forest_score
        forest = 0.5 + 0.5 * (s - self.threshold) / max(1e-9, 1.0 - self.threshold) if s >= self.threshold else 0.0
        zmax = float(np.max(np.abs(self.robust_z(x)))) if len(x) else 0.0
        zt = self.z_threshold
        ztail = 0.5 + 0.5 * min(1.0, (zmax - zt) / zt) if zt > 0 and zmax >= zt else 0.0
        return min(1.0, max(forest, ztail))


@dataclass
class PeerModel:
    """A fitted peer-group model: one :class:`KindModel` per entity kind, and metadata."""

    version: str
    metadata: dict[str, Any]
    kinds: dict[str, KindModel]

    def common_score(self, kind: str, values: dict[str, float]) -> float:
        """See :meth:`KindModel.common_score`."""
        km = self.kinds[kind]
        return km.common_score(km.vector(values))

    def scores(self, kind: str, values: dict[str, float]) -> tuple[float, float]:
        """(forest score, common score) of one feature dict, walking the trees once."""
        km = self.kinds[kind]
        x = km.vector(values)
        s = km.score_one(x)
        return s, km.common_score(x, s)

    def score(self, kind: str, values: dict[str, float] | list[float]) -> float:
        """The IsolationForest score (the drift metric's input)."""
        km = self.kinds[kind]
        x = km.vector(values) if isinstance(values, dict) else np.asarray(values, dtype=float)
        return km.score_one(x)

    def explain(self, kind: str, values: dict[str, float] | list[float], top: int = 3) -> list[dict[str, Any]]:
        """The features furthest from the peer median, in robust units (|z| descending)."""
        km = self.kinds[kind]
        x = km.vector(values) if isinstance(values, dict) else np.asarray(values, dtype=float)
        z = km.robust_z(x)
        order = np.argsort(-np.abs(z), kind="stable")[:top]
        return [
            {
                "feature": km.features[i],
                "value": round(float(x[i]), 6),
                "peer_median": round(float(km.median[i]), 6),
                "robust_z": round(float(z[i]), 3),
            }
            for i in order
        ]

    @classmethod
    def toy(cls) -> PeerModel:
        """A two-feature, one-tree bank model for examples and tests."""
        km = KindModel(
            features=["capital_adequacy_ratio", "npl_ratio"],
            median=np.array([0.12, 0.015]),
            scale=np.array([0.02, 0.005]),
            threshold=0.6,
            feature=np.array([[1, -1, 0, -1, -1]]),
            split=np.array([[0.05, 0.0, 0.08, 0.0, 0.0]]),
            left=np.array([[1, -1, 3, -1, -1]]),
            right=np.array([[2, -1, 4, -1, -1]]),
            leaf_value=np.array([[0.0, 3.0, 0.0, 2.0, 1.0]]),
            norm=avg_path_length(8),
            depth=2,
            z_threshold=6.0,
        )
        return cls("peer-toy", {}, {"bank": km})


_ARRAYS = ("median", "scale", "feature", "split", "left", "right", "leaf_value")


def _digest(meta_bytes: bytes, npz_bytes: bytes) -> str:
    h = hashlib.blake2b(digest_size=8)
    h.update(meta_bytes)
    h.update(npz_bytes)
    return h.hexdigest()


def save_model(kinds: dict[str, KindModel], metadata: dict[str, Any], out_dir: str | Path, name: str) -> PeerModel:
    """Write an artefact ``<out_dir>/<name>-<hash>/``; returns the model with its version."""
    arrays = {f"{k}.{a}": getattr(km, a) for k, km in kinds.items() for a in _ARRAYS}
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    npz = buf.getvalue()
    meta = dict(metadata)
    meta["kinds"] = {
        k: {
            "features": km.features,
            "threshold": km.threshold,
            "norm": km.norm,
            "depth": km.depth,
            "reference": km.reference,
            "z_threshold": km.z_threshold,
        }
        for k, km in kinds.items()
    }
    meta_bytes = json.dumps(meta, sort_keys=True, indent=1, ensure_ascii=False).encode()
    version = f"{name}-{_digest(meta_bytes, npz)}"
    target = Path(out_dir) / version
    target.mkdir(parents=True, exist_ok=True)
    (target / MODEL_FILE).write_bytes(meta_bytes)
    (target / TREES_FILE).write_bytes(npz)
    return PeerModel(version, meta, kinds)


class ModelError(ValueError):
    """A model artefact is missing, unreadable or does not match its content hash."""


def load_model(path: str | Path) -> PeerModel:
    """Load one artefact directory, or the newest artefact under a models directory."""
    p = Path(path)
    if not (p / MODEL_FILE).exists():
        found = sorted(
            (d for d in p.iterdir() if (d / MODEL_FILE).exists()) if p.is_dir() else (),
            key=lambda d: ((d / MODEL_FILE).stat().st_mtime, d.name),
        )
        if not found:
            raise ModelError(f"no model artefact in {p}")
        p = found[-1]
    meta_bytes = (p / MODEL_FILE).read_bytes()
    npz = (p / TREES_FILE).read_bytes()
    digest = _digest(meta_bytes, npz)
    if not p.name.endswith(digest):
        raise ModelError(f"{p}: content hash {digest} does not match the artefact name")
    meta = json.loads(meta_bytes)
    data = np.load(io.BytesIO(npz))
    kinds = {}
    for k, km in meta["kinds"].items():
        kinds[k] = KindModel(
            features=list(km["features"]),
            threshold=float(km["threshold"]),
            norm=float(km["norm"]),
            depth=int(km["depth"]),
            reference=list(km.get("reference", [])),
            z_threshold=float(km.get("z_threshold", 0.0)),
            **{a: data[f"{k}.{a}"] for a in _ARRAYS},
        )
    return PeerModel(p.name, meta, kinds)


def psi_reference(scores: np.ndarray) -> list[float]:
    """Share of training scores in each of :data:`PSI_BINS` equal-width bins of [0, 1]."""
    counts = np.histogram(np.clip(scores, 0, 1), bins=PSI_BINS, range=(0.0, 1.0))[0].astype(float)
    return [float(c) for c in counts / max(1.0, counts.sum())]


class DriftTracker:
    """Population stability index of recent live scores against the training scores, per kind.

    Live bin counts decay by ``decay`` per batch, so the index follows the
    recent score distribution. PSI above ~0.25 is the usual "model is stale".

    >>> t = DriftTracker()
    >>> ref = [0.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0]
    >>> t.update([("bank", 0.45)] * 50 + [("bank", 0.55)] * 50, {"bank": ref})["bank"] < 0.01
    True
    >>> t.update([("bank", 0.95)] * 500, {"bank": ref})["bank"] > 1
    True
    """

    def __init__(self, decay: float = 0.99) -> None:
        self.decay = decay
        self.counts: dict[str, np.ndarray] = {}

    def reset(self) -> None:
        self.counts.clear()

    def update(self, scores: list[tuple[str, float]], reference: dict[str, list[float]]) -> dict[str, float]:
        by_kind: dict[str, list[float]] = {}
        for kind, s in scores:
            by_kind.setdefault(kind, []).append(s)
        out = {}
        for kind, ref in reference.items():
            c = self.counts.get(kind)
            if c is None:
                c = self.counts[kind] = np.zeros(PSI_BINS)
            c *= self.decay
            if kind in by_kind:
                c += np.histogram(np.clip(by_kind[kind], 0, 1), bins=PSI_BINS, range=(0.0, 1.0))[0]
            if c.sum() <= 0 or not ref:
                continue
            live = np.maximum(c / c.sum(), 1e-4)
            base = np.maximum(np.asarray(ref, dtype=float), 1e-4)
            out[kind] = float(np.sum((live - base) * np.log(live / base)))
        return out
