"""Anomaly detectors: streaming per-entity baselines and a peer-group model.

Each detector kind is a module here with a class registered in
:data:`ANOMALY_KINDS` (see ``base.py``). :func:`anomaly_detectors` returns the
set the worker and every offline run use.

>>> [d.id for d in anomaly_detectors()]
['anomaly.daily']
"""

from __future__ import annotations

from detectors.anomaly import daily as _daily  # noqa: F401  (registers the kind)
from detectors.anomaly.base import ANOMALY_KINDS, DIMENSION, AnomalyDetector
from detectors.anomaly.daily import DailyAnomaly

__all__ = ["ANOMALY_KINDS", "DIMENSION", "AnomalyDetector", "DailyAnomaly", "anomaly_detectors"]


def anomaly_detectors() -> list[AnomalyDetector]:
    """The anomaly detectors a processor runs, with their default parameters."""
    return [DailyAnomaly()]
