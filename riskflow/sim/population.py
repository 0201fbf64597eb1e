"""A population of monitored entities across Zhejiang's cities.

Private-fund managers and funds cluster in Hangzhou (Yuhuang Shannan fund
town), Ningbo (Meishan Bay) and Jiaxing (Nanhu fund town); other kinds follow
the size of each city's economy. Funds belong to a manager, mostly in the
same city.

>>> import random
>>> pop = build_population(random.Random(1), 300, {})
>>> len(pop), len({e.entity_id for e in pop})
(300, 300)
>>> funds = [e for e in pop if e.kind == "private_fund"]
>>> sum(e.region in ("330100", "330200", "330400") for e in funds) > 0.7 * len(funds)
True
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

#: Entity kinds and their share of the population (Zhejiang has thousands of
#: private-fund managers and funds, a few hundred small-loan and guarantee
#: companies, dozens of local banks; legacy P2P platforms are winding down).
KIND_WEIGHTS: dict[str, float] = {
    "private_fund": 34,
    "private_fund_manager": 10,
    "enterprise": 16,
    "small_loan_company": 9,
    "financing_guarantee": 6,
    "bank": 5,
    "pawnshop": 6,
    "financial_leasing": 4,
    "commercial_factoring": 4,
    "trading_venue": 2,
    "p2p_platform": 2,
}

FUND_REGION_WEIGHTS: dict[str, float] = {
    "330100": 50, "330200": 18, "330400": 12, "330300": 6, "330600": 4, "330700": 3,
    "331000": 3, "330500": 2, "330900": 1, "330800": 0.5, "331100": 0.5,
}  # fmt: skip
ECONOMY_REGION_WEIGHTS: dict[str, float] = {
    "330100": 22, "330200": 17, "330300": 10, "330400": 8, "330500": 5, "330600": 9,
    "330700": 7, "330800": 2.5, "330900": 2.5, "331000": 8, "331100": 2.5,
}  # fmt: skip
P2P_REGION_WEIGHTS: dict[str, float] = {"330100": 50, "330300": 25, "330200": 10, "331000": 8, "330700": 7}

PREFIX: dict[str, str] = {
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
class Entity:
    """One monitored entity; ``scenario`` is ``None`` for normal ones."""

    index: int
    entity_id: str
    kind: str
    region: str
    manager_id: str | None = None
    scenario: str | None = None
    onset: float = 0.0  # days from the history start
    failure: float | None = None
    normal: bool = False  # a labelled look-alike that must not alarm
    attrs: dict[str, Any] = field(default_factory=dict)


def pick_region(rng: random.Random, kind: str) -> str:
    table = (
        FUND_REGION_WEIGHTS
        if kind in ("private_fund", "private_fund_manager")
        else P2P_REGION_WEIGHTS
        if kind == "p2p_platform"
        else ECONOMY_REGION_WEIGHTS
    )
    return rng.choices(list(table), list(table.values()))[0]


def build_population(rng: random.Random, n: int, required: dict[str, int]) -> list[Entity]:
    """``n`` entities: first ``required[kind]`` of each kind (for scenarios), the rest by weight."""
    kinds: list[str] = []
    for kind, k in required.items():
        kinds.extend([kind] * k)
    if len(kinds) > n:
        raise ValueError(f"{len(kinds)} scenario entities do not fit in a population of {n}")
    names, weights = list(KIND_WEIGHTS), list(KIND_WEIGHTS.values())
    kinds.extend(rng.choices(names, weights, k=n - len(kinds)))
    pop: list[Entity] = []
    managers: dict[str, list[str]] = {}
    for i, kind in enumerate(kinds):
        region = pick_region(rng, kind)
        ent = Entity(i, f"{PREFIX[kind]}-{region}-{i:05d}", kind, region)
        pop.append(ent)
        if kind == "private_fund_manager":
            managers.setdefault(region, []).append(ent.entity_id)
    everyone = [m for ms in managers.values() for m in ms]
    for ent in pop:
        if ent.kind == "private_fund":
            local = managers.get(ent.region)
            if local and rng.random() < 0.85:
                ent.manager_id = rng.choice(local)
            elif everyone:
                ent.manager_id = rng.choice(everyone)
            else:  # a population too small to hold a manager: one outside it
                ent.manager_id = f"PFM-{ent.region}-X{ent.index:05d}"
    return pop
