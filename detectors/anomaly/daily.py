"""``daily``: per-entity, per-metric robust baselines over event-time days.

Each event adds to the entity's *open day* (a calendar day in China Standard
Time, derived from ``event_time``; never the wall clock). Metrics:

========================  =====  ==================================================
metric                    type   from
========================  =====  ==================================================
``retail_subscriptions``  count  ``fund.subscription`` below 1,000,000 CNY (under the qualified minimum)
``retail_investors``      count  distinct ``investor_id`` of the day's retail subscriptions
``redemption_requests``   count  ``fund.redemption_requested``
``complaints``            count  ``complaint.filed``
``lawsuits``              count  ``lawsuit.filed`` as defendant
``inflow``                level  log1p(CNY in: ``flow.transfer`` in + subscriptions), active days
``outflow``               level  log1p(CNY out: ``flow.transfer`` out + redemptions paid), active days
``nav_return``            level  NAV change since the previous report, report days
``sentiment``             level  mean ``opinion.published`` sentiment, days with opinions
========================  =====  ==================================================

Subscriptions count only *retail tickets*, below the 1,000,000 CNY minimum a
qualified investor puts into one private fund (《私募投资基金监督管理暂行办法》
第十二条): a burst of qualified (institutional, large) subscriptions is what a
successful fund looks like, while a burst of small tickets from the public is
the signature of illegal fundraising (非法集资, 《防范和处置非法集资条例》第二条).

*Count* metrics (every day counts, zero days too) keep an EWMA rate and
variance and score a day's count, and the last 7 days' sum, by a
quasi-Poisson upper tail (the variance/mean ratio, at least 1, rescales the
counts). Since a count only grows within a day, it is scored on every event
that adds to it, so an alert does not wait for the day to close; the result
is the same whatever the batching, as it depends only on the entity's own
event sequence. A count is flagged only when it also exceeds its expectation
by ``min_excess`` (3) events: two complaints against a firm that never has
any is not yet a pattern. *Level* metrics keep an EWMA centre and an EWMA mean
absolute deviation (updates Huber-clipped at 3 scales), with per-weekday
offsets for money flows, and are scored when the day closes (the entity's
first event on a later day) by a robust z on the normal tail, each with a
minimum effect in absolute terms:

- ``inflow`` / ``outflow`` must *persist*: a day is a hit when its one-sided
  tail is below ``persist_q`` (1e-3, robust z 3.09), and the metric is scored
  by the binomial tail of the hits among its last ``persist_n`` (14) observed
  days; three hits give p = 3.6e-7. One large transfer (a strategic
  investor's 30 million, a big redemption paid) never alarms on its own; a
  sustained shift of the money flowing in or out does.
- ``nav_return`` must move by at least ``nav_min`` (10 %) in one report.
- ``sentiment`` must be negative in absolute terms (a day's mean at most
  ``sentiment_max``, -0.3), not merely less glowing than usual.

*Calibration.* Each score is ``-log10(p) / 8`` of a tail probability ``p``
multiplied by the number of tests made per entity-day (14: each count metric
on its day and its 7-day window, each level metric), a Bonferroni bound. So the
threshold 0.5 means: on a day when nothing has changed, an entity raises a
flag with probability at most 1e-4, i.e. about one false flag per 27 entity-
years under the model's assumptions (the 7-day windows overlap, so the bound
is conservative). Beyond ``p = 1e-6`` (score 0.75, severity ``high``) the score
is graded towards 1 instead of saturating at ``p = 1e-8``
(:func:`~detectors.anomaly.base.graded_tail_score`), so that alerts keep their
order however small their tails; the threshold and the severity cut do not move.

Decision: a metric-day whose score reaches ``threshold`` is flagged; a flagged
day is not learned (a count day is kept out of the baseline when it is
flagged, or suspicious, and above the rate; a money-flow day that is a hit
stays out too), and a flag raises an alert (key
``<metric code>:<date>``, e.g. ``cmp:2025-01-29``; the evidence names the
metric) only when the metric's *run* is 0: the run grows by one
per flagged day and shrinks by one per other day, so a sustained shift, even
with quiet days in it, is one alert. After ``accept_after`` flagged days on
balance, the baseline learns the new level again.
Nothing is flagged before ``warmup_days`` days of the entity (count metrics)
or ``warmup_obs`` observed days of the metric (level metrics).

State: a :class:`~detectors.anomaly.daily_state.DailyState` (named fields, a
msgpack array of a few hundred bytes): the open day's sums, and per metric a
:class:`~detectors.anomaly.daily_state.CountBaseline` or
:class:`~detectors.anomaly.daily_state.LevelBaseline`. A state stored by an
earlier release (a dict) is migrated when it is read.

>>> from riskflow.core.schema import parse_event
>>> det = DailyAnomaly()
>>> def complaint(i, day):
...     return parse_event(('{"schema": "riskflow.event/v1", "event_id": "c%d", "event_type": "complaint.filed",'
...         '"entity_id": "PF-1", "entity_kind": "private_fund", "region": "330100",'
...         '"event_time": "2025-01-%02dT10:00:00+08:00", "source": "complaint_hotline",'
...         '"payload": {"channel": "12345", "category": "other"}}' % (i, day)).encode(), now=2e9)
>>> state, i = det.init_state(), 0
>>> for day in range(1, 29, 7):
...     i += 1
...     state, sig = det.process(state, complaint(i, day))
>>> sig
[]
>>> for _ in range(4):
...     i += 1
...     state, sig = det.process(state, complaint(i, 29))
...     if sig:
...         print(sig[0].key, sig[0].evidence["metric"], sig[0].evidence["value"], sig[0].evidence["baseline"])
cmp:2025-01-29 complaints 4 0.0666
"""

