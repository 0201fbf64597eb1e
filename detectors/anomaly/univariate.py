"""``univariate``: a robust streaming detector of one numeric value per event.

The core is :meth:`UnivariateAnomaly.score_value`: an EWMA centre and an EWMA
mean absolute deviation (updates Huber-clipped at 3 scales), a robust z of
each new value against them, a two-sided normal tail mapped to [0, 1] by
:func:`~detectors.anomaly.base.tail_score`. Explicit warm-up (``warmup``
values scored 0), no learning from flagged values unless ``learn_flagged``
or until ``accept_after`` flagged values on balance (a level shift becomes
the new normal instead of an alarm forever). The state is a list of four
numbers. ``riskflow bench nab`` runs it over the Numenta Anomaly Benchmark
layout, one fresh state per file.

As an event detector it watches one payload field of one event type per
entity (default: ``flow.transfer`` amounts, on a log scale); it is not in the
default set the worker runs (``anomaly.daily`` covers flows per day).

>>> det = UnivariateAnomaly(warmup=5)
>>> st = det.init_state()
>>> for v in [10, 11, 9, 10, 10, 11, 9, 10]:
...     st, s, z = det.score_value(st, v)
>>> st, s, z = det.score_value(st, 30)
>>> s >= 0.5, z > 10
(True, True)
"""

from __future__ import annotations

import math
from typing import Any

from detectors.anomaly.base import DIMENSION, AnomalyDetector, normal_tail, severity_for, tail_score
from detectors.base import Describe, Signal
from riskflow.schema import Event

_MAD_TO_SIGMA = 1.2533
_N, _CENTRE, _MAD, _RUN = 0, 1, 2, 3


class UnivariateAnomaly(AnomalyDetector):
    """Robust EWMA / MAD detector of one value stream (see module doc)."""

    kind = "univariate"
    id = "anomaly.univariate"
    version = "1"
    describe = Describe(
        name_zh="单笔数值异常",
        name_en="Abnormal value (streaming robust baseline) 单笔数值异常",
        dimension=DIMENSION,
        source="RiskFlow streaming univariate model (EWMA centre, EWMA absolute deviation, robust z)",
        rationale="A value far outside the entity's own recent values.",
    )

    def __init__(
        self,
        *,
        span: float = 100.0,
        warmup: int = 30,
        threshold: float = 0.5,
        min_scale: float = 1e-9,
        rel_scale: float = 0.001,
        accept_after: int = 20,
        learn_flagged: bool = False,
        event_type: str = "flow.transfer",
        field: str = "amount",
        log: bool = True,
    ) -> None:
        self.span = span
        self.warmup = warmup
        self.threshold = threshold
        self.min_scale = min_scale
        self.rel_scale = rel_scale
        self.accept_after = accept_after
        self.learn_flagged = learn_flagged
        self.event_type = event_type
        self.field = field
        self.log = log
        self.event_types = frozenset({event_type})
        self.alpha = 2.0 / (span + 1.0)
        self.model_version = f"univariate/{self.version}:span={span:g},warmup={warmup},thr={threshold:g}"

    def params(self) -> dict[str, Any]:
        return {
            "span": self.span,
            "warmup": self.warmup,
            "threshold": self.threshold,
            "min_scale": self.min_scale,
            "rel_scale": self.rel_scale,
            "accept_after": self.accept_after,
            "learn_flagged": self.learn_flagged,
            "event_type": self.event_type,
            "field": self.field,
            "log": self.log,
        }

    def init_state(self) -> list[float]:
        return [0, 0.0, 0.0, 0]

    def score_value(self, st: list[Any], x: float) -> tuple[list[Any], float, float]:
        """Score ``x`` against the state, then learn it unless flagged. Returns (state, score, z)."""
        n, centre, mad, run = st
        if not math.isfinite(x):
            return st, 0.0, 0.0
        if n == 0:
            return [1, x, 0.0, 0], 0.0, 0.0
        scale = max(mad * _MAD_TO_SIGMA, self.rel_scale * abs(centre), self.min_scale)
        r = x - centre
        z = r / scale
        score = 0.0
        if n >= self.warmup:
            score = tail_score(2.0 * normal_tail(abs(z)))
        flagged = score >= self.threshold
        run = run + 1 if flagged else max(0, run - 1)
        if flagged and not self.learn_flagged and run < self.accept_after:
            return [n, centre, mad, run], score, z
        a = max(self.alpha, 1.0 / (n + 1.0))
        clip = 3.0 * scale if n >= self.warmup and not (flagged and run >= self.accept_after) else math.inf
        rc = max(-clip, min(clip, r))
        return [n + 1, centre + a * rc, mad + a * (abs(rc) - mad), run], score, z

    def _value(self, event: Event) -> float | None:
        v = getattr(event.payload, self.field, None)
        if isinstance(v, bool) or not isinstance(v, int | float):
            return None
        return math.log1p(max(float(v), 0.0)) if self.log else float(v)

    def _step(self, state: Any, event: Event) -> tuple[Any, list[Signal]]:
        x = self._value(event)
        if x is None:
            return state, []
        new, score, z = self.score_value(list(state), x)
        if score < self.threshold or state[_RUN] > 0:
            return new, []
        evidence = {
            "metric": f"{self.event_type}.{self.field}",
            "value": getattr(event.payload, self.field),
            "baseline": round(math.expm1(state[_CENTRE]) if self.log else state[_CENTRE], 6),
            "robust_z": round(z, 3),
            "score": round(score, 4),
            "model_version": self.model_version,
        }
        return new, [Signal(self.id, event.event_id, severity_for(score), score, evidence)]

    def learn_one(self, state: Any, event: Event) -> Any:
        x = self._value(event)
        return state if x is None else self.score_value(list(state), x)[0]

    def score_one(self, state: Any, event: Event) -> list[Signal]:
        return self._step(state, event)[1]

    def process(self, state: Any, event: Event) -> tuple[Any, list[Signal]]:
        return self._step(state, event)
