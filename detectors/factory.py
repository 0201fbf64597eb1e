"""The one place that assembles detectors into a processor.

The live worker (``streams/topology.py``) and every offline entry point
(backtest, benchmarks) call :func:`build_processor`, so they run the very same
detectors, rule pack and parameters; :func:`processor_from_settings` and
:func:`pack_from_settings` apply every processing setting (risk configuration,
LPR constant, lateness, skew, limits), so an offline run honours every setting
the live worker does.

>>> from detectors.rules import load_pack
>>> bp = build_processor(load_pack())
>>> len(bp.engine.detectors) >= 3
True
>>> from riskflow.core.settings import Settings
>>> bp = processor_from_settings(Settings(lpr_1y=0.031), pack_from_settings(Settings(lpr_1y=0.031)))
>>> bp.engine.pack_version != "", bp.max_skew
(True, 604800.0)
"""

from __future__ import annotations

from detectors.anomaly import PeerGroupDetector, anomaly_detectors
from detectors.engine import Engine
from detectors.lateness import DEFAULT_ALLOWED_LATENESS
from detectors.pipeline import DEFAULT_MAX_SKEW, BatchProcessor
from detectors.risk import RiskConfig, RiskScorer, load_risk_config
from detectors.rules import RulePack, load_pack
from riskflow.core.models import PeerModel
from riskflow.core.schema import DEFAULT_MAX_BYTES, DEFAULT_MAX_FUTURE_SECONDS
from riskflow.core.settings import Settings


def build_processor(
    pack: RulePack,
    *,
    dedup_window: int = 64,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_future_seconds: float = DEFAULT_MAX_FUTURE_SECONDS,
    anomaly: bool = True,
    risk: RiskConfig | None = None,
    model: PeerModel | None = None,
    links_topic: str | None = None,
    allowed_lateness: float | None = DEFAULT_ALLOWED_LATENESS,
    peer: bool = False,
    max_skew: float = DEFAULT_MAX_SKEW,
) -> BatchProcessor:
    """``anomaly``: also run the anomaly detectors (``detectors/anomaly``) after the rules,
    with ``model`` as the peer-group model (see :func:`peer_detector` to swap it later); the
    peer-group detector runs only with a ``model`` or ``peer=True`` (opt-in).
    ``risk``: the risk-index configuration (default: the shipped ``detectors/risk/risk.yaml``).
    ``links_topic``: the live worker's internal contagion topic; offline runs leave it unset.
    ``allowed_lateness``: event-time seconds; older events go to the late ledger (detectors/lateness.py).
    ``max_skew``: event-time seconds an event may run ahead of its partition and still move its
    time (detectors/pipeline.Lane)."""
    detectors = [*pack.detectors, *(anomaly_detectors(model, peer=peer) if anomaly else ())]
    scorer = RiskScorer(risk if risk is not None else load_risk_config())
    engine = Engine(
        detectors,
        dedup_window=dedup_window,
        pack_version=pack.version,
        risk=scorer,
        allowed_lateness=allowed_lateness,
    )
    return BatchProcessor(
        engine, max_bytes=max_bytes, max_future_seconds=max_future_seconds, links_topic=links_topic, max_skew=max_skew
    )


def peer_detector(bp: BatchProcessor) -> PeerGroupDetector | None:
    """The processor's peer-group detector, whose model a worker swaps on a reload message."""
    for det in bp.engine.detectors:
        if isinstance(det, PeerGroupDetector):
            return det
    return None


def pack_constants(settings: Settings) -> dict[str, float] | None:
    """The named constants a rule pack may cite (``{const: lpr_1y, ...}``)."""
    return {"lpr_1y": settings.lpr_1y} if settings.lpr_1y is not None else None


def pack_from_settings(settings: Settings, path: str | None = None) -> RulePack:
    """The rule pack at ``path`` (default: the built-in pack) with the settings' constants."""
    return load_pack(path, constants=pack_constants(settings))


def processor_from_settings(
    settings: Settings, pack: RulePack, *, links_topic: str | None = None, peer: bool | None = None
) -> BatchProcessor:
    """The batch processor of ``pack`` with every processing setting applied. ``links_topic``:
    the live worker's contagion topic (offline: None, links are delivered in-process)."""
    return build_processor(
        pack,
        dedup_window=settings.dedup_window,
        max_bytes=settings.max_event_bytes,
        max_future_seconds=settings.max_future_seconds,
        risk=load_risk_config(settings.risk_config),
        links_topic=links_topic,
        allowed_lateness=settings.allowed_lateness,
        max_skew=settings.max_event_skew,
        peer=settings.model_dir is not None if peer is None else peer,  # the peer-group model is opt-in
    )
