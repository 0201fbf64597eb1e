"""``peer``: each entity compared with its peers of the same kind (IsolationForest per kind).

Per entity, the detector keeps a small feature state: the latest prudential
ratios and decayed (30-day half-life) daily rates of its activity. When an
event-time week closes (the entity's first event in a later week, CST), the
week's feature vector is scored by the loaded :class:`riskflow.core.models.PeerModel`
for the entity's kind. The score is 0.5 at the kind's forest threshold or when
a feature lies ``z_threshold`` robust units from the peer median (the forest
cannot see how far beyond the peers' range a value lies), both calibrated in
training as the 99th percentile of the training *entities'* highest weekly
value, so about 1 % of normal entities are flagged over a training-length
window; from 0.5 it is flagged; only the first flagged week of a
run raises an alert (key ``peer:<monday>``). The evidence lists the features
furthest from the peer median in robust units, and the alert names the model
version. Without a model (none trained yet), the detector keeps the features
current and flags nothing.

The same :func:`features` code builds the training rows (``riskflow train``),
so training and live scoring see identical features.

>>> det = PeerGroupDetector()
>>> det.model is None and det.model_version == ""
True
"""

from __future__ import annotations

import copy
import datetime as _dt
import math
from typing import Any

from detectors.anomaly.base import DIMENSION, AnomalyDetector, severity_for
from detectors.base import MODEL_SCORES, Describe, Signal
from riskflow.core.models import PeerModel
from riskflow.core.schema import Event

_CST = 8 * 3600
_DAY = 86400
HALF_LIFE_DAYS = 30.0
_DECAY = math.exp(-math.log(2.0) / HALF_LIFE_DAYS)
WARMUP_DAYS = 28  # an entity is scored once it has this many days of history

PRUDENTIAL = (
    "capital_adequacy_ratio",
    "npl_ratio",
    "liquidity_coverage_ratio",
    "provision_coverage_ratio",
    "guarantee_leverage",
    "largest_borrower_share",
)
#: activity rate name -> what adds to it
ACTIVITY = (
    "subscriptions",
    "individual_share",
    "inflow",
    "outflow",
    "related_party_outflow",
    "redemption_requests",
    "complaints",
    "lawsuits",
    "negative_opinion",
    "return_promises",
    "governance_changes",
    "nav_change",
)
#: Every feature a model may use, in a fixed order (a kind's model keeps the ones its peers have).
FEATURES = (
    *PRUDENTIAL,
    "related_party_loan_share",
    "borrowed_to_net_assets",
    "log_loan_balance",
    *(f"{a}_rate" for a in ACTIVITY),
)