from __future__ import annotations

import copy
import datetime as _dt
import functools
import math
import zlib
from typing import Any

from detectors.anomaly.base import (
    DIMENSION,
    AnomalyDetector,
    graded_tail_score,
    normal_tail,
    poisson_tail,
    severity_for,
)
from detectors.anomaly.daily_state import RECENT_DAYS, CountBaseline, DailyState, LevelBaseline, restore
from detectors.base import Describe, Signal
from riskflow.core.schema import Event

_CST = 8 * 3600  # event-time days are China Standard Time calendar days
_DAY = 86400
_EPOCH = _dt.date(1970, 1, 1)

COUNT_METRICS = ("sub", "inv", "red", "cmp", "law")
LEVEL_METRICS = ("in", "out", "nav", "snt")
METRICS = COUNT_METRICS + LEVEL_METRICS

#: state code -> (name in evidence) ; the state keeps short codes to stay small.
METRIC_NAME = {
    "sub": "retail_subscriptions",
    "inv": "retail_investors",
    "red": "redemption_requests",
    "cmp": "complaints",
    "law": "lawsuits",
    "in": "inflow",
    "out": "outflow",
    "nav": "nav_return",
    "snt": "sentiment",
}
METRIC_ZH = {
    "sub": "小额认购笔数",
    "inv": "小额认购投资者数",
    "red": "赎回申请数",
    "cmp": "投诉数",
    "law": "被诉案件数",
    "in": "资金流入额",
    "out": "资金流出额",
    "nav": "净值变动",
    "snt": "舆情倾向",
}

#: level metric -> (direction, scale floor). +1: high is anomalous, -1: low, 0: both.
LEVEL_SPEC: dict[str, tuple[int, float]] = {
    "in": (1, 0.5),  # log units: a floor of ~65 % change
    "out": (1, 0.5),
    "nav": (0, 0.01),
    "snt": (-1, 0.1),
}

_EVENT_TYPES = frozenset(
    {
        "fund.subscription",
        "fund.redemption_requested",
        "fund.redemption_paid",
        "fund.nav_reported",
        "complaint.filed",
        "lawsuit.filed",
        "opinion.published",
        "flow.transfer",
    }
)
_SEASONAL = frozenset({"in", "out"})  # weekly offsets: money flows follow the working week
#: LEVEL_SPEC as the day close walks it, in its order: (metric, direction, floor, seasonal)
_LEVEL_STEPS = tuple((m, d, f, m in _SEASONAL) for m, (d, f) in LEVEL_SPEC.items())
_MAX_GAP_FOLD = 64  # zero days folded into a count baseline after a silence, at most
_MAX_INVESTORS = 64  # distinct investor hashes kept per open day; beyond, each subscription counts
_MAD_TO_SIGMA = 1.2533  # sigma / mean absolute deviation for a normal distribution
_HUBER = 3.0  # updates are clipped at this many scales
_PERSIST = frozenset({"in", "out"})  # level metrics scored by persistence (k hits of n days)
_SUB, _SUB_INV, _RED, _CMP, _LAW = ("sub",), ("sub", "inv"), ("red",), ("cmp",), ("law",)  # raised metrics
#: Tests per entity-day (each count metric on its day and 7-day window, each level metric): the
#: Bonferroni factor of every p-value, so that the threshold bounds the false-flag rate per entity-day.
TESTS_PER_DAY = 2 * len(COUNT_METRICS) + len(LEVEL_METRICS)
QUALIFIED_MINIMUM_CNY = 1_000_000.0  # 《私募投资基金监督管理暂行办法》第十二条: >= 1,000,000 CNY per fund


