"""The simulator: a seeded, labelled history of Zhejiang's monitored entities.

``simulate`` builds a population (:mod:`riskflow.sim.population`), lets every
entity live a normal life at base rates (:mod:`riskflow.sim.normal`), makes a
configurable share of them follow a failure scenario
(:mod:`riskflow.sim.scenarios`, one module each) and returns the events in
event-time order plus the ground-truth labels of docs/events.md.

Deterministic for a seed: every entity draws from its own random generator
(seeded from the run seed and its index), and events are ordered by
(event time, entity index, emission order).

>>> events, labels = simulate(entities=30, days=60, seed=1)
>>> sorted({lab["scenario"] for lab in labels})[:2]
['bank_liquidity_squeeze', 'benign_lookalike']
>>> simulate(entities=30, days=60, seed=1) == (events, labels)
True
>>> all(a["event_time"] <= b["event_time"] for a, b in zip(events, events[1:]))
True
"""

from __future__ import annotations

import datetime as _dt
import gc
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from riskflow.sim.calendar import Calendar
from riskflow.sim.emit import Emitter, format_cst
from riskflow.sim.normal import normal_activity
from riskflow.sim.population import Entity, build_population
from riskflow.sim.scenarios import SCENARIOS

CST = _dt.timezone(_dt.timedelta(hours=8))
DEFAULT_START = _dt.datetime(2025, 1, 1, tzinfo=CST)

__all__ = ["CST", "DEFAULT_START", "SCENARIOS", "History", "generate", "parse_mix", "simulate"]


@dataclass
class History:
    """Events as ``(sort_key, event_dict)`` in event-time order, and labels."""

    events: list[tuple[int, dict[str, Any]]]
    labels: list[dict[str, Any]]
    population: list[Entity]


def parse_mix(text: str) -> dict[str, float]:
    """``"ponzi_fund=0.02,p2p_run=0"`` -> shares; unknown names are an error.

    >>> parse_mix("ponzi_fund=0.02, p2p_run=0")
    {'ponzi_fund': 0.02, 'p2p_run': 0.0}
    """
    out: dict[str, float] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        name, _, value = part.partition("=")
        name = name.strip()
        if name not in SCENARIOS:
            raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
        out[name] = float(value) if value.strip() else SCENARIOS[name].share
        if out[name] < 0:
            raise ValueError(f"share of {name} must be >= 0")
    return out


def generate(
    entities: int = 200,
    days: float = 90,
    seed: int = 0,
    start: _dt.datetime = DEFAULT_START,
    scenarios: Mapping[str, float] | None = None,
    intensity: float = 1.0,
) -> History:
    """The history as sort-keyed dicts (the fast path used by the CLI writer).

    ``scenarios`` maps scenario name -> share of the population (default: each
    scenario's own ``share``; a scenario with a share > 0 gets at least one
    entity). ``intensity`` scales the rate of every scenario signal.
    """
    if start.tzinfo is None:
        raise ValueError("start must carry a time zone")
    shares = {name: cls.share for name, cls in SCENARIOS.items()} if scenarios is None else dict(scenarios)
    rng = random.Random(seed)
    counts = {name: max(1, round(share * entities)) for name, share in shares.items() if share > 0}
    required: dict[str, int] = {}
    plan: list[tuple[str, str]] = []  # (scenario, kind) per required entity, in order
    for name, n in counts.items():
        kinds = SCENARIOS[name].kinds
        for i in range(n):
            kind = kinds[i % len(kinds)] if SCENARIOS[name].benign else rng.choice(kinds)
            required[kind] = required.get(kind, 0) + 1
            plan.append((name, kind))
    pop = build_population(rng, entities, required)
    free: dict[str, list[Entity]] = {}
    for ent in pop:
        free.setdefault(ent.kind, []).append(ent)
    for kind in free:
        rng.shuffle(free[kind])
    for name, kind in plan:
        ent = free[kind].pop()
        cls = SCENARIOS[name]
        span = min(rng.uniform(*cls.duration), 0.8 * days)
        ent.scenario = name
        ent.onset = rng.uniform(0.1 * days, max(0.1 * days, days - span - 0.5))
        if cls.benign:
            ent.normal = True
            ent.attrs["span"] = span
        else:
            ent.failure = ent.onset + span
    cal = Calendar(start.date(), days)
    out: list[tuple[int, dict[str, Any]]] = []
    # Millions of small dicts and no cycles: the cyclic GC would only rescan them (it nearly doubled the time).
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        for ent in pop:
            em = Emitter(ent, random.Random(seed * 1_000_003 + ent.index), seed, start, days)
            if ent.scenario:
                SCENARIOS[ent.scenario](em, cal, days, intensity).run()
            else:
                normal_activity(em, cal, 0.0, days)
            out.extend(em.out)
        out.sort(key=lambda kv: kv[0])
    finally:
        if was_enabled:
            gc.enable()
    start_ts = int(start.timestamp())
    labels: list[dict[str, Any]] = []
    for ent in pop:
        if not ent.scenario:
            continue
        lab: dict[str, Any] = {
            "entity_id": ent.entity_id,
            "scenario": ent.scenario,
            "onset_time": format_cst(start_ts + int(ent.onset * 86400)),
            "failure_time": None if ent.failure is None else format_cst(start_ts + int(ent.failure * 86400)),
        }
        if ent.normal:
            lab["normal"] = True
        labels.append(lab)
    return History(out, labels, pop)


def simulate(
    entities: int = 200,
    days: float = 90,
    seed: int = 0,
    start: _dt.datetime = DEFAULT_START,
    scenarios: Mapping[str, float] | None = None,
    intensity: float = 1.0,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Events (v1 dicts, in event-time order) and ground-truth labels."""
    h = generate(entities, days, seed, start, scenarios, intensity)
    return [e for _, e in h.events], h.labels
