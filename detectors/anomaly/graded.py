"""``graded``: a graded, onset-reporting novelty score for one stream of numbers.

Shared by :class:`~detectors.anomaly.univariate.UnivariateAnomaly` (the
per-entity detector) and ``riskflow bench nab`` (the Numenta Anomaly
Benchmark), so that what the benchmark measures is what the product runs.

Two steps, each chosen because a saturated z-score tail failed NAB's test
(nearly binary scores, a flagged run firing on every point):

* **Value novelty.** The raw score of ``x`` is its distance to the nearest of
  the last ``history`` values (the ``exclude`` most recent ones left out, so a
  run is not its own neighbour), over the range of all values seen; a value
  beyond that range (a new record) counts up to ``1 + beyond_weight`` times
  its distance: fully once the record has held ``record_ramp`` values, less if
  it was set just before (among exchangeable values a new record after ``k``
  values has probability about ``1/k``, so fresh records are weak news). It needs
  no model of the distribution, handles seasonality and multi-modal series
  (every phase of a cycle has been seen before) and makes a new level normal
  as soon as it has been seen: the distance collapses after one value.
* **Seasonal novelty.** When the caller passes the value's hour of the week
  (``weekday * 24 + hour``), the distance to the nearest of the last
  ``daily_history`` values of the same hour of the day, and to the nearest of
  the last ``weekly_history`` values of the same hour of the week, over the
  same range, are added with weights ``daily_weight`` and ``weekly_weight``: a
  value common at 3 a.m. but never seen at 8 a.m. (a holiday, a stalled
  service), or common on Sundays but not on Mondays, is news. After a new
  record (a new level) a bucket counts again only once it has seen a value
  since, so a new level is reported once, not at every hour that meets it.
* **Onset reporting.** A raw score is reported only when it exceeds every raw
  score of the previous ``onset_window`` values; otherwise the score is 0. An
  anomalous run is reported once, at its start, and again only if it grows.

The reported score is ``raw / (raw + scale)`` in [0, 1), graded (not a tail
that saturates), so a single threshold can trade detections against false
alarms. Work per value is O(``history``) (a sorted list, bisect and one
insertion, plus the two seasonal buckets); the state is bounded by about
``2 * (history + onset_window) + 24 * daily_history + 168 * weekly_history``
numbers, a plain list that msgpack and pickle keep.

>>> g = GradedNovelty(warmup=10, onset_window=20)
>>> st = g.init_state()
>>> for v in [10, 11, 9, 10, 12, 10, 11, 9, 10, 11, 10, 12]:
...     st, s, r = g.score_value(st, v)
>>> s
0.0
>>> st, s, r = g.score_value(st, 30)  # far outside the range: reported
>>> s > 0.9
True
>>> st, s2, r = g.score_value(st, 31)  # the same run goes on: not reported again
>>> s2
0.0
"""

from __future__ import annotations

import bisect
import copy
import math
from typing import Any

_N, _LO, _HI, _SORTED, _RING, _PENDING, _PEAKS, _HI_AT, _LO_AT, _SEASONS, _SEASONS_AT = range(11)
_SEASON_MIN = 5  # values a bucket needs before it counts
_PERIODS = (24, 168)  # hours in a day, in a week