# -- the maths, each written once -------------------------------------------------------------------
def binomial_tail(k: int, n: int, q: float) -> float:
    """P(X >= k) for X ~ Binomial(n, q).

    >>> f"{binomial_tail(3, 14, 1e-3):.2g}"
    '3.6e-07'
    >>> binomial_tail(0, 14, 0.5)
    1.0
    """
    if k <= 0:
        return 1.0
    return min(1.0, sum(math.comb(n, i) * q**i * (1.0 - q) ** (n - i) for i in range(k, n + 1)))


#: The quasi-Poisson tails of the count metrics, memoised: many (count, rate) pairs recur (a quiet
#: metric sits at the ``min_rate`` floor with whole-number counts). A pure function, so bounded memory
#: and the same answers; no entity state lives here.
_poisson_tail = functools.lru_cache(maxsize=16384)(poisson_tail)


def bonferroni(p: float) -> float:
    """The p-value of one of the ``TESTS_PER_DAY`` tests of an entity-day, made good for all of them."""
    return min(1.0, p * TESTS_PER_DAY)


def ewma_weight(alpha: float, n: int) -> float:
    """The weight of the observation after ``n``: the plain mean's ``1 / (n + 1)`` while it is
    larger than ``alpha`` (a young baseline), then ``alpha``."""
    return max(alpha, 1.0 / (n + 1))


def ewma_step(mean: float, var: float, a: float, d: float) -> tuple[float, float]:
    """An EWMA mean and variance, weight ``a``, after an observation ``d`` above the mean."""
    return mean + a * d, var + a * (d * d - var)


def dispersion(rate: float, var: float) -> float:
    """The quasi-Poisson variance/mean ratio of a count, in [1, 10]."""
    return min(10.0, max(1.0, var / rate))


def count_tail(x: int | float, expected: float, disp: float) -> float:
    """P(count >= x) when ``expected`` is its mean: the Poisson tail of both rescaled by ``disp``."""
    return _poisson_tail(x / disp, expected / disp)


def count_ceiling(rate: float, var: float) -> float:
    """The largest count one day teaches a count baseline (a Huber clip of the high side):
    ``_HUBER`` quasi-Poisson deviations above the rate, the dispersion uncapped."""
    return rate + _HUBER * math.sqrt(rate * max(1.0, var / rate))


def huber_clip(r: float, clip: float) -> float:
    """``r`` limited to ``[-clip, clip]``: one outlier moves a baseline by a bounded step."""
    return max(-clip, min(clip, r))


def next_run(run: int, flagged: bool, held: bool) -> int:
    """A run of flagged days: +1 on a flagged day, unchanged when ``held``, else -1, at least 0."""
    return run + 1 if flagged else run if held else max(0, run - 1)


