"""Signals -> per-entity risk index, level, alert episodes and exposure (people, CNY).

The :class:`RiskScorer` sits in the engine after the detectors: it receives
every non-duplicate event of an entity with the signals the detectors found,
and decides which alerts go out. All of it is a function of the entity's
state and the event, in event time, so a replay, a backtest and the live
worker emit the same alerts whatever the batch boundaries.

Episodes. The first hit of a rule on an entity opens an episode whose alert id
is ``alert_id(rule, entity, key of that first signal)``, so a one-off finding
keeps the id it always had. Further hits of the same rule fold into it: the
alert is re-emitted with the same id, ``revision`` = hit count and the latest
evidence. To keep the alert topic from flooding, an open episode is re-emitted
on each of its first ``episode_emit_first`` hits, then only at the 1-2-5
milestones (5, 10, 20, 50, 100, ...) or when the entity's level differs from the
level the episode last carried. A hit more than ``episode_quiet_days`` after
the episode's last hit opens a new episode (new id). Sinks keep the highest
revision of an id.

Levels. After the signals of an event are folded in, the index decides the
level (with hysteresis downwards); a change emits a ``risk.level`` alert with
id ``alert_id("risk.level", entity, "<n>:<from>><to>")``, ``n`` the entity's
transition count. Levels fall only when the entity's next event arrives: no
wall-clock timers, so replays decide identically.

>>> from detectors.engine import Engine
>>> from detectors.rules import load_pack
>>> from riskflow.core.schema import parse_event
>>> eng = Engine(load_pack().detectors, risk=RiskScorer(RiskConfig()))
>>> raw = (b'{"schema": "riskflow.event/v1", "event_id": "e1", "event_type": "amac.notice",'
...        b' "entity_id": "PFM-1", "entity_kind": "private_fund_manager", "region": "330100",'
...        b' "event_time": "2025-04-01T10:00:00+08:00", "source": "amac", "payload": {"notice": "lost_contact"}}')
>>> out = eng.process(None, parse_event(raw))
>>> [(a.rule_id, a.risk_level, a.revision) for a in out.alerts]
[('pf.amac_lost_contact', 'red', 1), ('risk.level', 'red', 1)]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from detectors.base import Detector, Signal
from detectors.risk import contagion as _contagion
from detectors.risk import people as _people
from detectors.risk.config import LEVEL_NAMES, LEVEL_RANK, LEVEL_SEVERITY, RiskConfig
from detectors.risk.contagion import CONTAGION_RULE, LinkMessage
from detectors.risk.state import DIMENSION_CODES, Raise, RiskState, RuleTrack, dim_code, dim_name, second
from riskflow.core.alerts import Alert, alert_id, build_alert, iso
from riskflow.core.schema import Event

LEVEL_RULE = "risk.level"
_LINK_EVENTS = frozenset({"fund.registered", "entity.registered", "flow.transfer"})
#: events that move the exposure (people affected, CNY raised or claimed)
_EXPOSURE_EVENTS = frozenset(
    {"fund.subscription", "fund.redemption_requested", "fund.redemption_paid", "complaint.filed", "lawsuit.filed"}
)

MakeAlert = Callable[[Detector, Signal, Event], Alert]


def is_milestone(count: int, first: int) -> bool:
    """Counts at which an open episode is re-emitted: 1..first, then 5, 10, 20, 50, 100, ..."""
    if count <= first:
        return True
    while count % 10 == 0:
        count //= 10
    return count in (1, 2, 5)


class RiskScorer:
    """Folds an event's signals into the entity's risk state and decides the alerts.

    >>> s = RiskScorer(RiskConfig(half_life_days=10))
    >>> s.config.half_life_days
    10
    """

    def __init__(self, config: RiskConfig | None = None) -> None:
        self.config = config or RiskConfig()

    def __reduce__(self) -> tuple[Any, ...]:
        # explicit, for the compiled build (mypyc's native classes do not pickle by themselves)
        return (RiskScorer, (self._config,))

    @property
    def config(self) -> RiskConfig:
        return self._config

    @config.setter
    def config(self, config: RiskConfig) -> None:
        # The per-event path reads the configuration as plain floats, looked up once here.
        self._config = config
        self._half_life = config.half_life
        self._quiet = config.quiet
        self._floor = config.forget_below
        self._people_k = config.people_k
        # Below every level bound an index is green whatever the hysteresis: level_of's answer
        # for a green entity there, known without building its bounds (see _decide).
        self._green_below = min(config.red, config.orange, config.yellow)
        self._weights: dict[int | str, float] = {code: config.weight(name) for code, name in enumerate(DIMENSION_CODES)}

    # -- the index ---------------------------------------------------------------------------
    def index_of(self, rules: dict[str, RuleTrack]) -> float:
        """Noisy-or of the saturated dimensions, 0-100, rounded to 0.1."""
        return self._noisy_or(self._by_dim(rules))

    @staticmethod
    def _by_dim(rules: dict[str, RuleTrack]) -> dict[int | str, float]:
        # grouped by code (a name stored before its code existed maps to the code)
        by_dim: dict[int | str, float] = {}
        for tr in rules.values():
            d = tr.dim
            if d.__class__ is not int:
                d = dim_code(d)  # type: ignore[arg-type]
            by_dim[d] = by_dim.get(d, 0.0) + tr.acc
        return by_dim

    def _noisy_or(self, by_dim: dict[int | str, float]) -> float:
        survive = 1.0
        weights = self._weights
        exp = math.exp
        for code, x in by_dim.items():
            w = weights.get(code)
            if w is None:
                w = self._config.weight(dim_name(code))
            survive *= 1.0 - w * (1.0 - exp(-x))
        return round(100.0 * (1.0 - survive), 1)

    def contributions(self, rules: dict[str, RuleTrack], own_idx: float, idx: float) -> dict[str, float]:
        """Index points per dimension: ``own_idx`` shared out in proportion to each dimension's
        ``-log(1 - p_d)`` (the noisy-or's survival factors multiply, so their logs add up), plus
        ``contagion`` for what a linked entity adds on top (``idx - own_idx``). Rounded to 0.1;
        dimensions below 0.05 points are left out.

        >>> from detectors.risk.state import RuleTrack, dim_code
        >>> s = RiskScorer(RiskConfig())
        >>> tr = RuleTrack(dim_code("inducement")); tr.acc = 0.6
        >>> rules = {"pf.guaranteed_return": tr}
        >>> s.contributions(rules, s.index_of(rules), s.index_of(rules) + 5.0)
        {'inducement': 40.6, 'contagion': 5.0}
        """
        logs: dict[str, float] = {}
        weights, cfg = self._weights, self._config
        for code, x in self._by_dim(rules).items():
            w = weights.get(code)
            if w is None:
                w = cfg.weight(dim_name(code))
            p = w * (1.0 - math.exp(-x))
            if p > 0.0:
                logs[dim_name(code)] = -math.log(max(1.0 - p, 1e-300))
        total = sum(logs.values())
        out: dict[str, float] = {}
        if total > 0.0:
            for name in sorted(logs, key=lambda n: (-logs[n], n)):
                pts = round(own_idx * logs[name] / total, 1)
                if pts >= 0.05:
                    out[name] = pts
        if idx - own_idx >= 0.05:
            out["contagion"] = round(idx - own_idx, 1)
        return out

    def shown(self, r: RiskState, own_idx: float, own_level: str = "") -> tuple[float, Raise | None]:
        """The index shown for the entity (own index raised by contagion) and the source raising it."""
        c, src = _contagion.strongest(r, self.config)
        idx = _contagion.shown_index(own_idx, c, self.config)
        return idx, (src if idx > own_idx else None)

    def shown_level(self, idx: float, own_level: str, raised: object) -> str:
        """The higher of the own level (with hysteresis) and the shown index's level (contagion: none)."""
        if not raised:
            return own_level
        raw = self.config.level_of(idx)
        return raw if LEVEL_RANK[raw] > LEVEL_RANK[own_level] else own_level

    def tags(self, r: RiskState, first: str | None = None, raised: bool = False) -> list[str]:
        """The rules behind the entity's index, strongest first (``first`` leads, then contagion)."""
        floor = self.config.forget_below
        ranked = sorted(
            (rid for rid, tr in r.rules.items() if tr.acc >= floor and rid != first),
            key=lambda rid: (-r.rules[rid].acc, rid),
        )
        out = [first] if first else []
        if raised and first != CONTAGION_RULE:
            out.append(CONTAGION_RULE)
        return (out + ranked)[: self.config.max_tags]

    def _decay(self, r: RiskState, ts: float) -> None:
        if ts > r.t:
            if r.rules and r.t:
                f = 0.5 ** ((ts - r.t) / self._half_life)
                for tr in r.rules.values():
                    tr.acc *= f
            r.t = ts

    def _exposure(self, r: RiskState, event: Event) -> None:
        et = event.event_type
        if et == "fund.subscription" or et == "fund.redemption_requested":
            p: Any = event.payload
            r.people = _people.add(r.people, "inv:" + p.investor_id, k=self._people_k)
            if et == "fund.subscription":
                r.raised += p.amount
        elif et == "fund.redemption_paid":
            r.raised = max(0.0, r.raised - event.payload.amount)  # type: ignore[attr-defined]
        elif et == "complaint.filed":
            # A complaint carries no complainant id: each complaint counts as one person.
            r.people = _people.add(r.people, "cmp:" + event.event_id, k=self._people_k)
            r.claimed += event.payload.amount_involved or 0.0  # type: ignore[attr-defined]
        elif et == "lawsuit.filed" and event.payload.role == "defendant":  # type: ignore[attr-defined]
            r.claimed += event.payload.amount or 0.0  # type: ignore[attr-defined]

    def affected(self, r: RiskState) -> tuple[int, float]:
        """(distinct people, CNY involved). Claims are usually part of the money raised,
        so the larger of the two is taken rather than their sum."""
        return _people.estimate(r.people, k=self._people_k), round(max(r.raised, r.claimed), 2)

    # -- one event ---------------------------------------------------------------------------
    def apply(
        self,
        state: Any,
        event: Event,
        hits: Sequence[tuple[Detector, Signal]],
        make: MakeAlert,
        clock: Callable[[], str],
    ) -> tuple[list[Alert], list[LinkMessage]]:
        """Update ``state.risk`` (an :class:`~detectors.engine.EntityState`); return the alerts
        and the messages for the links topic (see ``contagion.py``)."""
        r: RiskState | None = state.risk
        if r is None:
            r = state.risk = RiskState()
        cfg = self._config
        ts = event.ts
        et = event.event_type
        if et in _EXPOSURE_EVENTS:
            self._exposure(r, event)
        links = _contagion.links_from_event(r, event, cfg) if et in _LINK_EVENTS else []
        rules = r.rules
        if not hits:
            if not rules and r.level == "green":
                if ts > r.t:
                    r.t = ts
                return [], links
            # The common case: no signal, the index only decays (one pass over the rules).
            f = 1.0
            if ts > r.t:
                if rules and r.t:
                    f = 0.5 ** ((ts - r.t) / self._half_life)
                r.t = ts
            by_dim, forget = self._scan(rules, ts, f)
            return self._decide(r, event, self._noisy_or(by_dim), {}, forget, links, make, clock), links
        self._decay(r, ts)
        late = 0.5 ** ((r.t - ts) / self._half_life) if ts < r.t else 1.0
        quiet = self._quiet
        # Fold the hits in; remember per rule the count before this event and the last signal.
        touched: dict[str, tuple[Detector, Signal, int]] = {}
        for det, sig in hits:
            rid = sig.detector_id
            tr = rules.get(rid)
            if tr is None:
                tr = rules[rid] = RuleTrack(dim_code(det.describe.dimension or "unknown"))
            sec = second(ts)
            if tr.count == 0 or sec - tr.last > quiet:
                tr.key, tr.first, tr.last, tr.count, tr.emitted_level = sig.key, sec, sec, 0, -1
            before = touched[rid][2] if rid in touched else tr.count
            tr.count += 1
            tr.first = min(tr.first, sec)
            tr.last = max(tr.last, sec)
            if det.mode != "shadow":  # shadow rules are on trial: alerts, but no weight in the index
                tr.acc += cfg.mass(sig.severity, sig.score) * late
            touched[rid] = (det, sig, before)
        by_dim, forget = self._scan(rules, ts, 1.0)
        return self._decide(r, event, self._noisy_or(by_dim), touched, forget, links, make, clock), links

    def _scan(self, rules: dict[str, RuleTrack], ts: float, f: float) -> tuple[dict[int | str, float], list[str]]:
        """One pass over the rules: decay each by ``f`` (1.0: none), sum them by dimension, and
        list those to forget (weight decayed away and episode closed) once the event is decided."""
        by_dim: dict[int | str, float] = {}
        forget: list[str] = []
        floor, quiet = self._floor, self._quiet
        decay = f != 1.0
        for rid, tr in rules.items():
            if decay:
                acc = tr.acc = tr.acc * f
            else:
                acc = tr.acc
            d = tr.dim
            if d.__class__ is not int:
                d = dim_code(d)  # type: ignore[arg-type]
            by_dim[d] = by_dim.get(d, 0.0) + acc
            if acc < floor and ts - tr.last > quiet:
                forget.append(rid)
        return by_dim, forget

    def _decide(
        self,
        r: RiskState,
        event: Event,
        own_idx: float,
        touched: dict[str, tuple[Detector, Signal, int]],
        forget: list[str],
        links: list[LinkMessage],
        make: MakeAlert,
        clock: Callable[[], str],
    ) -> list[Alert]:
        """Levels, episodes and alerts once the signals are folded in and the index is known."""
        cfg = self._config
        ts = event.ts
        own_old = r.own_level = r.own_level or r.level  # pinned: the shown level may differ
        if r.own_seq < 0:
            r.own_seq = r.seq
        own_new = own_old if own_old == "green" and own_idx < self._green_below else cfg.level_of(own_idx, own_old)
        if own_new != own_old:  # only own transitions reach dependents (one hop)
            r.own_seq += 1
            r.own_level = own_new
            r.trans_index, r.trans_ts = own_idx, ts
            if LEVEL_RANK[own_new] >= LEVEL_RANK[cfg.contagion_from]:
                r.hot = True
            links += _contagion.pushes_on_transition(r, event.entity_id, event.entity_kind, cfg)
        if r.raised_by:
            idx, raiser = self.shown(r, own_idx, own_new)
            new = self.shown_level(idx, own_new, raiser)
        else:  # no contagion: the shown index and level are the own ones
            idx, raiser, new = own_idx, None, own_new
        old = r.level
        alerts: list[Alert] = []
        if touched or new != old:
            rank = LEVEL_RANK[new]
            people, amount = -1, 0.0  # (people, CNY): only once an alert goes out, most events emit none
            for rid, (det, sig, before) in touched.items():
                tr = r.rules[rid]
                due = tr.emitted_level != rank or any(
                    is_milestone(n, cfg.episode_emit_first) for n in range(before + 1, tr.count + 1)
                )
                if not due:
                    continue
                if people < 0:
                    people, amount = self.affected(r)
                tr.emitted_level = rank
                a = make(det, sig, event)
                a.alert_id = alert_id(rid, event.entity_id, tr.key)
                a.revision = tr.count
                a.episode = {
                    "key": tr.key,
                    "first_seen": iso(tr.first),
                    "last_seen": iso(tr.last),
                    "count": tr.count,
                    "reopens_after": iso(tr.last + self._quiet),
                }
                self._fill(a, r, idx, new, people, amount, rid, raiser, own_idx)
                alerts.append(a)
            if new != old:
                if people < 0:
                    people, amount = self.affected(r)
                r.seq += 1
                r.level = new
                alerts.append(self._level_alert(r, event, old, new, idx, own_idx, raiser, people, amount, clock))
        r.index = idx
        rules = r.rules
        for rid in forget:
            del rules[rid]
        return alerts

    # -- messages from the links topic ---------------------------------------------------------
    def on_link(self, state: Any, msg: LinkMessage) -> list[LinkMessage]:
        """A ``link`` for this entity (the source): remember the dependent; maybe push to it."""
        if state.risk is None:
            state.risk = RiskState()
        return _contagion.on_link(state.risk, state.entity_id, state.entity_kind, msg, self.config)

    def on_push(self, state: Any, msg: LinkMessage, clock: Callable[[], str]) -> list[Alert]:
        """A ``push`` for this entity (the dependent; ``state`` an EntityState, created by the
        caller if new): fold it into the shown index and level; its ``risk.contagion`` alert."""
        r: RiskState | None = state.risk
        if r is None:
            r = state.risk = RiskState()
        cfg = self.config
        if _contagion.seen_push(r, msg):
            # This transition of this source is already folded in (a dependent that
            # announces itself again, or a redelivery after a crash or rebalance): its
            # alert went out before the state that holds it, so nothing new to say.
            return []
        before = r.level
        own_idx = self.index_of(r.rules)
        if _contagion.absorb(r, msg, cfg):
            r.own_level = _contagion.own_level(r)  # pinned: the shown level may now differ
            if r.own_seq < 0:
                r.own_seq = r.seq
            idx, raiser = self.shown(r, own_idx)
            r.index, r.level = idx, self.shown_level(idx, r.own_level, raiser)
        # The alert tells what this source does to the entity as of its transition (event time),
        # not what arrived before it: the same alert whatever the arrival order.
        c = _contagion.contribution(msg.relation, msg.level, msg.index, cfg)
        at_idx = _contagion.shown_index(own_idx, c, cfg)
        at_level = self.shown_level(at_idx, _contagion.own_level(r), at_idx > own_idx)
        people, amount = self.affected(r)
        a = _contagion.contagion_alert(
            msg,
            cfg,
            entity_kind=state.entity_kind,
            region=state.region,
            people=people,
            amount=amount,
            before=before,
            after=at_level,
            index=at_idx,
            tags=self.tags(r, CONTAGION_RULE),
            clock=clock,
        )
        a.risk_dimensions = self.contributions(r.rules, own_idx, at_idx)
        return [a]

    def _fill(
        self,
        a: Alert,
        r: RiskState,
        idx: float,
        level: str,
        people: int,
        amount: float,
        first: str | None,
        raiser: Raise | None = None,
        own_idx: float | None = None,
    ) -> None:
        a.risk_index = idx
        a.risk_level = level
        a.risk_tags = self.tags(r, first, raised=raiser is not None)
        a.risk_dimensions = self.contributions(r.rules, idx if own_idx is None else own_idx, idx)
        a.affected_people = people
        a.affected_amount = amount

    def _level_alert(
        self,
        r: RiskState,
        event: Event,
        old: str,
        new: str,
        idx: float,
        own_idx: float,
        raiser: Raise | None,
        people: int,
        amount: float,
        clock: Callable[[], str],
    ) -> Alert:
        zh_old, zh_new = LEVEL_NAMES[old][0], LEVEL_NAMES[new][0]
        up = LEVEL_RANK[new] > LEVEL_RANK[old]
        a = build_alert(
            LEVEL_RULE,
            event.entity_id,
            f"{r.seq}:{old}>{new}",
            entity_kind=event.entity_kind,
            region=event.region,
            severity=LEVEL_SEVERITY[new],
            title_zh=f"风险等级{'上调' if up else '下调'} {zh_old}→{zh_new}",
            title_en=f"Risk level {'raised' if up else 'lowered'} {old} → {new}",
            dimension="",
            evidence={
                "from": old,
                "to": new,
                "index": idx,
                "disposal_en": LEVEL_NAMES[new][1],
                "disposal_zh": LEVEL_NAMES[new][2],
                "transition": r.seq,
                **self._raised_evidence(own_idx, raiser),
            },
            event_id=event.event_id,
            event_time=event.event_time.isoformat(),
            detected_at=clock(),
        )
        self._fill(a, r, idx, new, people, amount, None, raiser, own_idx)
        return a

    def _raised_evidence(self, own_idx: float, raiser: Raise | None) -> dict[str, Any]:
        if raiser is None:
            return {}
        en, zh = _contagion.explain(raiser.relation, raiser.source, raiser.level, self.config)
        return {
            "own_index": own_idx,
            "raised_by": raiser.source,
            "relation": raiser.relation,
            "source_level": raiser.level,
            "explanation_en": en,
            "explanation_zh": zh,
        }
