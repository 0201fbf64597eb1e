"""The one pattern of RiskFlow's metrics bundles (worker, alert sink, feed).

A bundle is a frozen dataclass whose fields are the metrics, built by a
``create(registry)`` classmethod on an injected registry (never the global
one: tests and several apps in one process each get their own). Every metric
is made with the functions below, which hold the project's metric rules in one
place:

- names carry the ``riskflow_`` prefix, and a counter's name ends in ``_total``;
- a labelled metric declares its label values as small fixed sets (``fixed``),
  never an entity or investor id; every combination of a fixed set's values
  exists from the start at 0, so ``rate()`` and ``increase()`` see a value's
  first increment. ``open_labels`` names labels whose values come from a set
  fixed elsewhere (a rule id of the pack, an event type of the contract) and
  are therefore not pre-created.

>>> from prometheus_client import CollectorRegistry
>>> reg = CollectorRegistry()
>>> c = counter(reg, "riskflow_demo_total", "Demo.", fixed={"reason": ("a", "b")})
>>> reg.get_sample_value("riskflow_demo_total", {"reason": "b"})
0.0
>>> counter(reg, "demo_total", "No prefix.")
Traceback (most recent call last):
...
ValueError: metric name demo_total: RiskFlow metrics are named riskflow_*
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

PREFIX = "riskflow_"

Fixed = Mapping[str, Iterable[str]]


def _check(name: str, counter_: bool) -> None:
    if not name.startswith(PREFIX):
        raise ValueError(f"metric name {name}: RiskFlow metrics are named {PREFIX}*")
    if counter_ and not name.endswith("_total"):
        raise ValueError(f"counter {name}: a counter's name ends in _total")


def _labels(fixed: Fixed | None, open_labels: Sequence[str]) -> tuple[list[str], list[tuple[str, ...]]]:
    """Label names (the fixed ones first) and every combination of the fixed values."""
    sets = {k: tuple(v) for k, v in (fixed or {}).items()}
    names = [*sets, *open_labels]
    combos = list(itertools.product(*sets.values())) if sets and not open_labels else []
    return names, combos


def _labelled(
    kind: type[Counter] | type[Gauge],
    registry: CollectorRegistry,
    name: str,
    doc: str,
    fixed: Fixed | None,
    open_labels: Sequence[str],
) -> Any:
    _check(name, counter_=kind is Counter)
    names, combos = _labels(fixed, open_labels)
    metric = kind(name, doc, names, registry=registry)
    for values in combos:
        metric.labels(**dict(zip(names, values, strict=True)))
    return metric


def counter(
    registry: CollectorRegistry, name: str, doc: str, *, fixed: Fixed | None = None, open_labels: Sequence[str] = ()
) -> Counter:
    """A counter; with ``fixed`` labels, each combination's series exists at 0."""
    c: Counter = _labelled(Counter, registry, name, doc, fixed, open_labels)
    return c


def gauge(
    registry: CollectorRegistry, name: str, doc: str, *, fixed: Fixed | None = None, open_labels: Sequence[str] = ()
) -> Gauge:
    """A gauge; with ``fixed`` labels, each combination's series exists at 0."""
    g: Gauge = _labelled(Gauge, registry, name, doc, fixed, open_labels)
    return g


def histogram(registry: CollectorRegistry, name: str, doc: str, buckets: Sequence[float]) -> Histogram:
    """An unlabelled histogram with explicit buckets (in seconds, the base unit)."""
    _check(name, counter_=False)
    return Histogram(name, doc, buckets=buckets, registry=registry)
