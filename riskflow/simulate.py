"""A seeded generator of labelled event histories (``riskflow simulate``).

Entities across Zhejiang's cities produce normal activity; a share of them
follow a failure scenario, recorded in the labels file as described in
``shared/EVENTS.md`` (ground truth).

>>> events, labels = simulate(entities=20, days=30, seed=1)
>>> len(events) > 0 and all(e["schema"] == "riskflow.event/v1" for e in events)
True
>>> simulate(entities=20, days=30, seed=1) == (events, labels)
True
"""

from __future__ import annotations

import datetime as _dt
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from riskflow.schema import REGIONS

CST = _dt.timezone(_dt.timedelta(hours=8))
DEFAULT_START = _dt.datetime(2025, 1, 1, tzinfo=CST)

# Region weights: funds cluster in Hangzhou, Ningbo and Jiaxing's fund towns.
_FUND_REGIONS = {"330100": 6, "330200": 3, "330400": 2, "330300": 1, "330600": 1}
_KINDS = {
    "private_fund": 40,
    "private_fund_manager": 10,
    "small_loan_company": 10,
    "financing_guarantee": 8,
    "bank": 6,
    "pawnshop": 6,
    "financial_leasing": 4,
    "commercial_factoring": 4,
    "enterprise": 8,
    "p2p_platform": 2,
    "trading_venue": 2,
}
_PREFIX = {
    "private_fund": "PF",
    "private_fund_manager": "PFM",
    "small_loan_company": "SLC",
    "financing_guarantee": "FG",
    "bank": "BNK",
    "pawnshop": "PWN",
    "financial_leasing": "FL",
    "commercial_factoring": "CF",
    "enterprise": "ENT",
    "p2p_platform": "P2P",
    "trading_venue": "TV",
}


@dataclass
class _Entity:
    entity_id: str
    kind: str
    region: str
    scenario: str | None = None
    onset: int = 0  # day index
    failure: int = 0


class _Gen:
    def __init__(self, seed: int, start: _dt.datetime) -> None:
        self.rng = random.Random(seed)
        self.start = start
        self.n = 0
        self.seed = seed

    def event(self, ent: _Entity, day: float, etype: str, source: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.n += 1
        t = self.start + _dt.timedelta(days=day)
        return {
            "schema": "riskflow.event/v1",
            "event_id": f"sim-{self.seed}-{self.n:09d}",
            "event_type": etype,
            "entity_id": ent.entity_id,
            "entity_kind": ent.kind,
            "region": ent.region,
            "event_time": t.isoformat(timespec="seconds"),
            "source": source,
            "payload": payload,
        }


def _population(rng: random.Random, n: int, ponzi_share: float) -> list[_Entity]:
    kinds = list(_KINDS)
    weights = list(_KINDS.values())
    regions = list(REGIONS)
    out = []
    for i in range(n):
        kind = rng.choices(kinds, weights)[0]
        if kind in ("private_fund", "private_fund_manager"):
            region = rng.choices(list(_FUND_REGIONS), list(_FUND_REGIONS.values()))[0]
        else:
            region = rng.choice(regions)
        out.append(_Entity(f"{_PREFIX[kind]}-{region}-{i:05d}", kind, region))
    return out


def _normal_day(g: _Gen, ent: _Entity, day: int) -> Iterator[dict[str, Any]]:
    rng = g.rng
    t = day + rng.random()
    if ent.kind == "private_fund" and rng.random() < 0.15:
        yield g.event(
            ent,
            t,
            "fund.subscription",
            "amac",
            {
                "fund_id": ent.entity_id,
                "investor_id": f"INV-{rng.randrange(10**6):06d}",
                "investor_type": rng.choice(["individual", "institution"]),
                "amount": float(rng.randrange(1_000_000, 5_000_000, 50_000)),
            },
        )
    if ent.kind == "private_fund" and day % 7 == 4:
        yield g.event(
            ent,
            t,
            "fund.nav_reported",
            "amac",
            {"fund_id": ent.entity_id, "nav": round(1 + rng.gauss(0, 0.05), 4), "period_end": _date(g, day)},
        )
    if rng.random() < 0.01:
        yield g.event(ent, t, "complaint.filed", "complaint_hotline", {"channel": "12345", "category": "other"})
    if rng.random() < 0.01:
        yield g.event(ent, t, "opinion.published", "public_opinion", {"sentiment": round(rng.uniform(-0.3, 0.8), 2)})


def _date(g: _Gen, day: int) -> str:
    return (g.start + _dt.timedelta(days=day)).date().isoformat()


def _ponzi_day(g: _Gen, ent: _Entity, day: int) -> Iterator[dict[str, Any]]:
    """Stylised Ponzi fund: guaranteed-return ads, small retail tickets, then lost contact."""
    rng = g.rng
    t = day + rng.random()
    phase = day - ent.onset
    if phase < 0:
        yield from _normal_day(g, ent, day)
        return
    if phase % 10 == 0:
        yield g.event(
            ent,
            t,
            "advertisement.published",
            "advertising_monitor",
            {"channel": "wechat", "promised_return": 0.15, "guaranteed": True, "min_investment": 50000},
        )
    for _ in range(rng.randrange(1, 4)):
        yield g.event(
            ent,
            t,
            "fund.subscription",
            "amac",
            {
                "fund_id": ent.entity_id,
                "investor_id": f"INV-{rng.randrange(10**6):06d}",
                "investor_type": "individual",
                "amount": float(rng.randrange(50_000, 300_000, 10_000)),
            },
        )
    if day == ent.failure - 3:
        yield g.event(ent, t, "amac.notice", "amac", {"notice": "lost_contact"})


def simulate(
    entities: int = 200,
    days: int = 90,
    seed: int = 0,
    start: _dt.datetime = DEFAULT_START,
    ponzi_share: float = 0.05,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Events (v1 dicts, in event-time order) and ground-truth labels."""
    g = _Gen(seed, start)
    pop = _population(g.rng, entities, ponzi_share)
    for ent in pop:
        if ent.kind == "private_fund" and g.rng.random() < ponzi_share * 4 and days >= 20:
            ent.scenario = "ponzi_fund"
            ent.onset = g.rng.randrange(0, max(1, days // 2))
            ent.failure = min(days - 1, ent.onset + g.rng.randrange(10, max(11, days // 2)))
    events: list[dict[str, Any]] = []
    for day in range(days):
        for ent in pop:
            gen = _ponzi_day if ent.scenario == "ponzi_fund" else _normal_day
            events.extend(gen(g, ent, day))
    events.sort(key=lambda e: (e["event_time"], e["event_id"]))
    labels = [
        {
            "entity_id": e.entity_id,
            "scenario": e.scenario,
            "onset_time": (start + _dt.timedelta(days=e.onset)).isoformat(),
            "failure_time": (start + _dt.timedelta(days=e.failure + 1)).isoformat(),
        }
        for e in pop
        if e.scenario
    ]
    return events, labels
