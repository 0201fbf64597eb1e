"""Scenario base class and registry.

A scenario turns one entity's life into a stylised timeline: normal activity
until ``onset``, then the pattern of a well-known kind of failure, ending at
``failure`` (or, for a benign look-alike, a harmless spike and no failure).
Times inside a scenario are written as fractions of its duration
(``self.at(0.5)`` is half-way from onset to failure), so the same story
plays out whether it lasts two months or a year.
"""

from __future__ import annotations

from typing import ClassVar

from riskflow.sim.calendar import Calendar
from riskflow.sim.emit import Emitter
from riskflow.sim.normal import normal_activity

REGISTRY: dict[str, type[Scenario]] = {}


class Scenario:
    """Base of every scenario; subclasses set the class attributes and :meth:`story`.

    >>> class Quiet(Scenario):
    ...     name = "doctest_quiet"
    ...     kinds = ("bank",)
    ...     def story(self) -> None:
    ...         self.em.ev(self.at(1.0), "enforcement.action", "regulator_report", {"action": "warning"})
    >>> "doctest_quiet" in REGISTRY
    True
    >>> del REGISTRY["doctest_quiet"]
    """

    #: registry key, written to the labels file
    name: ClassVar[str] = ""
    #: entity kinds the scenario can happen to
    kinds: ClassVar[tuple[str, ...]] = ()
    #: default share of the population that follows this scenario
    share: ClassVar[float] = 0.0
    #: range of onset-to-failure durations in days
    duration: ClassVar[tuple[float, float]] = (60.0, 180.0)
    #: a look-alike of normal behaviour: labelled, but must not alarm
    benign: ClassVar[bool] = False

    def __init_subclass__(cls, **kw: object) -> None:
        super().__init_subclass__(**kw)
        if cls.name:
            if cls.name in REGISTRY:
                raise ValueError(f"scenario {cls.name!r} is defined twice")
            REGISTRY[cls.name] = cls

    def __init__(self, em: Emitter, cal: Calendar, days: float, intensity: float = 1.0) -> None:
        self.em = em
        self.cal = cal
        self.days = days
        self.k = intensity
        self.rng = em.rng
        ent = em.ent
        self.onset = ent.onset
        self.end = ent.failure if ent.failure is not None else ent.onset + ent.attrs.get("span", 30.0)
        self.span = self.end - self.onset

    def at(self, f: float) -> float:
        """The day ``f`` of the way from onset (0) to failure (1)."""
        return self.onset + f * self.span

    def times(self, rate: float, f0: float, f1: float, ramp: float = 1.0) -> list[float]:
        """Poisson times on ``[at(f0), at(f1))``; the rate grows linearly by ``ramp`` x over the interval."""
        t0, t1 = self.at(f0), self.at(f1)
        if ramp == 1.0:
            return self.em.poisson(rate * self.k, t0, t1)
        top = rate * self.k * max(ramp, 1.0)
        out = []
        for t in self.em.poisson(top, t0, t1):
            share = (t - t0) / (t1 - t0)
            if self.rng.random() < (1 + (ramp - 1) * share) / max(ramp, 1.0):
                out.append(t)
        return out

    def run(self) -> None:
        """Normal life until onset, then :meth:`story`, then whatever :meth:`after` keeps going."""
        normal_activity(self.em, self.cal, 0.0, self.onset)
        self.story()

    def story(self) -> None:
        raise NotImplementedError

    # Building blocks shared by the stories -------------------------------------------------

    def complaints(self, rate: float, f0: float, f1: float, categories: tuple[str, ...], ramp: float = 1.0) -> None:
        rng = self.rng
        for t in self.times(rate, f0, f1, ramp):
            self.em.ev(
                t,
                "complaint.filed",
                "complaint_hotline",
                {
                    "channel": rng.choice(("12345", "12378", "online", "letters_and_visits")),
                    "category": rng.choice(categories),
                    "amount_involved": float(rng.randrange(1, 100) * 10_000),
                },
            )

    def bad_press(self, rate: float, f0: float, f1: float, keywords: list[str], ramp: float = 1.0) -> None:
        rng = self.rng
        for t in self.times(rate, f0, f1, ramp):
            self.em.ev(
                t,
                "opinion.published",
                "public_opinion",
                {
                    "sentiment": round(rng.uniform(-0.95, -0.5), 2),
                    "reach": rng.randrange(5_000, 500_000),
                    "keywords": keywords,
                },
            )

    def sued(self, rate: float, f0: float, f1: float, cause: str, ramp: float = 1.0) -> None:
        for t in self.times(rate, f0, f1, ramp):
            amount = float(self.rng.randrange(5, 500) * 10_000)
            self.em.ev(t, "lawsuit.filed", "court", {"role": "defendant", "cause": cause, "amount": amount})

    def change(self, f: float, field: str) -> None:
        self.em.ev(self.at(f), "entity.changed", "market_regulation", {"field": field, "old": "原", "new": "变更后"})

    def grid(self, f: float, observation: str, note: str) -> None:
        self.em.ev(self.at(f), "grid.report", "grid_report", {"observation": observation, "note": note})

    def notice(self, f: float, notice: str) -> None:
        self.em.ev(self.at(f), "amac.notice", "amac", {"notice": notice})

    def enforcement(self, f: float, action: str, reason: str) -> None:
        self.em.ev(self.at(f), "enforcement.action", "regulator_report", {"action": action, "reason": reason})

    def outflows(self, rate: float, f0: float, f1: float, amount: tuple[float, float], related: float) -> None:
        rng = self.rng
        for t in self.times(rate, f0, f1):
            rel = rng.random() < related
            self.em.ev(
                t,
                "flow.transfer",
                "bank_flow",
                {
                    "direction": "out",
                    "amount": round(rng.uniform(*amount), -2),
                    "counterparty_id": f"{'REL' if rel else 'ORG'}-{self.em.ent.index}-{rng.randrange(5)}",
                    "related_party": rel,
                    "channel": "corporate_account",
                },
            )

    def retail_inflows(self, rate: float, f0: float, f1: float, fund_id: str, *, flow: bool, subscribe: bool) -> None:
        """Many small tickets from individuals (the unqualified public)."""
        rng, ent = self.rng, self.em.ent
        for t in self.times(rate, f0, f1):
            inv = f"IND-{ent.index}-{rng.randrange(10**6):06d}"
            amount = float(rng.choice((1, 2, 3, 5, 5, 10, 10, 20, 30)) * 10_000)
            if subscribe:
                self.em.ev(
                    t,
                    "fund.subscription",
                    "amac",
                    {"fund_id": fund_id, "investor_id": inv, "investor_type": "individual", "amount": amount},
                )
            if flow:
                self.em.ev(
                    t + 0.001,
                    "flow.transfer",
                    "bank_flow",
                    {
                        "direction": "in",
                        "amount": amount,
                        "counterparty_id": inv,
                        "related_party": False,
                        "channel": "personal_account",
                    },
                )

    def lure_ads(
        self, rate: float, f0: float, f1: float, ret: tuple[float, float], guaranteed: float, text: str
    ) -> None:
        rng = self.rng
        for t in self.times(rate, f0, f1):
            self.em.ev(
                t,
                "advertisement.published",
                "advertising_monitor",
                {
                    "channel": rng.choice(("wechat", "douyin", "seminar", "flyer", "website")),
                    "promised_return": round(rng.uniform(*ret), 3),
                    "guaranteed": rng.random() < guaranteed,
                    "min_investment": float(rng.choice((1, 5, 10)) * 10_000),
                    "text": text,
                },
            )

    def redemptions_unpaid(
        self, rate: float, f0: float, f1: float, paid_until: float, delay: tuple[float, float]
    ) -> None:
        """Requests on ``[f0, f1)``; those before ``paid_until`` are paid ``delay`` days late, later ones never."""
        rng, ent = self.rng, self.em.ent
        for t in self.times(rate, f0, f1):
            rid = f"R-{ent.index}-{int(t * 1000)}"
            amount = float(rng.randrange(1, 50) * 10_000)
            self.em.ev(
                t,
                "fund.redemption_requested",
                "amac",
                {
                    "fund_id": ent.entity_id,
                    "request_id": rid,
                    "investor_id": f"IND-{rng.randrange(10**6):06d}",
                    "amount": amount,
                },
            )
            if t < self.at(paid_until):
                self.em.ev(
                    t + rng.uniform(*delay),
                    "fund.redemption_paid",
                    "amac",
                    {"fund_id": ent.entity_id, "request_id": rid, "amount": amount},
                )
