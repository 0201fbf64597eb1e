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

* **Damping by the stream's usual report.** A reported raw score ``r`` is
  multiplied by ``(scale / g) ** report_weight``, ``g`` the geometric mean of
  the last ``report_history`` reported raw scores of this stream: a stream
  whose onsets are routinely large (bursty traffic) needs more novelty for the
  same score. The small power keeps the scale mostly absolute.
* **Boost by the value's rank** (weights ``rank_weight``, ``run_weight``; 0
  turns it off): a report is multiplied by
  ``exp(rank_weight * |p| + run_weight * |m|)``, ``p`` the value's centred rank
  among its comparable recent values, ``m`` its mean over ``run_window``
  values: hours of raised or lowered traffic made of values each seen before.
  The comparable values are those of the same hour of the day when the stream
  shows a daily period (an analysis of variance over the hour-of-day buckets,
  significant at ``period_p``), else the last ``history`` values.

The onset window and the record ramp default to a third (at least 50 values)
and a half of the warm-up: the warm-up is the stretch known to be normal, and
both are measured against it.

The reported score is ``eff / (eff + scale)`` of the damped raw score, in [0, 1), graded (not a tail
that saturates), so a single threshold can trade detections against false
alarms. Work per value is O(``history``) (a sorted list, bisect and one
insertion, plus the two seasonal buckets); the state is bounded by about
``2 * (history + onset_window) + 25 * daily_history + 168 * weekly_history + report_history + run_window``
numbers (about 13,500 with the defaults, ~120 KB in msgpack), a plain list that msgpack and pickle keep.

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
_REPORTS, _RANKS, _MOMENTS = range(11, 14)
_SEASON_MIN = 5  # values a bucket needs before it counts
_PERIODS = (24, 168)  # hours in a day, in a week


