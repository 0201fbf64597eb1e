"""Anomaly detectors: streaming per-entity baselines and a peer-group model.

Each detector kind is one module here with a class registered in
:data:`ANOMALY_KINDS` (see ``base.py``), found without a list (riskflow/core/registry.py).
:func:`anomaly_detectors` returns the set the worker and every offline run use: the
kinds whose class sets ``default``, and those that set ``requires_model`` when a model
is given or asked for. The class names below are exported for convenience only.

>>> [d.id for d in anomaly_detectors()]
['anomaly.daily']
>>> [d.id for d in anomaly_detectors(peer=True)]
['anomaly.daily', 'anomaly.peer']
"""

from __future__ import annotations

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

    The peer-group detector (``requires_model``) is opt-in (``peer=True``, or a ``model``): measured on
    labelled simulated histories it adds almost no detection over the rules and
    ``anomaly.daily`` while flagging healthy firms (docs/anomaly.md).
    ``model``: the peer-group model (``riskflow train``); without one the peer
    detector flags nothing until a model is loaded.
    """
    with_model = peer or model is not None
    return [
        cls.with_defaults(model)
        for cls in ANOMALY_KINDS.values()  # by kind name: a fixed order
        if cls.default or (cls.requires_model and with_model)
    ]
