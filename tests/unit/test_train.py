"""``riskflow train``, the model artefact, and the peer-group detector with a real model."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import msgspec
import numpy as np
import pytest

from detectors.anomaly import PeerGroupDetector
from detectors.factory import build_processor, peer_detector
from detectors.pipeline import RawMessage
from detectors.rules import load_pack
from riskflow.cli import main
from riskflow.commands.train import fit_kind, train
from riskflow.core.models import DriftTracker, ModelError, ModelRefused, load_model
from riskflow.core.schema import encode_event
from riskflow.simulate import simulate


@pytest.fixture(scope="module")
def history() -> list[bytes]:
    events, _ = simulate(entities=120, days=120, seed=5)
    return [encode_event(e) for e in events]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, history: list[bytes]) -> Path:
    out = tmp_path_factory.mktemp("models")
    train(history, out, trees=30, min_rows=10)
    return out


def test_artefact_carries_metadata_and_a_content_hash(model_dir: Path) -> None:
    m = load_model(model_dir)
    meta = m.metadata
    assert m.version.startswith("peer-2025") and m.version == next(model_dir.iterdir()).name
    assert meta["training_window"]["start"] < meta["training_window"]["end"]
    assert set(meta["versions"]) >= {"numpy", "scikit-learn", "python"}
    assert "private_fund" in m.kinds and meta["kinds"]["private_fund"]["features"] == m.kinds["private_fund"].features
    assert all(0 < km.threshold < 1 for km in m.kinds.values())


def test_retraining_the_same_history_gives_the_same_version(
    model_dir: Path, history: list[bytes], tmp_path: Path
) -> None:
    again = train(history, tmp_path, trees=30, min_rows=10)
    assert again.version == load_model(model_dir).version


def test_tampered_artefact_is_refused(model_dir: Path, tmp_path: Path) -> None:
    src = next(model_dir.iterdir())
    bad = tmp_path / src.name
    shutil.copytree(src, bad)
    meta = (bad / "model.json").read_text().replace('"seed": 0', '"seed": 1')
    (bad / "model.json").write_text(meta)
    with pytest.raises(ModelError):
        load_model(bad)


def test_compiled_trees_score_exactly_like_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    rows = [{"npl_ratio": float(rng.normal(0.02, 0.005)), "capital_adequacy_ratio": float(rng.normal(0.13, 0.01))}]
    rows = rows * 0 + [
        {"npl_ratio": float(rng.normal(0.02, 0.005)), "capital_adequacy_ratio": float(rng.normal(0.13, 0.01))}
        for _ in range(300)
    ]
    km, forest, X = fit_kind(rows, trees=50, seed=1, quantile=0.99)
    np.testing.assert_allclose(km.score_matrix(X), -forest.score_samples(X), rtol=1e-9)
    probe = np.array([[0.3, 0.02], [0.13, 0.2]])
    np.testing.assert_allclose(km.score_matrix(probe), -forest.score_samples(probe), rtol=1e-9)
    assert [km.score_one(x) for x in probe] == pytest.approx(list(km.score_matrix(probe)), rel=1e-12)


def test_explanation_names_the_feature_that_drove_it() -> None:
    rng = random.Random(1)
    rows = [{"npl_ratio": rng.gauss(0.02, 0.004), "capital_adequacy_ratio": rng.gauss(0.13, 0.01)} for _ in range(200)]
    km, _, _ = fit_kind(rows, trees=50, seed=1, quantile=0.99)
    from riskflow.core.models import PeerModel

    m = PeerModel("peer-test", {}, {"bank": km})
    odd = {"npl_ratio": 0.09, "capital_adequacy_ratio": 0.131}
    assert m.common_score("bank", odd) >= 0.5
    top = m.explain("bank", odd)[0]
    assert top["feature"] == "npl_ratio" and top["robust_z"] > 5
    assert abs(top["peer_median"] - 0.02) < 0.003


def test_worker_processor_flags_with_the_model_and_names_its_version(model_dir: Path) -> None:
    model = load_model(model_dir)
    events, _ = simulate(entities=120, days=120, seed=6)
    bp = build_processor(load_pack(), model=model)
    det = peer_detector(bp)
    assert det is not None and det.model_version == model.version
    msgs = [RawMessage(encode_event(e), "t", 0, i, None) for i, e in enumerate(events)]
    res = bp.process(msgs, {}.get, now=4e9)
    peer = [a for a in res.alerts if a.rule_id == "anomaly.peer"]
    assert not hasattr(det, "scored"), "a detector holds its configuration only"  # the scores come with the batch
    assert peer, "an outlier among peers is expected in a simulated history"
    for a in peer:
        assert a.model_version == model.version and a.dimension == "anomaly"
        assert a.evidence["drivers"] and {"feature", "value", "peer_median", "robust_z"} <= set(
            a.evidence["drivers"][0]
        )
        assert 0.5 <= a.evidence["score"] <= 1
    scored = res.model_scores
    assert scored and {kind for kind, _ in scored} <= set(model.kinds)
    # The drift index of the live scores against training is small for a history like the training one.
    psi = DriftTracker(decay=1.0).update(scored, {k: km.reference for k, km in model.kinds.items()})
    assert psi["private_fund"] < 0.5
    # Swapping the model (a reload) changes the version on later alerts; None switches the model off.
    det.set_model(None)
    assert det.model_version == ""


def test_train_cli(tmp_path: Path, history: list[bytes]) -> None:
    hist = tmp_path / "events.jsonl"
    hist.write_bytes(b"\n".join(history) + b"\nnot json\n")
    assert main(["train", "--history", str(hist), "--out", str(tmp_path / "models"), "--trees", "20"]) == 0
    m = load_model(tmp_path / "models")
    assert m.metadata["events"] == len(history) and m.metadata["params"]["trees"] == 20


def test_peer_detector_state_is_plain_data(model_dir: Path) -> None:
    det = PeerGroupDetector(load_model(model_dir))
    events, _ = simulate(entities=20, days=60, seed=2)
    from riskflow.core.schema import parse_event

    state = det.init_state()
    for e in events[:300]:
        state, _ = det.process(state, parse_event(msgspec.json.encode(e), now=4e9))
        state = msgspec.msgpack.decode(msgspec.msgpack.encode(state))


def test_control_messages_reload_or_are_ignored(model_dir: Path, tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry

    from riskflow.core.metrics import Metrics
    from streams.control import apply_control

    reg = CollectorRegistry()
    metrics = Metrics.create(reg)
    det = PeerGroupDetector()
    assert apply_control(b"{nope", det, model_dir, metrics).startswith("ignored")
    assert apply_control(b'{"command": "dance"}', det, model_dir, metrics).startswith("ignored")
    assert apply_control(b'{"command": "reload_model"}', det, None, metrics).startswith("ignored")
    assert det.model is None
    assert apply_control(b'{"command": "reload_model"}', det, model_dir, metrics) == f"loaded {det.model_version}"
    assert det.model_version == load_model(model_dir).version
    bad = msgspec.json.encode({"command": "reload_model", "path": str(model_dir / "missing")})
    assert apply_control(bad, det, model_dir, metrics) == "error"
    assert det.model_version == load_model(model_dir).version  # the loaded model stays
    assert reg.get_sample_value("riskflow_model_reloads_total", {"reason": "loaded"}) == 1
    assert reg.get_sample_value("riskflow_model_reloads_total", {"reason": "load_failed"}) == 1


KEY = b"k" * 32


def reload(path: object, det: PeerGroupDetector, model_dir: Path, key: bytes | None = KEY) -> tuple[str, dict]:
    """apply_control of a reload naming ``path``; what it returned and the reload counts by reason."""
    from prometheus_client import CollectorRegistry

    from riskflow.core.metrics import Metrics
    from streams.control import apply_control

    reg = CollectorRegistry()
    msg = msgspec.json.encode({"command": "reload_model", "path": str(path)})
    done = apply_control(msg, det, model_dir, Metrics.create(reg), key)
    reasons = ("loaded", "load_failed", "refused")
    return done, {r: reg.get_sample_value("riskflow_model_reloads_total", {"reason": r}) for r in reasons}


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory, history: list[bytes]) -> Path:
    out = tmp_path_factory.mktemp("signed")
    train(history, out, trees=10, min_rows=10, key=KEY)
    return out


def test_signed_artefact_loads_with_its_key_and_only_with_it(signed: Path) -> None:
    (art,) = signed.iterdir()
    assert (art / "model.hmac").exists()
    assert load_model(signed, key=KEY, root=signed).version == art.name
    with pytest.raises(ModelRefused, match="HMAC does not verify"):
        load_model(signed, key=b"another key, 16+", root=signed)
    det = PeerGroupDetector()
    assert reload(art.name, det, signed) == (f"loaded {art.name}", {"loaded": 1, "load_failed": None, "refused": None})


def test_reload_path_outside_the_model_dir_is_refused(signed: Path, model_dir: Path, tmp_path: Path) -> None:
    (art,) = signed.iterdir()
    link = signed / "elsewhere"
    link.symlink_to(next(model_dir.iterdir()), target_is_directory=True)
    try:
        for path in (next(model_dir.iterdir()), signed / ".." / model_dir.name, "../" + model_dir.name, link):
            det = PeerGroupDetector()
            assert reload(path, det, signed, None) == ("error", {"loaded": None, "load_failed": None, "refused": 1})
            assert det.model is None
    finally:
        link.unlink()
    # the directory itself: the newest artefact, if it resolves inside
    assert reload(signed, PeerGroupDetector(), signed)[0] == f"loaded {art.name}"


def resign(src: Path, out: Path, key: bytes | None, change: object) -> Path:
    """A copy of the artefact at ``src`` with ``change(kinds, meta)`` applied, re-hashed (and signed with
    ``key``) as a forger or a buggy trainer would write it."""
    from riskflow.core.models import save_model

    m = load_model(src)
    meta = {k: v for k, v in m.metadata.items() if k != "kinds"}
    change(m.kinds, meta)  # type: ignore[operator]
    return out / save_model(m.kinds, meta, out, "peer-forged", key=key).version


def test_tampered_artefact_renamed_to_its_new_hash_is_refused(signed: Path, tmp_path: Path) -> None:
    (art,) = signed.iterdir()

    def lower_thresholds(kinds: dict, meta: dict) -> None:
        for km in kinds.values():
            km.threshold = 0.01

    models = tmp_path / "models"
    forged = resign(art, models, None, lower_thresholds)  # consistent content hash, no valid signature
    (forged / "model.hmac").write_text((art / "model.hmac").read_text())  # the genuine one's signature
    det = PeerGroupDetector()
    done, counts = reload(forged.name, det, models)
    assert (done, counts) == ("error", {"loaded": None, "load_failed": None, "refused": 1}) and det.model is None
    (forged / "model.hmac").unlink()
    with pytest.raises(ModelRefused, match="not signed"):
        load_model(forged, key=KEY, root=models)
    # Without a key the content hash is all there is to check (and the worker says so when it loads).
    assert load_model(forged).version == forged.name


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("child index out of range", "out of range"),
        ("feature index out of range", "out of range"),
        ("depth 10**8", "depth must be an integer from 0 to"),
        ("a cycle", "does not reach a leaf"),
        ("too shallow a depth", "does not reach a leaf"),
        ("a NaN threshold", "threshold must be a finite number"),
        ("an unknown entity kind", "unknown entity kind"),
    ],
)
def test_signed_but_broken_artefact_is_refused_at_load(signed: Path, tmp_path: Path, name: str, match: str) -> None:
    (art,) = signed.iterdir()

    def breaks(kinds: dict, meta: dict) -> None:
        kind = sorted(kinds)[0]
        km = kinds[kind]
        inner = np.argwhere(km.left >= 0)[0]
        if name == "child index out of range":
            km.left[tuple(inner)] = km.left.shape[1] + 5
        elif name == "feature index out of range":
            km.feature[tuple(inner)] = len(km.features)
        elif name == "depth 10**8":
            km.depth = 10**8
        elif name == "a cycle":
            km.left[tuple(inner)] = inner[1]  # a split node that is its own left child
        elif name == "too shallow a depth":
            km.depth = 1
        elif name == "a NaN threshold":
            km.threshold = float("nan")
        else:
            kinds["user-" + kind] = kinds.pop(kind)

    broken = resign(art, tmp_path / "models", KEY, breaks)
    with pytest.raises(ModelError, match=match):
        load_model(broken, key=KEY, root=tmp_path / "models")
    det = PeerGroupDetector()
    assert reload(broken.name, det, tmp_path / "models") == (
        "error",
        {"loaded": None, "load_failed": 1, "refused": None},
    )
    assert det.model is None


def test_train_cli_signs_when_the_key_is_set(tmp_path: Path, history: list[bytes]) -> None:
    import os
    import subprocess
    import sys

    hist = tmp_path / "events.jsonl"
    hist.write_bytes(b"\n".join(history[:20000]))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKFLOW_")}
    cmd = [sys.executable, "-m", "riskflow", "train", "--history", str(hist), "--trees", "5", "--min-rows", "5"]
    out = subprocess.run(
        [*cmd, "--out", str(tmp_path / "m")],
        env={**env, "RISKFLOW_MODEL_KEY": KEY.decode()},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0 and "(signed)" in out.stdout, out.stderr[-2000:]
    assert load_model(tmp_path / "m", key=KEY, root=tmp_path / "m")
    out = subprocess.run(
        [*cmd, "--out", str(tmp_path / "m")], env={**env, "RISKFLOW_MODEL_KEY": "short"}, capture_output=True, text=True
    )
    assert out.returncode != 0 and "Traceback" not in out.stderr and "RISKFLOW_MODEL_KEY" in out.stderr + out.stdout
