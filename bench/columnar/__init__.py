"""A bench-only prototype: the rule pack's ``threshold`` and ``window`` (``count``) rules
evaluated over a whole batch of events with numpy, state as arrays keyed by entity slot.

It exists to measure one question (issue 23, item 4): can the per-event rule work leave the
interpreter without a second implementation of every rule? ``bench/columnar_bench.py``
runs it beside the product's own per-event rule loop on the same history, checks that the
two find the same signals and that the product's processor turns them into the same
alerts, and compares their cost. It is not part of the product and nothing in
``riskflow/``, ``detectors/`` or ``streams/`` imports it; the decision it informs is in
docs/performance.md, "Execution model: a measured decision".
"""

from __future__ import annotations

from bench.columnar.engine import ColumnarRules, covered

__all__ = ["ColumnarRules", "covered"]