def _day_of(ts: float) -> int:
    return int((ts + _CST) // _DAY)


def _date(day: int) -> str:
    return (_EPOCH + _dt.timedelta(days=day)).isoformat()


class DailyAnomaly(AnomalyDetector):
    """Streaming per-entity anomaly detector over daily event-time metrics (see module doc).

    >>> DailyAnomaly(span_days=14).clone().span_days
    14
    """

    kind = "daily"
    default = True
    id = "anomaly.daily"
    version = "3"
    event_types = _EVENT_TYPES
    describe = Describe(
        name_zh="经营指标异常波动",
        name_en="Abnormal daily activity (streaming baseline)",
        dimension=DIMENSION,
        source="RiskFlow streaming anomaly model (EWMA / robust MAD baselines per entity and metric)",
        rationale="A metric far outside the entity's own history (robust, does not learn from flagged days) "
        "is an early sign of a scheme that no rule names yet.",
    )

    def __init__(
        self,
        *,
        span_days: float = 56.0,
        warmup_days: int = 14,
        warmup_obs: int = 8,
        threshold: float = 0.5,
        min_rate: float = 0.02,
        week_horizon: bool = True,
        seasonal: bool = True,
        learn_gate: float = 0.01,
        accept_after: int = 28,
        learn_flagged: bool = False,
        min_excess: float = 3.0,
        persist_q: float = 1e-3,
        persist_n: int = 14,
        nav_min: float = 0.10,
        sentiment_max: float = -0.3,
    ) -> None:
        self.span_days = span_days
        self.warmup_days = warmup_days
        self.warmup_obs = warmup_obs
        self.threshold = threshold
        self.min_rate = min_rate
        self.week_horizon = week_horizon
        self.seasonal = seasonal
        self.learn_gate = learn_gate
        self.accept_after = accept_after
        self.learn_flagged = learn_flagged
        self.min_excess = min_excess
        self.persist_q = persist_q
        self.persist_n = persist_n
        self.nav_min = nav_min
        self.sentiment_max = sentiment_max
        self.alpha = 2.0 / (span_days + 1.0)
        # Persistence scores depend only on the number of hits in the window: tabulated once, by hits.
        tails = [binomial_tail(k, persist_n, persist_q) for k in range(persist_n + 1)]
        self._persist_p = [bonferroni(p) for p in tails]
        self._persist_score = [graded_tail_score(p) for p in self._persist_p]
        self._persist_alarming = [score >= threshold for score in self._persist_score]
        self._persist_mask = (1 << persist_n) - 1
        self._quiet_p = bonferroni(1.0)  # a day that is not a hit
        self._quiet_score = graded_tail_score(self._quiet_p)
        self._weights_memo: dict[tuple[int, int], tuple[float, ...]] = {}
        self.model_version = f"daily/{self.version}:span={span_days:g},warmup={warmup_days},thr={threshold:g}"

    def __reduce__(self) -> tuple[Any, ...]:
        # pickles as the constructor call with its parameters, compiled (mypyc's native classes
        # keep no attribute through a default pickle) and interpreted alike
        return (functools.partial(type(self), **self.params()), ())

    def params(self) -> dict[str, Any]:
        return {
            "span_days": self.span_days,
            "warmup_days": self.warmup_days,
            "warmup_obs": self.warmup_obs,
            "threshold": self.threshold,
            "min_rate": self.min_rate,
            "week_horizon": self.week_horizon,
            "seasonal": self.seasonal,
            "learn_gate": self.learn_gate,
            "accept_after": self.accept_after,
            "learn_flagged": self.learn_flagged,
            "min_excess": self.min_excess,
            "persist_q": self.persist_q,
            "persist_n": self.persist_n,
            "nav_min": self.nav_min,
            "sentiment_max": self.sentiment_max,
        }

    def init_state(self) -> DailyState:
        return DailyState()

    def open_day(self, state: Any) -> int:
        """The entity's open day (days since 1970-01-01, CST) in a state as stored; -1: none yet.
        An event of an earlier day is left out of the daily metrics (``detectors/lateness.py``)."""
        return -1 if state is None else restore(state).day

    # -- the interface -----------------------------------------------------------------------------
    def learn_one(self, state: Any, event: Event) -> Any:
        """Fold the event in, learning every closed day (flagged or not)."""
        return self.process(copy.deepcopy(state), event, True)[0]

    def score_one(self, state: Any, event: Event) -> list[Signal]:
        return self.process(copy.deepcopy(state), event)[1]

    # Cost: an event adds to the open day (O(1)); a count metric it raised is scored at once, but the
    # two Poisson tails are computed only when the count exceeds its expectation by ``min_excess`` on
    # the day or the 7-day window (without that the flag is impossible, whatever the tails say). The
    # EWMA updates and the level metrics run once per entity-day, when the day closes.
    def process(self, st: Any, ev: Event, learn_all: bool | None = None) -> tuple[DailyState, list[Signal]]:
        """The hot path, the engine's call: mutates the state in place and returns it (a state
        read from storage comes back as a :class:`DailyState`). ``learn_all``: learn flagged days
        too (None: ``learn_flagged``; learn_one: True). The step itself, not a wrapper around one:
        a call less per event."""
        state = st if isinstance(st, DailyState) else restore(st)
        if learn_all is None:
            learn_all = self.learn_flagged
        day = _day_of(ev.ts)
        signals: list[Signal] = []
        open_day = state.day
        if day != open_day:
            if open_day < 0:
                state.day = day
            elif day < open_day:
                return state, signals  # late for a day already scored: left out of the daily metrics
            else:
                self._close_day(state, signals, learn_all)
                if day - open_day > 1:
                    self._skip_days(state, day - open_day - 1)
                state.day = day
                state.days += 1
                state.sums = {}
                state.investors = []
                state.flagged = []
        raised = self._add(state, ev)
        if raised and state.days >= self.warmup_days:
            for metric in raised:
                self._score_count(state, metric, signals)
        return state, signals

    # -- the open day ------------------------------------------------------------------------------
    def _add(self, st: DailyState, ev: Event) -> tuple[str, ...]:
        """Add the event to the open day; return the count metrics it raised."""
        sums = st.sums
        et = ev.event_type
        p: Any = ev.payload
        raised: tuple[str, ...]
        if et == "flow.transfer":
            key = "in" if p.direction == "in" else "out"
            sums[key] = sums.get(key, 0.0) + p.amount
            return ()
        if et == "fund.subscription":
            sums["in"] = sums.get("in", 0.0) + p.amount
            if p.amount >= QUALIFIED_MINIMUM_CNY:
                return ()
            raised = _SUB
            investors = st.investors
            h = zlib.crc32(p.investor_id.encode()) & 0xFFFF  # 16 bits: 3 msgpack bytes
            if len(investors) >= _MAX_INVESTORS:
                raised = _SUB_INV
            elif h not in investors:
                investors.append(h)
                raised = _SUB_INV
        elif et == "fund.redemption_paid":
            sums["out"] = sums.get("out", 0.0) + p.amount
            return ()
        elif et == "fund.redemption_requested":
            raised = _RED
        elif et == "complaint.filed":
            raised = _CMP
        elif et == "lawsuit.filed":
            if p.role != "defendant":
                return ()
            raised = _LAW
        elif et == "fund.nav_reported":
            prev = st.nav
            if prev > 0:
                sums["nav"] = (1.0 + sums.get("nav", 0.0)) * (p.nav / prev) - 1.0
            if p.nav > 0:
                st.nav = float(p.nav)
            return ()
        elif et == "opinion.published":
            sums["ss"] = sums.get("ss", 0.0) + p.sentiment
            sums["sn"] = sums.get("sn", 0.0) + 1.0
            return ()
        else:
            return ()
        counts = st.counts
        for metric in raised:
            sums[metric] = sums.get(metric, 0) + 1
            if metric not in counts:
                counts[metric] = CountBaseline()
        return raised

    # -- count metrics -----------------------------------------------------------------------------
    def _count_tail(self, c: CountBaseline, x: int | float) -> tuple[float, str, int | float, float, float]:
        """(p, horizon, value, expected, dispersion) of a count ``x`` on the open day: the more
        extreme of the day and the 7-day window.

        ``value`` is a count (an int; ``int | float``, as a plain ``float`` would make the compiled
        build turn it into a C double, and the evidence would read ``25.0``)."""
        rate = max(c.rate, self.min_rate)
        disp = dispersion(rate, c.var)
        best = (count_tail(x, rate, disp), "day", x, rate, disp)
        if self.week_horizon:
            wx = x + sum(c.recent)
            wp = count_tail(wx, 7.0 * rate, disp)
            if wp < best[0]:
                best = (wp, "7d", wx, 7.0 * rate, disp)
        return best

    def _excess_possible(self, c: CountBaseline, x: int | float) -> bool:
        """Whether the day or the 7-day window exceeds its expectation by ``min_excess``: a flag
        needs that excess on the horizon it is scored on, so without it no tail is worth computing."""
        rate = max(c.rate, self.min_rate)
        return x - rate >= self.min_excess or (self.week_horizon and x + sum(c.recent) - 7.0 * rate >= self.min_excess)

    def _score_count(self, st: DailyState, metric: str, signals: list[Signal]) -> None:
        """Score a count metric of the open day; record and (first day of a run) signal a flag."""
        if metric in st.flagged:
            return
        c = st.counts[metric]
        x = st.sums.get(metric, 0.0)
        if not self._excess_possible(c, x):
            return
        p, horizon, value, expected, disp = self._count_tail(c, x)
        p = bonferroni(p)
        score = graded_tail_score(p)
        if score < self.threshold or value - expected < self.min_excess:
            return
        st.flagged.append(metric)
        if c.run > 0:
            return  # the run of flagged days already raised its alert
        detail = {"value": value, "baseline": round(expected, 4), "dispersion": round(disp, 3)}
        signals.append(self._signal(metric, st.day, horizon, detail, p, score))

    def _close_counts(self, st: DailyState, learn_all: bool) -> None:
        """Fold the closing day into each count metric's baseline (run, rate, variance, recent days)."""
        sums = st.sums
        a = ewma_weight(self.alpha, st.days)
        gate = st.days >= self.warmup_days and not learn_all
        for metric, c in st.counts.items():
            x = sums.get(metric, 0)
            fired = metric in st.flagged
            run = c.run = next_run(c.run, fired, False)
            # A day above the rate stays out of the baseline while it is flagged or suspicious (7-day
            # tail below ``learn_gate``), so a shift cannot teach the baseline before it is flagged.
            # A quiet day after a spike keeps the window high but is learned. After ``accept_after``
            # flagged days in a row, the new level is accepted.
            rate = max(c.rate, self.min_rate)
            keep_out = (
                gate and x > rate and run < self.accept_after and (fired or self._count_tail(c, x)[0] < self.learn_gate)
            )
            if not keep_out:
                c.rate, c.var = ewma_step(c.rate, c.var, a, min(x, count_ceiling(rate, c.var)) - c.rate)
            del c.recent[0]
            c.recent.append(x)

    # -- level metrics -----------------------------------------------------------------------------
    def _close_day(self, st: DailyState, signals: list[Signal], learn_all: bool) -> None:
        """Close the open day: fold it into the count baselines, then score and learn each level
        metric it observed (a metric's first observed day only sets its centre)."""
        sums = st.sums
        if st.counts:  # most entities have no count metric yet
            self._close_counts(st, learn_all)
        if "sn" in sums:
            sums["snt"] = sums["ss"] / sums["sn"]
        if not sums:
            return
        weekday = (st.day + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
        levels = st.levels
        for metric, direction, floor, seasonal in _LEVEL_STEPS:
            if metric not in sums:
                continue
            raw = sums[metric]
            v = math.log1p(raw) if seasonal else raw
            lv = levels.get(metric)
            if lv is None:
                levels[metric] = LevelBaseline(centre=v, offsets=[0.0] * 7 if seasonal else [])
                continue
            self._close_level(st, metric, lv, v, raw, direction, floor, weekday, learn_all, signals)

    def _persistence(self, st: DailyState, metric: str, p_day: float) -> tuple[bool, int]:
        """Record whether a money flow's closing day is a *hit* (one-day tail at most ``persist_q``);
        return it and the number of hits among the last ``persist_n`` observed days."""
        hit = p_day <= self.persist_q
        mask = st.hits[metric] = ((st.hits.get(metric, 0) << 1) | hit) & self._persist_mask
        return hit, mask.bit_count()

    def _large_enough(self, metric: str, raw: float) -> bool:
        """The minimum effect in absolute terms: a NAV move of ``nav_min``, a negative sentiment."""
        if metric == "nav":
            return abs(raw) >= self.nav_min
        if metric == "snt":
            return raw <= self.sentiment_max
        return True

    def _close_level(
        self,
        st: DailyState,
        metric: str,
        lv: LevelBaseline,
        v: float,
        raw: float,
        direction: int,
        floor: float,
        weekday: int,
        learn_all: bool,
        signals: list[Signal],
    ) -> None:
        """Score a level metric's closing day (value ``v``; ``raw`` before the log of money flows),
        then learn it unless it is held out."""
        seasonal = self.seasonal and len(lv.offsets) > 0
        offset = lv.offsets[weekday] if seasonal else 0.0
        expected = lv.centre + offset
        scale = max(lv.mad * _MAD_TO_SIGMA, floor)
        r = v - expected
        z = r / scale
        flagged = hold = alarming = False
        warm_obs = lv.n >= self.warmup_obs
        if warm_obs and st.days >= self.warmup_days:
            tail_z = z if direction > 0 else -z if direction < 0 else abs(z)
            p_day = min(1.0, normal_tail(tail_z) * (2.0 if direction == 0 else 1.0))
            if metric in _PERSIST:
                # Scored by the binomial tail of the hits in the window (tabulated, see __init__); while
                # the window holds enough hits, quiet days in it do not end the run, and a hit is not learned.
                hit, hits = self._persistence(st, metric, p_day)
                p, score = (
                    (self._persist_p[hits], self._persist_score[hits]) if hit else (self._quiet_p, self._quiet_score)
                )
                alarming = self._persist_alarming[hits]
                hold = hit
            else:
                hits = -1
                p = bonferroni(p_day if self._large_enough(metric, raw) else 1.0)
                score = graded_tail_score(p)
            flagged = score >= self.threshold
            hold = hold or flagged
            if flagged and lv.run == 0:
                base = math.expm1(expected) if metric in _SEASONAL else expected
                detail: dict[str, Any] = {"value": round(raw, 6), "baseline": round(base, 6), "robust_z": round(z, 3)}
                if hits >= 0:
                    detail.update(hits=hits, of_days=self.persist_n)
                signals.append(self._signal(metric, st.day, "day", detail, p, score))
        run = lv.run = next_run(lv.run, flagged, alarming)
        if hold and not learn_all and run < self.accept_after:
            return
        a = ewma_weight(self.alpha, lv.n)
        rc = huber_clip(r, _HUBER * scale if warm_obs else math.inf)
        lv.n += 1
        centre = lv.centre = lv.centre + a * rc
        lv.mad += a * (abs(rc) - lv.mad)
        if seasonal:
            # Additive Holt-Winters: the weekday offset learns what the level does not explain.
            # Each offset is updated once a week, so at a faster rate than the level.
            lv.offsets[weekday] += min(0.5, 4.0 * a) * (expected + rc - centre - offset)

    def _signal(self, metric: str, day: int, horizon: str, detail: dict[str, Any], p: float, score: float) -> Signal:
        """The signal of a metric's flagged day: its key is ``<metric code>:<date>``."""
        date = _date(day)
        return Signal(
            self.id,
            f"{metric}:{date}",
            severity_for(score),
            score,
            {
                "metric": METRIC_NAME[metric],
                "metric_zh": METRIC_ZH[metric],
                "horizon": horizon,
                "day": date,
                **detail,
                "p_value": p,
                "score": round(score, 4),
                "model_version": self.model_version,
            },
        )

    # -- silent days -------------------------------------------------------------------------------
    def _skip_days(self, st: DailyState, gap: int) -> None:
        """Fold the silent days between two events into the count baselines as zero days."""
        if gap <= 0:
            return
        if st.counts:  # most entities have no count metric yet: no weights to compute
            weights = self._zero_weights(st.days, min(gap, _MAX_GAP_FOLD))
            keep = max(0, RECENT_DAYS - gap)
            for c in st.counts.values():
                c.run = max(0, c.run - gap)
                rate, var = c.rate, c.var
                for a in weights:
                    rate, var = ewma_step(rate, var, a, -rate)  # a zero day: nothing above the Huber clip
                c.rate, c.var = rate, var
                c.recent = c.recent[RECENT_DAYS - keep :] + [0] * (RECENT_DAYS - keep) if keep else [0] * RECENT_DAYS
        for lv in st.levels.values():
            if lv.run:  # at 0 it stays 0 (the common case), no store needed
                lv.run = max(0, lv.run - gap)
        st.days += gap

    def _zero_weights(self, n: int, k: int) -> tuple[float, ...]:
        """``ewma_weight(alpha, n + i)`` for ``i < k``, memoised: past ``n + 1 >= 1 / alpha``
        every weight is ``alpha`` (one tuple per gap length), and young entities repeat too."""
        key = (n, k) if 1.0 / (n + 1) > self.alpha else (-1, k)
        w = self._weights_memo.get(key)
        if w is None:
            if len(self._weights_memo) >= 4096:  # bounded: a pure function, entries are rebuilt
                self._weights_memo.clear()
            w = self._weights_memo[key] = tuple([ewma_weight(self.alpha, n + i) for i in range(k)])
        return w
