"""The peer-drift observer: the peer-group model's scores of each batch into metrics.

Per batch, the scores the peer-group model computed (``BatchResult.model_scores``) are
counted per entity kind (``riskflow_model_scored_total``) and fed to the drift index of
recent scores against the model's training scores (``riskflow_model_drift``). A newly
loaded model (a reload control message) restarts the drift index.
"""

from __future__ import annotations

from detectors.anomaly import PeerGroupDetector
from riskflow.core.metrics import Metrics
from riskflow.core.models import DriftTracker


class PeerDriftObserver:
    """Scores and drift of ``peer``'s model, per batch, into ``metrics``.

    >>> from prometheus_client import CollectorRegistry
    >>> metrics = Metrics.create(CollectorRegistry())
    >>> observer = PeerDriftObserver(PeerGroupDetector(), metrics)
    >>> observer.observe([("bank", 0.4)])  # no model loaded: nothing to measure against
    >>> observer.version
    ''
    """

    def __init__(self, peer: PeerGroupDetector, metrics: Metrics, drift: DriftTracker | None = None) -> None:
        self.peer = peer
        self.metrics = metrics
        self.drift = drift if drift is not None else DriftTracker()
        #: The version of the model the drift index follows ("": none yet).
        self.version = ""
        self.follow_model()

    def follow_model(self) -> None:
        """A newly loaded model: the drift index restarts, and its kinds' series exist from now on."""
        model = self.peer.model
        if model is None or model.version == self.version:
            return
        self.drift.reset()
        self.version = model.version
        for kind in model.kinds:
            self.metrics.model_scored.labels(entity_kind=kind).inc(0)

    def observe(self, scores: list[tuple[str, float]]) -> None:
        """One batch's (entity kind, score) pairs."""
        model = self.peer.model
        if model is None:
            return
        self.follow_model()
        if scores:
            psi = self.drift.update(scores, {k: km.reference for k, km in model.kinds.items()})
            self.metrics.observe_model_scores(scores, psi)
