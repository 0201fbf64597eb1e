"""The one place that assembles detectors into a processor.

The live worker (``streams/topology.py``) and every offline entry point
(backtest, benchmarks) call :func:`build_processor`, so they run the very same
detectors, rule pack and parameters.

>>> from detectors.rules import load_pack
>>> bp = build_processor(load_pack())
>>> len(bp.engine.detectors) >= 3
True
"""

from __future__ import annotations

from detectors.anomaly import anomaly_detectors
from detectors.engine import Engine
from detectors.pipeline import BatchProcessor
from detectors.rules import RulePack
from riskflow.schema import DEFAULT_MAX_BYTES, DEFAULT_MAX_FUTURE_SECONDS


def build_processor(
    pack: RulePack,
    *,
    dedup_window: int = 64,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_future_seconds: float = DEFAULT_MAX_FUTURE_SECONDS,
    anomaly: bool = True,
) -> BatchProcessor:
    """``anomaly``: also run the anomaly detectors (``detectors/anomaly``) after the rules."""
    detectors = [*pack.detectors, *(anomaly_detectors() if anomaly else ())]
    engine = Engine(detectors, dedup_window=dedup_window, pack_version=pack.version)
    return BatchProcessor(engine, max_bytes=max_bytes, max_future_seconds=max_future_seconds)
