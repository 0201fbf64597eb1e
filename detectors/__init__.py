"""Rule and anomaly detectors: pure Python over :class:`riskflow.schema.Event`.

Nothing here imports Kafka, Faust or Prometheus, so the same code runs inside a
Faust agent, in an offline backtest and in a unit test.

The hot-path modules below can also be built as C extensions with mypyc
(``RISKFLOW_COMPILE=1 pip install -e .``, README "Performance"); the source stays
the same Python, and the pure build is the default. :func:`compiled` says which
of them the running process actually uses.

>>> set(compiled()) <= set(MYPYC_MODULES)
True
"""

from __future__ import annotations

import importlib
import importlib.machinery

#: The modules the optional compiled build compiles (read by ``setup.py``; chosen by
#: measurement, README "Fourth pass"). A module here must not define msgspec Structs.
MYPYC_MODULES: tuple[str, ...] = (
    "detectors.pipeline",
    "detectors.engine",
    "detectors.anomaly.daily",
    "detectors.risk.scorer",
    "detectors.rules.base",
    "detectors.rules.window",
    "detectors.rules.surge",
    "detectors.rules.threshold",
    "detectors.rules.absence",
    "detectors.rules.sequence",
    "detectors.rules.series",
    "detectors.rules.change_frequency",
)


def compiled() -> list[str]:
    """The modules of :data:`MYPYC_MODULES` that this process runs compiled (empty: pure Python)."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    return [m for m in MYPYC_MODULES if (importlib.import_module(m).__file__ or "").endswith(suffixes)]


def build() -> str:
    """Which build runs, in words, for ``riskflow --version``, the worker's start-up log and benchmarks.

    >>> build() in ("pure Python", f"compiled (mypyc): {len(MYPYC_MODULES)} of {len(MYPYC_MODULES)} modules")
    True
    """
    n = len(compiled())
    return "pure Python" if n == 0 else f"compiled (mypyc): {n} of {len(MYPYC_MODULES)} modules"
