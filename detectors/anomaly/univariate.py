"""``univariate``: a streaming detector of one numeric value per event, with a graded score.

The core is :class:`~detectors.anomaly.graded.GradedNovelty`: the novelty of
each value against the entity's last ``history`` values (distance to the
nearest, over the range seen; a new extreme weighs more), reported only at
the onset of an anomalous run (a raw score that exceeds every one of the last
``onset_window``), mapped to a graded score in [0, 1), with the values of the
same hour of the day and of the week (event time, in the producer's offset) as
seasonal baselines. Explicit warm-up
(``warmup`` values scored 0). Every value is learned, flagged or not: a level
shift is reported once, at its start, and becomes the new normal as soon as it
has been seen, instead of an alarm forever; a slow drift never looks novel,
which is what ``anomaly.daily`` (sums per day against a seasonal baseline) is
for. ``riskflow bench nab`` runs this detector, with its defaults, over the
Numenta Anomaly Benchmark layout, one fresh state per file, through
:meth:`UnivariateAnomaly.step` (docs/anomaly.md).

As an event detector it watches one payload field of one event type per
entity (default: ``flow.transfer`` amounts, on a signed log scale); it is not in the
default set the worker runs (``anomaly.daily`` covers flows per day).

>>> det = UnivariateAnomaly(warmup=5)
>>> st = det.init_state()
>>> for v in [10, 11, 9, 10, 10, 11, 9, 10]:
...     st, s, r = det.score_value(st, v)
>>> st, s, r = det.score_value(st, 30)
>>> s >= 0.5, r > 1
(True, True)
"""

from __future__ import annotations

import copy
import math
from typing import Any

from detectors.anomaly.base import DIMENSION, AnomalyDetector, severity_for
from detectors.anomaly.graded import GradedNovelty
from detectors.base import Describe, Signal
from riskflow.core.schema import Event


class UnivariateAnomaly(AnomalyDetector):
    """Graded, onset-reporting novelty detector of one value stream (see module doc)."""

    kind = "univariate"
    id = "anomaly.univariate"
    version = "4"
    describe = Describe(
        name_zh="单笔数值异常",
        name_en="Abnormal value (streaming novelty, reported at onset) 单笔数值异常",
        dimension=DIMENSION,
        source="RiskFlow streaming univariate model (distance to the nearest recent value over the range seen)",
        rationale="A value unlike any of the entity's recent values, reported when such a run starts.",
    )
    learn_flagged = True

    def __init__(
        self,
        *,
        threshold: float = 0.5,
        event_type: str = "flow.transfer",
        field: str = "amount",
        log: bool = True,
        **scorer: float,
    ) -> None:
        """``scorer``: parameters of :class:`GradedNovelty` (``history``, ``onset_window``, ``warmup``, …)."""
        self.core = GradedNovelty(**scorer)  # type: ignore[arg-type]
        self.threshold = threshold
        self.event_type = event_type
        self.field = field
        self.log = log
        self.event_types = frozenset({event_type})
        c = self.core
        self.model_version = (
            f"univariate/{self.version}:history={c.history},onset={c.onset_window},warmup={c.warmup},scale={c.scale:g}"
        )

    def params(self) -> dict[str, Any]:
        return {
            **self.core.params(),
            "threshold": self.threshold,
            "event_type": self.event_type,
            "field": self.field,
            "log": self.log,
        }

    def init_state(self) -> list[Any]:
        return self.core.init_state()

    def score_value(self, st: list[Any], x: float) -> tuple[list[Any], float, float]:
        """Score ``x`` (already on the detector's scale) against the state, then learn it.

        Returns (state, score, raw novelty); ``st`` is left untouched.
        """
        return self.core.score_value(st, x)

    def step(self, st: list[Any], value: float, how: int | None = None) -> float:
        """Score a raw ``value`` (hour of the week ``how``), then learn it, updating ``st`` in place.

        What :meth:`process` does with an event's field, without the event: the
        runner of ``riskflow bench nab`` calls it, so the benchmark scores exactly
        what the detector scores.
        """
        return self.core.step(st, self.scaled(value), how)[0]

    def scaled(self, v: float) -> float:
        """The value on the detector's scale: ``sign(v) * log(1 + |v|)`` when ``log``, else ``v``.

        Counts, bytes and amounts grow multiplicatively; on a log scale twice the
        usual is as novel at any level. Monotone and defined for every value
        (negative ones too), with no look-ahead.
        """
        return math.copysign(math.log1p(abs(v)), v) if self.log and math.isfinite(v) else v

    def unscaled(self, y: float) -> float:
        """Inverse of :meth:`scaled`."""
        return math.copysign(math.expm1(min(abs(y), 700.0)), y) if self.log else y

    def _value(self, event: Event) -> float | None:
        v = getattr(event.payload, self.field, None)
        if isinstance(v, bool) or not isinstance(v, int | float):
            return None
        return self.scaled(float(v))

    def _step(self, state: Any, event: Event, in_place: bool) -> tuple[Any, list[Signal]]:
        """Score the event's value, then learn it: in ``state`` itself when ``in_place`` (the
        engine's call, as ``anomaly.daily`` does; the pipeline keeps its own copy for a
        rollback), else in a copy, so that :meth:`score_one` leaves ``state`` alone."""
        x = self._value(event)
        if x is None:
            return state, []
        new = state if in_place and isinstance(state, list) else copy.deepcopy(list(state))
        how = hour_of_week(event)
        _, near = self.core.raw(new, x, how)
        score, raw = self.core.step(new, x, how)
        if score < self.threshold:
            return new, []
        evidence = {
            "metric": f"{self.event_type}.{self.field}",
            "value": getattr(event.payload, self.field),
            "nearest_recent": round(self.unscaled(near), 6),
            "novelty": round(min(raw, 1e9), 4),
            "score": round(score, 4),
            "model_version": self.model_version,
        }
        return new, [Signal(self.id, event.event_id, severity_for(score), score, evidence)]

    def learn_one(self, state: Any, event: Event) -> Any:
        x = self._value(event)
        return state if x is None else self.core.score_value(list(state), x, hour_of_week(event))[0]

    def score_one(self, state: Any, event: Event) -> list[Signal]:
        return self._step(state, event, False)[1]

    def process(self, state: Any, event: Event) -> tuple[Any, list[Signal]]:
        return self._step(state, event, True)


def hour_of_week(event: Event) -> int:
    """``weekday * 24 + hour`` of the event time, in the offset the producer gave."""
    return event.event_time.weekday() * 24 + event.event_time.hour
