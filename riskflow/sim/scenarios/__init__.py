"""The scenario library: one module per scenario, found automatically.

A scenario is a subclass of :class:`riskflow.sim.scenarios.base.Scenario`
with a unique ``name``; importing this package imports every module in it,
so adding a scenario is a one-file change.

>>> sorted(SCENARIOS)[:3]
['bank_liquidity_squeeze', 'benign_lookalike', 'guarantee_chain_default']
"""

from __future__ import annotations

import importlib
import pkgutil

from riskflow.sim.scenarios.base import REGISTRY, Scenario

for _m in pkgutil.iter_modules(__path__):
    if _m.name != "base":
        importlib.import_module(f"{__name__}.{_m.name}")

SCENARIOS: dict[str, type[Scenario]] = dict(sorted(REGISTRY.items()))

__all__ = ["SCENARIOS", "Scenario"]
