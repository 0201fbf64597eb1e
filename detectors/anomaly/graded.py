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
* **Seasonal novelty.** Optionally (when the caller passes a season bucket,
  e.g. the hour of the day) the distance to the nearest of the last
  ``season_history`` values of the same bucket, over the same range, is added
  with weight ``season_weight``: a value common at 3 a.m. but never seen at
  8 a.m. (a holiday, a stalled service) is news at 8 a.m. After a new record
  (a new level) a bucket counts again only once it has seen a value since.
* **Onset reporting.** A raw score is reported only when it exceeds every raw
  score of the previous ``onset_window`` values; otherwise the score is 0. An
  anomalous run is reported once, at its start, and again only if it grows.

The reported score is ``raw / (raw + scale)`` in [0, 1), graded (not a tail
that saturates), so a single threshold can trade detections against false
alarms. Work per value is O(``history``) (a sorted list, bisect and one
insertion, plus ``season_history`` for the seasonal term); the state is
bounded by about ``2 * (history + onset_window) + season_buckets *
season_history`` numbers, a plain list that msgpack and pickle keep.

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
import math
from typing import Any

_N, _LO, _HI, _SORTED, _RING, _PENDING, _PEAKS, _HI_AT, _LO_AT, _SEASON, _SEASON_AT = range(11)
_SEASON_MIN = 5  # values a bucket needs before it counts


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
        season_buckets: int = 24,
        season_history: int = 20,
        season_weight: float = 0.05,
    ) -> None:
        self.history = max(1, int(history))
        self.exclude = max(0, int(exclude))
        self.beyond_weight = beyond_weight
        self.record_ramp = max(1, int(record_ramp))
        self.onset_window = max(1, int(onset_window))
        self.warmup = warmup
        self.scale = scale
        self.season_buckets = max(1, int(season_buckets))
        self.season_history = max(1, int(season_history))
        self.season_weight = season_weight

    def params(self) -> dict[str, Any]:
        return {
            "history": self.history,
            "exclude": self.exclude,
            "beyond_weight": self.beyond_weight,
            "record_ramp": self.record_ramp,
            "onset_window": self.onset_window,
            "warmup": self.warmup,
            "scale": self.scale,
            "season_buckets": self.season_buckets,
            "season_history": self.season_history,
            "season_weight": self.season_weight,
        }

    def init_state(self) -> list[Any]:
        """``[n, lo, hi, sorted, arrival order, pending, peaks, n at hi, n at lo, seasons, n last seen per season]``."""
        return [0, 0.0, 0.0, [], [], [], [], 0, 0, [[] for _ in range(self.season_buckets)], [-1] * self.season_buckets]

    def raw(self, st: list[Any], x: float, bucket: int | None = None) -> tuple[float, float]:
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
        b = None if bucket is None else bucket % self.season_buckets
        # A bucket counts only once it has seen a value since the last record (new level): a shift
        # to a new level is reported once, not again at each hour of the day that meets it.
        if b is not None and beyond == 0.0 and st[_SEASON_AT][b] > max(st[_HI_AT], st[_LO_AT]):
            same = st[_SEASON][b]
            if len(same) >= _SEASON_MIN:
                raw += self.season_weight * min(abs(x - y) for y in same) / rng
        return raw, near

    def score_value(self, st: list[Any], x: float, bucket: int | None = None) -> tuple[list[Any], float, float]:
        """Score ``x`` first, then learn it. Returns (new state, score in [0, 1), raw novelty).

        ``st`` is left untouched; :meth:`step` is the in-place variant. A
        non-finite ``x`` scores 0 and leaves the state as it was.
        """
        new = [*st[:_SORTED], list(st[_SORTED]), list(st[_RING]), list(st[_PENDING]), [list(p) for p in st[_PEAKS]]]
        new += [st[_HI_AT], st[_LO_AT], [list(b) for b in st[_SEASON]], list(st[_SEASON_AT])]
        score, r = self.step(new, x, bucket)
        return new, score, r

    def step(self, st: list[Any], x: float, bucket: int | None = None) -> tuple[float, float]:
        """:meth:`score_value` updating ``st`` in place. Returns (score, raw novelty).

        ``bucket``: the value's season (e.g. hour of the day), or None for no seasonal term.
        """
        if not math.isfinite(x):
            return 0.0, 0.0
        n = st[_N]
        r, _ = self.raw(st, x, bucket)
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
        if bucket is not None:
            same = st[_SEASON][bucket % self.season_buckets]
            same.append(x)
            if len(same) > self.season_history:
                same.pop(0)
            st[_SEASON_AT][bucket % self.season_buckets] = n
        if n == 0 or x > st[_HI]:
            st[_HI], st[_HI_AT] = x, n
        if n == 0 or x < st[_LO]:
            st[_LO], st[_LO_AT] = x, n
        st[_N] = n + 1
        return min(score, 1.0), r