class GradedNovelty:
    """Value novelty with onset reporting (see module doc). Parameters are public attributes."""

    def __init__(
        self,
        *,
        history: int = 3000,
        exclude: int = 1,
        beyond_weight: float = 10.0,
        record_ramp: int | None = None,
        onset_window: int | None = None,
        warmup: int = 30,
        scale: float = 0.03,
        daily_history: int = 100,
        daily_weight: float = 0.05,
        weekly_history: int = 30,
        weekly_weight: float = 0.01,
        report_history: int = 100,
        report_weight: float = 0.13,
        rank_weight: float = 0.0,
        run_weight: float = 0.0,
        run_window: int = 24,
        period_p: float = 1e-3,
    ) -> None:
        self.history = max(1, int(history))
        self.exclude = max(0, int(exclude))
        self.beyond_weight = beyond_weight
        self.warmup = warmup
        # The warm-up is the stretch the stream is known to be normal: the onset window and the
        # record ramp are fractions of it unless given (the onset window at least 50 values).
        self.record_ramp = max(1, int(record_ramp if record_ramp is not None else warmup // 2))
        self.onset_window = max(1, int(onset_window if onset_window is not None else max(50, warmup // 3)))
        self.scale = scale
        self.daily_history = max(1, int(daily_history))
        self.daily_weight = daily_weight
        self.weekly_history = max(1, int(weekly_history))
        self.weekly_weight = weekly_weight
        self.report_history = max(1, int(report_history))
        self.report_weight = report_weight
        self.rank_weight = rank_weight
        self.run_weight = run_weight
        self.run_window = max(1, int(run_window))
        self.period_p = period_p

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
            "report_history": self.report_history,
            "report_weight": self.report_weight,
            "rank_weight": self.rank_weight,
            "run_weight": self.run_weight,
            "run_window": self.run_window,
            "period_p": self.period_p,
        }

    def init_state(self) -> list[Any]:
        """``[n, lo, hi, sorted, arrival order, pending, peaks, n at hi, n at lo, buckets, n last seen per bucket,
        log raw novelty of recent reports, recent hour-of-day ranks, [sum, sum of squares] per hour of the day]``."""
        buckets: list[list[list[float]]] = [[[] for _ in range(p)] for p in _PERIODS]
        return [0, 0.0, 0.0, [], [], [], [], 0, 0, buckets, [[-1] * p for p in _PERIODS], [], [], _moments(buckets[0])]

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

    def damped(self, reports: list[float], r: float) -> float:
        """``r`` over the stream's usual report, to the power ``report_weight``: ``r * (scale / g) ** w``.

        ``g`` is the geometric mean of the raw novelty of the last ``report_history``
        reports (``r`` itself when there are none). A stream whose onsets are
        routinely large (bursty traffic, noisy sensors) needs a larger novelty for
        the same score; a quiet stream's first real jump scores higher. A small
        power keeps the scale mostly absolute: normalising fully (HTM's
        likelihood step) lost the contrast between streams and measured worse.
        """
        if not reports or not self.report_weight:
            return r
        g = math.exp(sum(reports) / len(reports))
        return r * (self.scale / g) ** self.report_weight

    def daily_period(self, st: list[Any]) -> bool:
        """Whether the hour of the day explains the stream's recent values beyond chance.

        A one-way analysis of variance over the hour-of-day buckets (those with at least
        5 values): the series shows a daily period when the F statistic's upper tail
        (Paulson's normal approximation) is below ``period_p``. A conventional
        significance level, not a fitted weight: it only decides whether ranks within
        an hour mean anything for this stream (sub-hourly traffic with a daily rhythm
        does; one value a day, or noise around a level, does not).
        """
        k, n, total, squares, between = 0, 0, 0.0, 0.0, 0.0
        for same, (s, ss) in zip(st[_SEASONS][0], st[_MOMENTS], strict=True):
            m = len(same)
            if m >= _SEASON_MIN:
                k, n, total, squares, between = k + 1, n + m, total + s, squares + ss, between + s * s / m
        if k < 2 or n <= k:
            return False
        ssb = max(between - total * total / n, 0.0)
        ssw = max(squares - between, 0.0)
        if ssw <= 1e-12 * max(1.0, squares):
            return ssb > 1e-12 * max(1.0, squares)
        return f_tail(ssb / (k - 1) / (ssw / (n - k)), k - 1, n - k) < self.period_p

    def boost(self, st: list[Any], x: float, how: int | None) -> float:
        """Learn ``x``'s rank among its comparable values; return the report's boost.

        ``exp(rank_weight * |p| + run_weight * |m|)``: ``p`` is the rank of ``x``
        among the last ``daily_history`` values of the same hour of the day when the
        stream shows a daily period (:meth:`daily_period`), else among the last
        ``history`` values; centred (-0.5 lowest, +0.5 highest; 0 with fewer than 5 of
        them, or while they still hold values older than the last record). ``m`` is the
        mean of ``p`` over the last ``run_window`` values. A novelty that comes with a
        value extreme among its peers, or inside a run of such values (hours of raised
        or lowered traffic each of whose values was seen before), counts more.
        """
        if not (self.rank_weight or self.run_weight):
            return 1.0
        # Ranks count only among values on the current level: a bucket that has seen a value since the
        # last record (a new level), or a history that holds nothing older than that record.
        record = max(st[_HI_AT], st[_LO_AT])
        srt: list[float] = st[_SORTED] if st[_N] - record > len(st[_RING]) else []
        if how is not None and self.daily_period(st):
            same = st[_SEASONS][0][how % 24]
            fresh = len(same) >= _SEASON_MIN and st[_SEASONS_AT][0][how % 24] > record
            srt = sorted(same) if fresh else []  # in C: cheaper than counting in Python
        p = 0.0
        if len(srt) >= _SEASON_MIN:
            p = (bisect.bisect_left(srt, x) + bisect.bisect_right(srt, x)) / (2 * len(srt)) - 0.5
        ranks = st[_RANKS]
        ranks.append(p)
        if len(ranks) > self.run_window:
            ranks.pop(0)
        return math.exp(self.rank_weight * abs(p) + self.run_weight * abs(sum(ranks) / len(ranks)))

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
        while len(st) <= _RANKS:  # a state saved by an earlier version: what it lacks starts empty
            st.append([])
        if len(st) <= _MOMENTS:
            st.append(_moments(st[_SEASONS][0]))
        n = st[_N]
        r, _ = self.raw(st, x, how)
        boost = self.boost(st, x, how)
        if not math.isfinite(r):
            r = 1e300
        peaks = st[_PEAKS]
        while peaks and peaks[0][0] < n - self.onset_window:
            peaks.pop(0)
        reported = r > (peaks[0][1] if peaks else 0.0)
        while peaks and peaks[-1][1] <= r:
            peaks.pop()
        peaks.append([n, r])
        score = 0.0
        if reported:
            eff = self.damped(st[_REPORTS], r) * boost
            if n >= self.warmup:
                score = eff / (eff + self.scale)
            reports = st[_REPORTS]
            reports.append(math.log(max(r, 1e-300)))
            if len(reports) > self.report_history:
                reports.pop(0)
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
                if k == 0:
                    mom = st[_MOMENTS][how % period]
                    mom[0] += x
                    mom[1] += x * x
                if len(same) > keep:
                    y = same.pop(0)
                    if k == 0:
                        mom[0] -= y
                        mom[1] -= y * y
                st[_SEASONS_AT][k][how % period] = n
        if n == 0 or x > st[_HI]:
            st[_HI], st[_HI_AT] = x, n
        if n == 0 or x < st[_LO]:
            st[_LO], st[_LO_AT] = x, n
        st[_N] = n + 1
        return min(score, 1.0), r


def _moments(buckets: list[list[float]]) -> list[list[float]]:
    """[sum, sum of squares] of each bucket's values."""
    return [[sum(b), sum(v * v for v in b)] for b in buckets]


def f_tail(f: float, d1: int, d2: int) -> float:
    """P(F >= f) for an F(d1, d2) variable, by Paulson's normal approximation (ample for a test at 1e-3).

    >>> round(f_tail(1.0, 23, 2000), 2), f_tail(10.0, 23, 2000) < 1e-10
    (0.46, True)
    """
    if f <= 0.0:
        return 1.0
    a, b = 2.0 / (9.0 * d1), 2.0 / (9.0 * d2)
    c = f ** (1.0 / 3.0)
    z = ((1.0 - b) * c - (1.0 - a)) / math.sqrt(a + c * c * b)
    return 0.5 * math.erfc(z / math.sqrt(2.0))
