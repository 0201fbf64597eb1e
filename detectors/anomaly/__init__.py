"""Anomaly detectors: streaming per-entity baselines and a peer-group model.

Each detector kind is a module here with a class registered in
:data:`ANOMALY_KINDS` (see ``base.py``). :func:`anomaly_detectors` returns the
set the worker and every offline run use.

>>> [d.id for d in anomaly_detectors()]
['anomaly.daily']
>>> [d.id for d in anomaly_detectors(peer=True)]
['anomaly.daily', 'anomaly.peer']
"""

from __future__ import annotations

from detectors.anomaly import daily as _daily  # noqa: F401  (registers the kind)
from detectors.anomaly import peer as _peer  # noqa: F401
from detectors.anomaly import univariate as _univariate  # noqa: F401
from detectors.anomaly.base import ANOMALY_KINDS, DIMENSION, AnomalyDetector
from detectors.anomaly.daily import DailyAnomaly
from detectors.anomaly.peer import PeerGroupDetector
from detectors.anomaly.univariate import UnivariateAnomaly
from riskflow.core.models import PeerModel

__all__ = [
    "ANOMALY_KINDS",
    "DIMENSION",
    "AnomalyDetector",
    "DailyAnomaly",
    "PeerGroupDetector",
    "UnivariateAnomaly",
    "anomaly_detectors",
]


def anomaly_detectors(model: PeerModel | None = None, *, peer: bool = False) -> list[AnomalyDetector]:
    """The anomaly detectors a processor runs, with their default parameters.

    The peer-group detector is opt-in (``peer=True``, or a ``model``): measured on
    labelled simulated histories it adds almost no detection over the rules and
    ``anomaly.daily`` while flagging healthy firms (docs/anomaly.md).
    ``model``: the peer-group model (``riskflow train``); without one the peer
    detector flags nothing until a model is loaded.
    """
    if model is None and not peer:
        return [DailyAnomaly()]
    return [DailyAnomaly(), PeerGroupDetector(model)]
