"""Rule and anomaly detectors: pure Python over :class:`riskflow.core.schema.Event`.

Nothing here imports Kafka, Faust or Prometheus, so the same code runs inside a
Faust agent, in an offline backtest and in a unit test.

The hot-path modules below can also be built as C extensions with mypyc
(``RISKFLOW_COMPILE=1 pip install -e .``, docs/performance.md); the source stays
the same Python, and the pure build is the default. :func:`compiled` says which
of them the running process actually uses.

>>> set(compiled()) <= set(MYPYC_MODULES)
True
"""

from __future__ import annotations

import importlib
import importlib.machinery
from pathlib import Path

#: Every module of ``detectors/rules/`` but its ``__init__``: derived, so that a new rule kind
#: is compiled without a second edit. That is safe: every rule kind runs on the hot path (per
#: event) like the kinds measured when this list was chosen; a kind's module is held to what
#: compiled code needs (no msgspec Struct in it: tests/unit/test_compiled.py checks every module
#: here), and the compiled CI stage runs the rule tests against the build. Listed by hand, a
#: forgotten kind would run interpreted, silently slower than its neighbours.
_RULE_MODULES: tuple[str, ...] = tuple(
    f"detectors.rules.{p.stem}"
    for p in sorted((Path(__file__).parent / "rules").glob("*.py"))
    if not p.stem.startswith("_")
)

#: The modules the optional compiled build compiles (read by ``setup.py``, which runs this
#: file alone: it imports the standard library only; chosen by measurement, the fourth
#: performance pass, in git history). A module here must not define msgspec Structs.
MYPYC_MODULES: tuple[str, ...] = (
    "detectors.pipeline",
    "detectors.engine",
    "detectors.anomaly.daily",
    "detectors.risk.scorer",
    *_RULE_MODULES,
)


def compiled() -> list[str]:
    """The modules of :data:`MYPYC_MODULES` that this process runs compiled (empty: pure Python)."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    return [m for m in MYPYC_MODULES if (importlib.import_module(m).__file__ or "").endswith(suffixes)]


def stale() -> list[str]:
    """Compiled modules whose ``.py`` changed after the build: the extension module still runs
    the old code (rebuild, or go back to pure Python with ``python build_support/clean.py``)."""
    out = []
    for m in compiled():
        so = Path(importlib.import_module(m).__file__ or "")
        if so.with_name(m.rsplit(".", 1)[-1] + ".py").stat().st_mtime > so.stat().st_mtime:
            out.append(m)
    return out


def build() -> str:
    """Which build runs, in words, for ``riskflow --version``, the worker's start-up log and benchmarks.

    >>> build().startswith(("pure Python", "compiled (mypyc): "))
    True
    """
    n = len(compiled())
    if n == 0:
        return "pure Python"
    old = stale()
    warn = f"; STALE, older than their source: {', '.join(old)}" if old else ""
    return f"compiled (mypyc): {n} of {len(MYPYC_MODULES)} modules{warn}"
