"""The peer-group model's scores travel with the batch result (``BatchResult.model_scores``),
not in the detector, and the peer-drift observer (streams/peerdrift.py) turns them into the
score and drift metrics; no broker needed."""

from __future__ import annotations

import dataclasses

import pytest
from prometheus_client import CollectorRegistry

from detectors.engine import EntityState
from detectors.factory import build_processor, peer_detector
from detectors.pipeline import RawMessage
from detectors.rules import load_pack
from riskflow.commands.train import train
from riskflow.core.metrics import Metrics
from riskflow.core.models import PeerModel, load_model
from riskflow.core.schema import encode_event, parse_event
from riskflow.simulate import simulate
from streams.peerdrift import PeerDriftObserver


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[bytes], PeerModel]:
    """A simulated history and a small peer-group model trained on it."""
    history = [encode_event(e) for e in simulate(entities=60, days=100, seed=11)[0]]
    out = tmp_path_factory.mktemp("models")
    train(history, out, trees=10, min_rows=5)
    return history, load_model(out)


def messages(values: list[bytes]) -> list[RawMessage]:
    return [RawMessage(v, "riskflow.fund-events", 0, i, None) for i, v in enumerate(values)]


def test_model_scores_come_back_with_each_batch_and_the_detector_keeps_none(
    trained: tuple[list[bytes], PeerModel],
) -> None:
    history, model = trained
    whole = build_processor(load_pack(), model=model)
    scores = whole.process(messages(history), {}.get, now=4e9).model_scores
    assert scores and {kind for kind, _ in scores} <= set(model.kinds)
    det = peer_detector(whole)
    assert det is not None and set(vars(det)) == {"warmup_days", "model", "model_version"}  # configuration only
    # In two batches: each reports its own scores, together the same as in one.
    split = build_processor(load_pack(), model=model)
    states: dict[str, EntityState] = {}
    got = []
    half = len(history) // 2
    for part in (messages(history)[:half], messages(history)[half:]):
        res = split.process(part, states.get, now=4e9)
        states.update({eid: st for eid, (st, _) in res.states.items()})
        got.append(res.model_scores)
    assert got[0] and got[1] and got[0] + got[1] == scores


def test_a_detector_run_alone_reports_no_scores_and_keeps_nothing(trained: tuple[list[bytes], PeerModel]) -> None:
    """Offline, outside a batch, nothing collects scores: nothing grows without bound."""
    history, model = trained
    det = peer_detector(build_processor(load_pack(), model=model))
    assert det is not None
    before = dict(vars(det))
    state = det.init_state()
    for raw in history:
        event = parse_event(raw)
        if det.applies_to(event):
            state, _ = det.process(state, event)
    assert vars(det) == before


def test_the_observer_counts_scores_per_kind_and_follows_a_new_model(trained: tuple[list[bytes], PeerModel]) -> None:
    history, model = trained
    registry = CollectorRegistry()
    metrics = Metrics.create(registry)
    bp = build_processor(load_pack(), model=model)
    peer = peer_detector(bp)
    assert peer is not None
    observer = PeerDriftObserver(peer, metrics)
    for kind in model.kinds:  # every kind of the model has its series from the start
        assert registry.get_sample_value("riskflow_model_scored_total", {"entity_kind": kind}) == 0
    scores = bp.process(messages(history), {}.get, now=4e9).model_scores
    observer.observe(scores)
    for kind in {k for k, _ in scores}:
        n = sum(1 for k, _ in scores if k == kind)
        assert registry.get_sample_value("riskflow_model_scored_total", {"entity_kind": kind}) == n
        assert registry.get_sample_value("riskflow_model_score_psi", {"entity_kind": kind}) is not None
    assert observer.drift.counts
    # A reload with another model: the drift index starts again.
    peer.set_model(dataclasses.replace(model, version="peer-next"))
    observer.observe([])
    assert observer.version == "peer-next" and not observer.drift.counts
    # No model: nothing is measured.
    peer.set_model(None)
    observer.observe(scores)
    assert not observer.drift.counts
