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
is conservative).

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

State (msgpack-friendly, a few hundred bytes): ``{"day", "days", "acc",
"inv", "fired", "c": {metric: [rate, var, run, last 6 days...]}, "l":
{metric: [n, centre, mad, run, 7 weekday offsets]}, "h": {metric: bit mask
of the hits among its last 14 observed days}, "nav"}``.

>>> from riskflow.schema import parse_event
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
    poisson_tail,
    severity_for,
    tail_score,
)
from detectors.base import Describe, Signal
from riskflow.schema import Event

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

#: level metric -> (direction, scale floor, transform). +1: high is anomalous, -1: low, 0: both.
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
_C_RATE, _C_VAR, _C_RUN, _C_RING = 0, 1, 2, 3  # count state layout: [rate, var, run, 6 past days]
_L_N, _L_CENTRE, _L_MAD, _L_RUN, _L_SEAS = 0, 1, 2, 3, 4  # level layout: [n, centre, mad, run, 7 offsets]
_SQRT2 = math.sqrt(2.0)
_MAD_TO_SIGMA = 1.2533  # sigma / mean absolute deviation for a normal distribution
_PERSIST = frozenset({"in", "out"})  # level metrics scored by persistence (k hits of n days)
_SUB, _SUB_INV, _RED, _CMP, _LAW = ("sub",), ("sub", "inv"), ("red",), ("cmp",), ("law",)  # raised metrics
#: Tests per entity-day (each count metric on its day and 7-day window, each level metric): the
#: Bonferroni factor of every p-value, so that the threshold bounds the false-flag rate per entity-day.
TESTS_PER_DAY = 2 * len(COUNT_METRICS) + len(LEVEL_METRICS)
QUALIFIED_MINIMUM_CNY = 1_000_000.0  # 《私募投资基金监督管理暂行办法》第十二条: >= 1,000,000 CNY per fund


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
    id = "anomaly.daily"
    version = "2"
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
        # binomial_tail(hits, persist_n, persist_q) for every possible number of hits, computed once
        self._persist_tail = [binomial_tail(k, persist_n, persist_q) for k in range(persist_n + 1)]
        self._persist_alarming = [tail_score(min(1.0, p * TESTS_PER_DAY)) >= threshold for p in self._persist_tail]
        self._persist_mask = (1 << persist_n) - 1
        # The final (Bonferroni) p-value and its score for each number of hits, on a hit day
        # (a day that is not a hit scores p = 1): the expressions of _level, evaluated once.
        self._persist_p = [min(1.0, p * TESTS_PER_DAY) for p in self._persist_tail]
        self._persist_score = [tail_score(p) for p in self._persist_p]
        self._quiet_p = min(1.0, 1.0 * TESTS_PER_DAY)
        self._quiet_score = tail_score(self._quiet_p)
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

    def init_state(self) -> dict[str, Any]:
        return {"day": -1, "days": 0, "acc": {}, "inv": [], "fired": [], "c": {}, "l": {}, "h": {}, "nav": 0.0}

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
    def process(self, st: Any, ev: Event, learn_all: bool | None = None) -> tuple[Any, list[Signal]]:
        """The hot path, the engine's call: mutates ``st`` in place (the engine stores what is
        returned). ``learn_all``: learn flagged days too (None: ``learn_flagged``; learn_one: True).
        The step itself, not a wrapper around one: a call less per event."""
        if learn_all is None:
            learn_all = self.learn_flagged
        day = int((ev.ts + _CST) // _DAY)
        signals: list[Signal] = []
        open_day = st["day"]
        if day != open_day:
            if open_day < 0:
                st["day"] = day
            elif day < open_day:
                return st, signals  # late for a day already scored: left out of the daily metrics
            else:
                self._close_day(st, signals, learn_all)
                if day - open_day > 1:
                    self._skip_days(st, day - open_day - 1)
                st["day"] = day
                st["days"] += 1
                st["acc"] = {}
                st["inv"] = []
                st["fired"] = []
        raised = self._add(st, ev)
        if raised and st["days"] >= self.warmup_days:
            for metric in raised:
                self._score_count(st, metric, signals)
        return st, signals

    # -- internals ---------------------------------------------------------------------------------
    def _add(self, st: dict[str, Any], ev: Event) -> tuple[str, ...]:
        """Add the event to the open day; return the count metrics it raised."""
        acc = st["acc"]
        et = ev.event_type
        p: Any = ev.payload
        raised: tuple[str, ...]
        if et == "flow.transfer":
            key = "in" if p.direction == "in" else "out"
            acc[key] = acc.get(key, 0.0) + p.amount
            return ()
        if et == "fund.subscription":
            acc["in"] = acc.get("in", 0.0) + p.amount
            if p.amount >= QUALIFIED_MINIMUM_CNY:
                return ()
            raised = _SUB
            inv = st["inv"]
            h = zlib.crc32(p.investor_id.encode()) & 0xFFFF  # 16 bits: 3 msgpack bytes
            if len(inv) >= _MAX_INVESTORS:
                raised = _SUB_INV
            elif h not in inv:
                inv.append(h)
                raised = _SUB_INV
        elif et == "fund.redemption_paid":
            acc["out"] = acc.get("out", 0.0) + p.amount
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
            prev = st["nav"]
            if prev > 0:
                acc["nav"] = (1.0 + acc.get("nav", 0.0)) * (p.nav / prev) - 1.0
            if p.nav > 0:
                st["nav"] = float(p.nav)
            return ()
        elif et == "opinion.published":
            acc["ss"] = acc.get("ss", 0.0) + p.sentiment
            acc["sn"] = acc.get("sn", 0.0) + 1.0
            return ()
        else:
            return ()
        counts = st["c"]
        for metric in raised:
            acc[metric] = acc.get(metric, 0) + 1
            if metric not in counts:
                counts[metric] = [0.0, 0.0, 0, 0, 0, 0, 0, 0, 0]
        return raised

    def _count_tail(self, st: dict[str, Any], metric: str) -> tuple[float, str, int | float, float, float]:
        """(p, horizon, value, expected, dispersion): the more extreme of the day and the 7-day window.

        ``value`` is a count (an int; ``int | float``, as a plain ``float`` would make the compiled
        build turn it into a C double, and the evidence would read ``25.0``)."""
        c = st["c"][metric]
        x = st["acc"].get(metric, 0.0)
        rate = max(c[_C_RATE], self.min_rate)
        disp = min(10.0, max(1.0, c[_C_VAR] / rate))
        p = _poisson_tail(x / disp, rate / disp)
        best = (p, "day", x, rate, disp)
        if self.week_horizon:
            wx = x + sum(c[_C_RING:])
            wp = _poisson_tail(wx / disp, 7.0 * rate / disp)
            if wp < p:
                best = (wp, "7d", wx, 7.0 * rate, disp)
        return best

    def _score_count(self, st: dict[str, Any], metric: str, signals: list[Signal]) -> bool:
        """Score a count metric of the open day; record and (first day of a run) signal a flag."""
        if metric in st["fired"]:
            return True
        # A flag needs ``value - expected >= min_excess`` on the horizon with the smaller tail: when
        # neither horizon has that excess, no tail can flag (the same comparisons as below, made first).
        c = st["c"][metric]
        x = st["acc"].get(metric, 0.0)
        rate = max(c[_C_RATE], self.min_rate)
        if x - rate < self.min_excess and (
            not self.week_horizon or x + sum(c[_C_RING:]) - 7.0 * rate < self.min_excess
        ):
            return False
        p, horizon, value, expected, disp = self._count_tail(st, metric)
        p = min(1.0, p * TESTS_PER_DAY)
        score = tail_score(p)
        if score < self.threshold or value - expected < self.min_excess:
            return False
        st["fired"].append(metric)
        if c[_C_RUN] > 0:
            return True  # the run of flagged days already raised its alert
        day = _date(st["day"])
        signals.append(
            Signal(
                self.id,
                f"{metric}:{day}",
                severity_for(score),
                score,
                {
                    "metric": METRIC_NAME[metric],
                    "metric_zh": METRIC_ZH[metric],
                    "horizon": horizon,
                    "day": day,
                    "value": value,
                    "baseline": round(expected, 4),
                    "dispersion": round(disp, 3),
                    "p_value": p,
                    "score": round(score, 4),
                    "model_version": self.model_version,
                },
            )
        )
        return True

    def _close_day(self, st: dict[str, Any], signals: list[Signal], learn_all: bool) -> None:
        acc = st["acc"]
        counts = st["c"]
        if counts:  # most entities have no count metric yet
            self._close_counts(st, acc, counts, learn_all)
        if "sn" in acc:
            acc["snt"] = acc["ss"] / acc["sn"]
        if not acc:
            return
        weekday = (st["day"] + 3) % 7  # 1970-01-01 was a Thursday; 0 = Monday
        levels = st["l"]
        for metric, direction, floor, seasonal in _LEVEL_STEPS:
            if metric not in acc:
                continue
            raw = acc[metric]
            v = math.log1p(raw) if seasonal else raw
            lv = levels.get(metric)
            if lv is None:
                seas = [0.0] * 7 if seasonal else []
                levels[metric] = [1, v, 0.0, 0, *seas]
                continue
            self._level(st, metric, lv, v, raw, direction, floor, weekday, learn_all, signals)

    def _close_counts(self, st: dict[str, Any], acc: dict[str, Any], counts: dict[str, Any], learn_all: bool) -> None:
        """Fold the closing day into each count metric's baseline (run, rate, variance, ring)."""
        a = max(self.alpha, 1.0 / (st["days"] + 1))
        warm = st["days"] >= self.warmup_days
        fired_today = st["fired"]
        min_rate = self.min_rate
        gate = warm and not learn_all
        for metric, c in counts.items():
            x = acc.get(metric, 0)
            c_rate = c[_C_RATE]
            rate = max(c_rate, min_rate)
            fired = metric in fired_today
            run = c[_C_RUN] = c[_C_RUN] + 1 if fired else max(0, c[_C_RUN] - 1)
            # A day above the rate stays out of the baseline while it is flagged or suspicious (7-day
            # tail below ``learn_gate``), so a shift cannot teach the baseline before it is flagged.
            # A quiet day after a spike keeps the window high but is learned. After ``accept_after``
            # flagged days in a row, the new level is accepted.
            keep_out = (
                gate
                and x > rate
                and run < self.accept_after
                and (fired or self._count_tail(st, metric)[0] < self.learn_gate)
            )
            if not keep_out:
                # Huber-clipped update: one burst moves the rate and variance by a bounded step.
                c_var = c[_C_VAR]
                d = min(x, rate + 3.0 * math.sqrt(rate * max(1.0, c_var / rate))) - c_rate
                c[_C_RATE] = c_rate + a * d
                c[_C_VAR] = c_var + a * (d * d - c_var)
            del c[_C_RING]
            c.append(x)

    def _level(
        self,
        st: dict[str, Any],
        metric: str,
        lv: list[Any],  # [n, centre, mad, run, offsets...]: ints and floats (list[float] would make
        # the compiled build read n and run as C doubles and store them back as floats)
        v: float,
        raw: float,
        direction: int,
        floor: float,
        weekday: int,
        learn_all: bool,
        signals: list[Signal],
    ) -> None:
        n = lv[_L_N]
        seasonal = self.seasonal and len(lv) > _L_SEAS
        offset = lv[_L_SEAS + weekday] if seasonal else 0.0
        centre = lv[_L_CENTRE]
        expected = centre + offset
        scale = max(lv[_L_MAD] * _MAD_TO_SIGMA, floor)
        r = v - expected
        z = r / scale
        flagged = hold = alarming = False
        run = lv[_L_RUN]
        warm_obs = n >= self.warmup_obs
        if warm_obs and st["days"] >= self.warmup_days:
            tail_z = z if direction > 0 else -z if direction < 0 else abs(z)
            # normal_tail(tail_z), inlined
            p_day = min(1.0, 0.5 * math.erfc(tail_z / _SQRT2) * (2.0 if direction == 0 else 1.0))
            hits = -1
            if metric in _PERSIST:
                # Persistence: the binomial tail of the hits among the last ``persist_n`` observed days.
                hit = p_day <= self.persist_q
                held = st.setdefault("h", {})  # absent from states written before version 2
                mask = ((held.get(metric, 0) << 1) | hit) & self._persist_mask
                held[metric] = mask
                hits = mask.bit_count()
                # While the window still holds enough hits, quiet days in it do not end the run.
                alarming = self._persist_alarming[hits]
                # min(1.0, tail * TESTS_PER_DAY) and its score, looked up (see __init__)
                if hit:
                    p, score = self._persist_p[hits], self._persist_score[hits]
                else:
                    p, score = self._quiet_p, self._quiet_score
                hold = hit
            else:
                if metric == "nav":
                    p = p_day if abs(raw) >= self.nav_min else 1.0
                elif metric == "snt":
                    p = p_day if raw <= self.sentiment_max else 1.0
                else:
                    p = p_day
                p = min(1.0, p * TESTS_PER_DAY)
                score = tail_score(p)
            flagged = score >= self.threshold
            hold = hold or flagged
            if flagged and run == 0:
                extra = {"hits": hits, "of_days": self.persist_n} if hits >= 0 else {}
                signals.append(
                    Signal(
                        self.id,
                        f"{metric}:{_date(st['day'])}",
                        severity_for(score),
                        score,
                        {
                            "metric": METRIC_NAME[metric],
                            "metric_zh": METRIC_ZH[metric],
                            "horizon": "day",
                            "day": _date(st["day"]),
                            "value": round(raw, 6),
                            "baseline": round(math.expm1(expected) if metric in ("in", "out") else expected, 6),
                            "robust_z": round(z, 3),
                            **extra,
                            "p_value": p,
                            "score": round(score, 4),
                            "model_version": self.model_version,
                        },
                    )
                )
        run = lv[_L_RUN] = run + 1 if flagged else run if alarming else max(0, run - 1)
        if hold and not learn_all and run < self.accept_after:
            return
        a = max(self.alpha, 1.0 / (n + 1.0))
        clip = 3.0 * scale if warm_obs else math.inf
        rc = max(-clip, min(clip, r))
        lv[_L_N] = n + 1
        centre = lv[_L_CENTRE] = centre + a * rc
        mad = lv[_L_MAD]
        lv[_L_MAD] = mad + a * (abs(rc) - mad)
        if seasonal:
            # Additive Holt-Winters: the weekday offset learns what the level does not explain.
            # Each offset is updated once a week, so at a faster rate than the level.
            lv[_L_SEAS + weekday] += min(0.5, 4.0 * a) * (expected + rc - centre - offset)

    def _skip_days(self, st: dict[str, Any], gap: int) -> None:
        """Fold the silent days between two events into the count baselines as zero days."""
        if gap <= 0:
            return
        counts = st["c"]
        if counts:  # most entities have no count metric yet: no weights to compute
            # the same EWMA weights for every metric: max(alpha, 1 / (n + i + 1)) for the i-th zero day
            weights = self._zero_weights(st["days"], min(gap, _MAX_GAP_FOLD))
        for c in counts.values():
            c[_C_RUN] = max(0, c[_C_RUN] - gap)
            rate, var = c[_C_RATE], c[_C_VAR]
            for a in weights:
                d = -rate
                rate += a * d
                var += a * (d * d - var)
            c[_C_RATE], c[_C_VAR] = rate, var
            ring = c[_C_RING:]
            keep = max(0, 6 - gap)
            c[_C_RING:] = [*ring[6 - keep :], *([0] * (6 - keep))] if keep else [0] * 6
        for lv in st["l"].values():
            run = lv[_L_RUN]
            if run:  # a run is an int: at 0 it stays 0 (the common case), no store needed
                lv[_L_RUN] = max(0, run - gap)
        st["days"] += gap

    def _zero_weights(self, n: int, k: int) -> tuple[float, ...]:
        """``max(alpha, 1 / (n + i + 1))`` for ``i < k``, memoised: past ``n + 1 >= 1 / alpha``
        every weight is ``alpha`` (one tuple per gap length), and young entities repeat too."""
        key = (n, k) if 1.0 / (n + 1) > self.alpha else (-1, k)
        w = self._weights_memo.get(key)
        if w is None:
            if len(self._weights_memo) >= 4096:  # bounded: a pure function, entries are rebuilt
                self._weights_memo.clear()
            w = self._weights_memo[key] = tuple([max(self.alpha, 1.0 / (n + i + 1)) for i in range(k)])
        return w
