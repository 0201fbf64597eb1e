"""Anomaly detectors: the rule interface, with learning and a decision apart.

An anomaly detector is a :class:`detectors.base.Detector` like a rule, so the
engine, the worker and the backtest treat both alike. What differs is the
decision in :meth:`AnomalyDetector.process`: it *scores first* and, unless
``learn_flagged`` is set, does not fold a flagged observation into the
entity's baseline, so that a slow fraud cannot teach the baseline that it is
normal (river's ``anomaly.ThresholdFilter`` does the same).

Every subclass with a ``kind`` is registered in :data:`ANOMALY_KINDS`, which imports
every module of ``detectors/anomaly/`` when first read: a new detector is one module,
found by :func:`detectors.anomaly.anomaly_detectors` (when its class says it is in the
default set) and by the contract tests. Scores are in [0, 1]; tail
probabilities map to scores with :func:`tail_score` (``p = 1e-4`` -> 0.5,
``p = 1e-8`` -> 1.0), the same scale for every anomaly detector; :func:`graded_tail_score` is the same up
to ``p = 1e-6`` and keeps grading smaller tails instead of saturating.

>>> tail_score(1e-4), tail_score(1.0), tail_score(0.0)
(0.5, 0.0, 1.0)
>>> round(normal_tail(3.719), 6)
0.0001
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

from detectors.base import Detector, Signal
from riskflow.core.registry import Registry
from riskflow.core.schema import Event

if TYPE_CHECKING:
    from riskflow.core.models import PeerModel

#: kind name -> class, filled by subclasses that set ``kind`` (riskflow/core/registry.py).
ANOMALY_KINDS: Registry[AnomalyDetector] = Registry("detectors.anomaly", "anomaly detector")

#: The officer-facing dimension of every anomaly alert.
DIMENSION = "anomaly"

_TAIL_DECADES = 8.0  # p = 1e-8 maps to a score of 1


def tail_score(p: float) -> float:
    """Map a tail probability to a score in [0, 1] (log scale, 1e-8 -> 1)."""
    if p >= 1.0:
        return 0.0
    if p <= 0.0:
        return 1.0
    return min(1.0, max(0.0, -math.log10(p) / _TAIL_DECADES))


_HIGH_DECADES = 6.0  # p = 1e-6: score 0.75, the cut to severity "high" (severity_for)


def graded_tail_score(p: float) -> float:
    """:func:`tail_score` up to ``p = 1e-6`` (score 0.75), then graded towards 1 without reaching it.

    The threshold (0.5 at ``p = 1e-4``) and the severity cut (0.75 at ``p = 1e-6``) stay where
    they are, so a Bonferroni-calibrated flag rate is unchanged; beyond them, where
    :func:`tail_score` saturates at ``p = 1e-8``, ``1 - 0.25 * (6 / d) ** 3`` of the
    ``d = -log10(p)`` decades keeps ranking ever smaller tails, over the hundreds of decades
    a double holds (the power 3 makes the curve meet the straight part with its slope, 1/8
    per decade).

    >>> graded_tail_score(1e-4), graded_tail_score(1e-6)
    (0.5, 0.75)
    >>> 0.85 < graded_tail_score(1e-8) < graded_tail_score(1e-12) < graded_tail_score(1e-30) < 1.0
    True
    """
    if p <= 0.0:
        return 1.0
    d = -math.log10(min(p, 1.0))
    if d <= _HIGH_DECADES:
        return max(0.0, d / _TAIL_DECADES)
    return 1.0 - 0.25 * (_HIGH_DECADES / d) ** 3


def normal_tail(z: float) -> float:
    """P(Z >= z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def poisson_tail(k: float, lam: float) -> float:
    """P(X >= k) for X ~ Poisson(lam), continuous in ``k`` (used with quasi-Poisson scaling).

    Only the upper tail above the mean is needed; below it the answer is 1.

    >>> round(poisson_tail(3, 0.01), 9)
    1.65e-07
    >>> poisson_tail(0.5, 2.0)
    1.0
    """
    if k <= lam or k <= 0:
        return 1.0
    lam = max(lam, 1e-12)
    log_pmf = -lam + k * math.log(lam) - math.lgamma(k + 1.0)
    # sum_{i>=0} lam^i / ((k+1)...(k+i)): converges fast since k > lam.
    total, term, i = 1.0, 1.0, 1.0
    while i < 400:
        term *= lam / (k + i)
        total += term
        if term < 1e-12 * total:
            break
        i += 1.0
    return min(1.0, math.exp(log_pmf) * total)


def severity_for(score: float) -> str:
    """``high`` from p < 1e-6 (score 0.75), else ``medium``."""
    return "high" if score >= 0.75 else "medium"


class AnomalyDetector(Detector):
    """Base of every anomaly detector.

    Constructor arguments are public attributes and :meth:`params` returns
    them, so :meth:`clone` builds an identical, fresh detector. ``threshold``
    is the score from which an observation is flagged.

    >>> class Big(AnomalyDetector):
    ...     id = "demo.big"
    ...     def __init__(self, limit: float = 5.0) -> None:
    ...         self.limit = limit
    ...     def params(self):
    ...         return {"limit": self.limit}
    ...     def init_state(self):
    ...         return {"n": 0}
    ...     def learn_one(self, state, event):
    ...         return {"n": state["n"] + 1}
    ...     def score_one(self, state, event):
    ...         return [Signal(self.id, event.event_id, "medium", 1.0)] if state["n"] >= self.limit else []
    >>> Big(2).clone().limit
    2
    """

    kind: ClassVar[str] = ""
    #: In the set every processor runs (``anomaly_detectors()``); the golden backtest holds it.
    default: ClassVar[bool] = False
    #: Scores against a trained model (``riskflow train``), given as the first constructor
    #: argument; in the set when a model is given or asked for (``anomaly_detectors(peer=True)``).
    requires_model: ClassVar[bool] = False
    threshold: float = 0.5
    learn_flagged: bool = False
    model_version: str = ""

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        ANOMALY_KINDS.add(cls.kind, cls)

    @classmethod
    def with_defaults(cls, model: PeerModel | None = None) -> AnomalyDetector:
        """This detector with its default parameters (and ``model`` if it ``requires_model``)."""
        return cls(model) if cls.requires_model else cls()  # type: ignore[call-arg]

    def params(self) -> dict[str, Any]:
        """Constructor arguments, by name."""
        return {}

    def clone(self) -> AnomalyDetector:
        """A fresh detector with the same parameters."""
        return type(self)(**self.params())

    def process(self, state: Any, event: Event) -> tuple[Any, list[Signal]]:
        """Score first; learn only from what was not flagged (unless ``learn_flagged``)."""
        signals = self.score_one(state, event)
        if signals and not self.learn_flagged:
            return state, signals
        return self.learn_one(state, event), signals