def _day(ts: float) -> int:
    return int((ts + _CST) // _DAY)


def _week(day: int) -> int:
    return (day + 3) // 7  # weeks start on Monday (1970-01-01 was a Thursday)


def init_features() -> dict[str, Any]:
    return {"p": {}, "r": {}, "w": 0.0, "d": -1, "first": -1, "nav": 0.0}


def fold(fs: dict[str, Any], ev: Event) -> None:
    """Fold one event into a feature state (in place). Late events count on the current day."""
    day = _day(ev.ts)
    if fs["first"] < 0:
        fs["first"] = fs["d"] = day
    elif day > fs["d"]:
        gap = day - fs["d"]
        k = _DECAY**gap
        r = fs["r"]
        for key in r:
            r[key] *= k
        fs["w"] = fs["w"] * k + (1.0 - k) / (1.0 - _DECAY)
        fs["d"] = day
    r = fs["r"]
    et = ev.event_type
    p: Any = ev.payload
    if et == "report.prudential":
        pr = fs["p"]
        for f in PRUDENTIAL:
            v = getattr(p, f, None)
            if v is not None:
                pr[f] = float(v)
        if p.related_party_loans is not None and p.loan_balance:
            pr["related_party_loan_share"] = p.related_party_loans / p.loan_balance
        if p.borrowed_funds is not None and p.net_assets and p.net_assets > 0:
            pr["borrowed_to_net_assets"] = p.borrowed_funds / p.net_assets
        if p.loan_balance is not None:
            pr["log_loan_balance"] = math.log1p(p.loan_balance)
        return
    if et == "fund.subscription":
        _add(r, "subscriptions", 1.0)
        _add(r, "individual_share", 1.0 if p.investor_type == "individual" else 0.0)
        _add(r, "inflow", p.amount)
    elif et == "flow.transfer":
        if p.direction == "in":
            _add(r, "inflow", p.amount)
        else:
            _add(r, "outflow", p.amount)
            if p.related_party:
                _add(r, "related_party_outflow", p.amount)
    elif et == "fund.redemption_paid":
        _add(r, "outflow", p.amount)
    elif et == "fund.redemption_requested":
        _add(r, "redemption_requests", 1.0)
    elif et == "complaint.filed":
        _add(r, "complaints", 1.0)
    elif et == "lawsuit.filed":
        if p.role == "defendant":
            _add(r, "lawsuits", 1.0)
    elif et == "opinion.published":
        if p.sentiment < 0:
            _add(r, "negative_opinion", -p.sentiment)
    elif et == "advertisement.published":
        if p.guaranteed or (p.promised_return or 0) > 0:
            _add(r, "return_promises", 1.0)
    elif et == "entity.changed":
        _add(r, "governance_changes", 1.0)
    elif et == "fund.nav_reported":
        if fs["nav"] > 0:
            _add(r, "nav_change", abs(p.nav / fs["nav"] - 1.0))
        if p.nav > 0:
            fs["nav"] = float(p.nav)


def _add(r: dict[str, float], key: str, v: float) -> None:
    r[key] = r.get(key, 0.0) + v


def features(fs: dict[str, Any]) -> dict[str, float]:
    """The feature dict of a feature state (missing prudential values are absent)."""
    out = dict(fs["p"])
    w = max(fs["w"] + 1.0, 7.0)  # decayed days observed, at least a week
    r = fs["r"]
    subs = r.get("subscriptions", 0.0)
    for a in ACTIVITY:
        v = r.get(a, 0.0)
        if a == "individual_share":
            out["individual_share_rate"] = v / subs if subs else 0.0
        elif a in ("inflow", "outflow", "related_party_outflow"):
            out[f"{a}_rate"] = math.log1p(v / w)
        else:
            out[f"{a}_rate"] = v / w
    return out


class PeerGroupDetector(AnomalyDetector):
    """Peer-group anomaly detector over weekly feature vectors (see module doc)."""

    kind = "peer"
    requires_model = True
    id = "anomaly.peer"
    version = "1"
    describe = Describe(
        name_zh="同业对比异常",
        name_en="Outlier among its peers (peer-group model)",
        dimension=DIMENSION,
        source="RiskFlow peer-group model: IsolationForest per entity kind over prudential ratios and activity",
        rationale="An institution whose ratios and activity sit far from every peer of its kind deserves a look "
        "before any single threshold is breached.",
    )

    def __init__(self, model: PeerModel | None = None, *, warmup_days: int = WARMUP_DAYS) -> None:
        self.warmup_days = warmup_days
        self.model: PeerModel | None = None
        self.model_version = ""
        self.set_model(model)

    def params(self) -> dict[str, Any]:
        return {"model": self.model, "warmup_days": self.warmup_days}

    def set_model(self, model: PeerModel | None) -> None:
        """Swap the model in place (start-up, or a reload control message)."""
        self.model = model
        self.model_version = model.version if model is not None else ""

    def init_state(self) -> dict[str, Any]:
        return {"f": init_features(), "wk": -1, "flag": 0}

    def learn_one(self, state: Any, event: Event) -> Any:
        return self._step(copy.deepcopy(state), event, record=False)[0]

    def score_one(self, state: Any, event: Event) -> list[Signal]:
        return self._step(copy.deepcopy(state), event, record=False)[1]

    def process(self, state: Any, event: Event) -> tuple[Any, list[Signal]]:
        # Features describe the entity; nothing is learned online, so flagging changes no state
        # but the run marker. The model itself is refitted offline (``riskflow train``).
        return self._step(state, event, record=True)

    def _step(self, st: dict[str, Any], ev: Event, record: bool) -> tuple[dict[str, Any], list[Signal]]:
        signals: list[Signal] = []
        week = _week(_day(ev.ts))
        if st["wk"] < 0:
            st["wk"] = week
        elif week > st["wk"]:
            self._close_week(st, ev.entity_kind, signals, record)
            st["wk"] = week
        fold(st["f"], ev)
        return st, signals

    def _close_week(self, st: dict[str, Any], kind: str, signals: list[Signal], record: bool) -> None:
        model = self.model
        fs = st["f"]
        if model is None or kind not in model.kinds or fs["d"] - fs["first"] < self.warmup_days:
            return
        feats = features(fs)
        score, common = model.scores(kind, feats)
        if record:  # the drift metric's input, reported with the batch (BatchResult.model_scores)
            sink = MODEL_SCORES.get()
            if sink is not None:
                sink.append((kind, score))
        km = model.kinds[kind]
        if common < self.threshold:
            st["flag"] = 0
            return
        if st["flag"]:
            return
        st["flag"] = 1
        monday = st["wk"] * 7 - 3
        date = (_dt.date(1970, 1, 1) + _dt.timedelta(days=monday)).isoformat()
        signals.append(
            Signal(
                self.id,
                f"peer:{date}",
                severity_for(common),
                common,
                {
                    "week": date,
                    "entity_kind": kind,
                    "anomaly_score": round(score, 4),
                    "threshold": round(km.threshold, 4),
                    "score": round(common, 4),
                    "drivers": model.explain(kind, feats),
                    "model_version": model.version,
                },
            )
        )
