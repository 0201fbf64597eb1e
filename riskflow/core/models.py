"""Peer-group model artefacts: format, content hash, loading, scoring and score drift.

A model is fitted offline (``riskflow train``) and shipped as a directory
``<out>/<version>/`` holding ``model.json`` (metadata: training window,
feature list per entity kind, library versions, thresholds, peer medians)
and ``trees.npz`` (the IsolationForest trees, as flat arrays). The version
ends with a hash of both files' content; :func:`load_model` recomputes it and
refuses a model whose files do not match it.

The content hash is unkeyed, so anyone who can write to the models directory
could edit an artefact and rename it to its new hash. With a key
(``RISKFLOW_MODEL_KEY``), ``riskflow train`` also writes ``model.hmac``, an
HMAC-SHA256 of the version and both files, and :func:`load_model` given the
key loads only artefacts whose HMAC verifies. :func:`load_model` also confines
itself to a ``root`` directory (symlinks and ``..`` resolved) and checks the
model's structure (tree indices in range, every walk reaching a leaf within
``depth`` <= :data:`MAX_DEPTH`, bounded sizes, finite numbers), so that even a
correctly signed but broken artefact cannot crash or stall scoring.

Scoring needs numpy only: the trees are walked for one entity at a time with
a handful of vector operations (all trees at once), far cheaper than calling
scikit-learn per entity on the worker's hot path, and equal to
``IsolationForest.score_samples`` (``tests/unit/test_train.py``).

>>> m = PeerModel.toy()
>>> round(m.score("bank", [0.12, 0.01]), 3) < round(m.score("bank", [0.01, 0.3]), 3)
True
>>> [d["feature"] for d in m.explain("bank", [0.01, 0.3])][:1]
['npl_ratio']
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MODEL_FILE = "model.json"
TREES_FILE = "trees.npz"
SIGNATURE_FILE = "model.hmac"
PSI_BINS = 10
#: Structural bounds of a loadable artefact. An IsolationForest of 256 samples per tree is at
#: most 255 deep and usually ~10-20; ``riskflow train`` writes 100 trees of at most 511 nodes.
MAX_DEPTH = 256
MAX_NODES = 4_000_000  # trees x nodes of one entity kind (5 arrays of 8 bytes each: 160 MB)
MAX_FEATURES = 256
MAX_FILE_BYTES = 256 * 1024 * 1024


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


def sign(key: bytes, version: str, meta_bytes: bytes, npz_bytes: bytes) -> str:
    """HMAC-SHA256 (hex) of an artefact: its version and both files, each length-prefixed."""
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for part in (version.encode(), meta_bytes, npz_bytes):
        mac.update(len(part).to_bytes(8, "big"))
        mac.update(part)
    return mac.hexdigest()


def save_model(
    kinds: dict[str, KindModel],
    metadata: dict[str, Any],
    out_dir: str | Path,
    name: str,
    *,
    key: bytes | None = None,
) -> PeerModel:
    """Write an artefact ``<out_dir>/<name>-<hash>/``, signed (``model.hmac``) when a ``key`` is
    given; returns the model with its version."""
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
    if key is not None:
        (target / SIGNATURE_FILE).write_text(sign(key, version, meta_bytes, npz) + "\n")
    return PeerModel(version, meta, kinds)


class ModelError(ValueError):
    """A model artefact is missing, unreadable, malformed or does not match its content hash."""


class ModelRefused(ModelError):
    """A model artefact that must not be loaded: outside the model directory, or not
    authenticated (no ``model.hmac``, or one that does not verify with the key)."""


def load_model(path: str | Path, *, key: bytes | None = None, root: str | Path | None = None) -> PeerModel:
    """Load one artefact directory, or the newest artefact under a models directory.

    ``root``: the artefact must lie inside it once symlinks and ``..`` are resolved.
    ``key``: the artefact must carry a ``model.hmac`` that verifies with it. Every failure
    is a :class:`ModelError` (:class:`ModelRefused` for the two above), never another error.
    """
    p = Path(path)
    try:
        top = Path(root).resolve() if root is not None else None
        if top is not None and not p.resolve().is_relative_to(top):  # before looking at what is there
            raise ModelRefused(f"{p} is outside the model directory {top}")
        if not (p / MODEL_FILE).exists():
            found = sorted(
                (d for d in p.iterdir() if (d / MODEL_FILE).exists()) if p.is_dir() else (),
                key=lambda d: ((d / MODEL_FILE).stat().st_mtime, d.name),
            )
            if not found:
                raise ModelError(f"no model artefact in {p}")
            p = found[-1]
        if top is not None:
            for f in (p, p / MODEL_FILE, p / TREES_FILE, p / SIGNATURE_FILE):
                if not f.resolve().is_relative_to(top):
                    raise ModelRefused(f"{f} is outside the model directory {top}")
        for f in (p / MODEL_FILE, p / TREES_FILE):
            if f.stat().st_size > MAX_FILE_BYTES:
                raise ModelError(f"{f} is larger than {MAX_FILE_BYTES} bytes")
        meta_bytes = (p / MODEL_FILE).read_bytes()
        npz = (p / TREES_FILE).read_bytes()
    except ModelError:
        raise
    except (OSError, ValueError, RuntimeError) as exc:  # RuntimeError: a symlink loop (Python < 3.13)
        raise ModelError(f"{p}: cannot read the artefact: {exc}") from None
    digest = _digest(meta_bytes, npz)
    if not p.name.endswith(digest):
        raise ModelError(f"{p}: content hash {digest} does not match the artefact name")
    if key is not None:
        _verify(p, key, meta_bytes, npz)
    try:
        meta = json.loads(meta_bytes)
        with np.load(io.BytesIO(npz), allow_pickle=False) as data:
            if not isinstance(meta, dict) or not isinstance(meta.get("kinds"), dict) or not meta["kinds"]:
                raise ModelError("model.json has no 'kinds' mapping")
            kinds = {k: _kind_model(k, km, data) for k, km in meta["kinds"].items()}
    except ModelError as exc:
        raise ModelError(f"{p.name}: {exc}") from None
    except Exception as exc:  # whatever a broken file makes numpy or json raise
        raise ModelError(f"{p.name}: malformed artefact: {type(exc).__name__}: {exc}") from None
    return PeerModel(p.name, meta, kinds)


def _verify(p: Path, key: bytes, meta_bytes: bytes, npz: bytes) -> None:
    sig_file = p / SIGNATURE_FILE
    try:
        got = sig_file.read_text(encoding="ascii", errors="replace")[:200].strip()
    except OSError:
        raise ModelRefused(
            f"{p.name}: not signed (no {SIGNATURE_FILE}); RISKFLOW_MODEL_KEY is set, so only signed artefacts load"
        ) from None
    if not hmac.compare_digest(got, sign(key, p.name, meta_bytes, npz)):
        raise ModelRefused(f"{p.name}: HMAC does not verify (the artefact was changed, or signed with another key)")


def _finite(x: Any, what: str, low: float = -math.inf, high: float = math.inf) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not (math.isfinite(x) and low <= x <= high):
        raise ModelError(f"{what} must be a finite number in [{low}, {high}], got {x!r:.80}")
    return float(x)


def _kind_model(kind: str, km: Any, data: Any) -> KindModel:
    """One kind's model, checked so that scoring can neither index out of range nor walk forever."""
    from riskflow.core.schema import ENTITY_KINDS

    if kind not in ENTITY_KINDS:  # kinds become metric labels: a fixed set
        raise ModelError(f"unknown entity kind {kind!r:.80}")
    if not isinstance(km, dict):
        raise ModelError(f"{kind}: not a mapping")
    features = km.get("features")
    if (
        not isinstance(features, list)
        or not 1 <= len(features) <= MAX_FEATURES
        or not all(isinstance(f, str) for f in features)
    ):
        raise ModelError(f"{kind}: features must be a list of 1 to {MAX_FEATURES} names")
    depth = km.get("depth")
    if isinstance(depth, bool) or not isinstance(depth, int) or not 0 <= depth <= MAX_DEPTH:
        raise ModelError(f"{kind}: depth must be an integer from 0 to {MAX_DEPTH}, got {depth!r:.80}")
    reference = km.get("reference", [])
    if not isinstance(reference, list) or len(reference) not in (0, PSI_BINS):
        raise ModelError(f"{kind}: reference must be a list of {PSI_BINS} shares")
    arrays = {}
    for a in _ARRAYS:
        member = f"{kind}.{a}"
        if member not in data.files:
            raise ModelError(f"{kind}: array {a} missing from {TREES_FILE}")
        if data.zip.getinfo(member + ".npy").file_size > MAX_NODES * 8 + 4096:  # before inflating it
            raise ModelError(f"{kind}: array {a} is larger than {MAX_NODES} values")
        arrays[a] = data[member]
    n = len(features)
    for a in ("median", "scale"):
        v = arrays[a]
        if v.shape != (n,) or v.dtype.kind != "f" or not np.all(np.isfinite(v)):
            raise ModelError(f"{kind}: {a} must be {n} finite floats")
    if not np.all(arrays["scale"] > 0):
        raise ModelError(f"{kind}: scale must be positive")
    shape = arrays["feature"].shape
    if len(shape) != 2 or not shape[0] >= 1 or not shape[1] >= 1 or shape[0] * shape[1] > MAX_NODES:
        raise ModelError(f"{kind}: trees must be a (trees, nodes) array of at most {MAX_NODES} nodes, got {shape}")
    for a in ("feature", "split", "left", "right", "leaf_value"):
        v = arrays[a]
        ints = a in ("feature", "left", "right")
        if v.shape != shape or v.dtype.kind != ("i" if ints else "f") or (not ints and not np.all(np.isfinite(v))):
            raise ModelError(f"{kind}: {a} must be a {shape} array of {'integers' if ints else 'finite floats'}")
        arrays[a] = v.astype(np.int64 if ints else np.float64)
    feature, left, right = arrays["feature"], arrays["left"], arrays["right"]
    nodes = shape[1]
    inner = left >= 0
    if not (
        np.all(left[inner] < nodes)
        and np.all((right[inner] >= 0) & (right[inner] < nodes))
        and np.all((feature[inner] >= 0) & (feature[inner] < n))
    ):
        raise ModelError(f"{kind}: a split node's child or feature index is out of range")
    # Scoring walks exactly `depth` steps: every path from a root must reach a leaf by then
    # (a deeper tree, or a cycle, would be scored from an inner node).
    t = np.arange(shape[0])
    at = np.zeros(shape[0], dtype=np.int64)
    for _ in range(depth):
        go = inner[t, at]
        if not go.any():
            break
        t2, at2 = t[go], at[go]
        both = np.unique(np.concatenate([t2 * nodes + left[t2, at2], t2 * nodes + right[t2, at2]]))
        t, at = both // nodes, both % nodes
    if inner[t, at].any():
        raise ModelError(f"{kind}: a tree does not reach a leaf within depth {depth} (deeper, or cyclic)")
    return KindModel(
        features=list(features),
        threshold=_finite(km.get("threshold"), f"{kind}: threshold", 0.0, 1.0),
        norm=_finite(km.get("norm"), f"{kind}: norm", 1e-12),
        depth=depth,
        reference=[_finite(r, f"{kind}: reference", 0.0, 1.0) for r in reference],
        z_threshold=_finite(km.get("z_threshold", 0.0), f"{kind}: z_threshold", 0.0),
        **arrays,
    )


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