class GradedNovelty:
    """Value novelty with onset reporting (see module doc). Parameters are public attributes."""

    def __init__(
        self,
        *,
        history: int = 500,
        exclude: int = 1,
        beyond_weight: float = 10.0,
        record_ramp: int = 15,
        onset_window: int = 50,
        warmup: int = 30,
        scale: float = 0.03,
        daily_history: int = 20,
        daily_weight: float = 0.05,
        weekly_history: int = 5,
        weekly_weight: float = 0.01,
    ) -> None:
        self.history = max(1, int(history))
        self.exclude = max(0, int(exclude))
        self.beyond_weight = beyond_weight
        self.record_ramp = max(1, int(record_ramp))
        self.onset_window = max(1, int(onset_window))
        self.warmup = warmup
        self.scale = scale
        self.daily_history = max(1, int(daily_history))
        self.daily_weight = daily_weight
        self.weekly_history = max(1, int(weekly_history))
        self.weekly_weight = weekly_weight

    def params(self) -> dict[str, Any]:
        return {
            "history": self.history,
            "exclude": self.exclude,
            "beyond_weight": self.beyond_weight,
            "record_ramp": self.record_ramp,
            "onset_window": self.onset_window,
            "warmup": self.warmup,
            "scale": self.scale,
            "daily_history": self.daily_history,
            "daily_weight": self.daily_weight,
            "weekly_history": self.weekly_history,
            "weekly_weight": self.weekly_weight,
        }

    def init_state(self) -> list[Any]:
        """``[n, lo, hi, sorted, arrival order, pending, peaks, n at hi, n at lo, buckets, n last seen per bucket]``."""
        buckets: list[list[list[float]]] = [[[] for _ in range(p)] for p in _PERIODS]
        return [0, 0.0, 0.0, [], [], [], [], 0, 0, buckets, [[-1] * p for p in _PERIODS]]

    def _seasonal(self) -> tuple[tuple[int, int, float], ...]:
        """(period in hours, values kept per bucket, weight) of the daily and weekly terms."""
        return (24, self.daily_history, self.daily_weight), (168, self.weekly_history, self.weekly_weight)

    def raw(self, st: list[Any], x: float, how: int | None = None) -> tuple[float, float]:
        """(raw novelty of ``x``, nearest remembered value); 0 for the first value."""
        n, lo, hi, srt = st[_N], st[_LO], st[_HI], st[_SORTED]
        if n == 0:
            return 0.0, x
        rng = max(hi - lo, 1e-9 * max(1.0, abs(hi), abs(lo)))
        if not srt:
            return 1.0, x
        i = bisect.bisect_left(srt, x)
        near = srt[i] if i < len(srt) else srt[-1]
        if i > 0 and x - srt[i - 1] < abs(near - x):
            near = srt[i - 1]
        beyond = max(0.0, x - hi, lo - x)
        held = n - (st[_HI_AT] if x > hi else st[_LO_AT])
        weight = self.beyond_weight * min(1.0, held / self.record_ramp)
        raw = min(abs(x - near) / rng, 1.0) + weight * beyond / rng
        if how is None or beyond > 0.0:
            return raw, near
        record = max(st[_HI_AT], st[_LO_AT])
        for k, (period, _, w) in enumerate(self._seasonal()):
            b = how % period
            same = st[_SEASONS][k][b]
            # Silent until the bucket has seen a value since the last record (a new level).
            if w and len(same) >= _SEASON_MIN and st[_SEASONS_AT][k][b] > record:
                raw += w * min(abs(x - y) for y in same) / rng
        return raw, near

    def score_value(self, st: list[Any], x: float, how: int | None = None) -> tuple[list[Any], float, float]:
        """Score ``x`` first, then learn it. Returns (new state, score in [0, 1), raw novelty).

        ``st`` is left untouched; :meth:`step` is the in-place variant. A
        non-finite ``x`` scores 0 and leaves the state as it was.
        """
        new = copy.deepcopy(st)
        score, r = self.step(new, x, how)
        return new, score, r

    def step(self, st: list[Any], x: float, how: int | None = None) -> tuple[float, float]:
        """:meth:`score_value` updating ``st`` in place. Returns (score, raw novelty).

        ``how``: the value's hour of the week (``weekday * 24 + hour``), None for no seasonal terms.
        """
        if not math.isfinite(x):
            return 0.0, 0.0
        n = st[_N]
        r, _ = self.raw(st, x, how)
        if not math.isfinite(r):
            r = 1e300
        peaks = st[_PEAKS]
        while peaks and peaks[0][0] < n - self.onset_window:
            peaks.pop(0)
        reported = r > (peaks[0][1] if peaks else 0.0)
        while peaks and peaks[-1][1] <= r:
            peaks.pop()
        peaks.append([n, r])
        score = r / (r + self.scale) if reported and n >= self.warmup else 0.0
        srt, ring, pending = st[_SORTED], st[_RING], st[_PENDING]
        pending.append(x)
        if len(pending) > self.exclude:
            y = pending.pop(0)
            bisect.insort(srt, y)
            ring.append(y)
            if len(ring) > self.history:
                del srt[bisect.bisect_left(srt, ring.pop(0))]
        if how is not None:
            for k, (period, keep, _) in enumerate(self._seasonal()):
                same = st[_SEASONS][k][how % period]
                same.append(x)
                if len(same) > keep:
                    same.pop(0)
                st[_SEASONS_AT][k][how % period] = n
        if n == 0 or x > st[_HI]:
            st[_HI], st[_HI_AT] = x, n
        if n == 0 or x < st[_LO]:
            st[_LO], st[_LO_AT] = x, n
        st[_N] = n + 1
        return min(score, 1.0), r
