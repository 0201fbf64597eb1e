"""The processor and rule pack as the settings say: one place for the worker, the backtest and
the benchmarks, so that an offline run honours every setting the live worker does (risk
configuration, LPR constant, lateness, skew, limits).

>>> from riskflow.settings import Settings
>>> bp = processor_from_settings(Settings(lpr_1y=0.031), pack_from_settings(Settings(lpr_1y=0.031)))
>>> bp.engine.pack_version != "", bp.max_skew
(True, 604800.0)
"""

from __future__ import annotations

from detectors.factory import build_processor
from detectors.pipeline import BatchProcessor
from detectors.risk import load_risk_config
from detectors.rules import RulePack, load_pack
from riskflow.settings import Settings


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
