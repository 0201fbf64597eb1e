"""The columnar prototype: covered rules evaluated per batch with numpy.

A batch is a list of parsed events that reach the detectors on the engine's normal path
(duplicates and events beyond the allowed lateness already set aside, as
``detectors.engine.Engine.process`` does before its detector loop). :meth:`ColumnarRules.process`
returns what that loop's covered rules would have signalled, as ``(position in the batch,
Signal)`` in the engine's order (by event, then pack order).

What runs per event in the interpreter, and what does not:

- *columns*: per event type present, its positions, entity kinds and the payload fields the
  rules read are gathered with ``map``/``attrgetter`` (C loops over Python objects, no
  bytecode per event, but one attribute read and one reference per value);
- *threshold*: each condition is one numpy comparison over the event type's column (a
  missing field or a ratio with a non-positive base never matches, as in the product); the
  evidence of the (rare) events that fire comes from the product's own
  ``detectors.rules.base.match`` on that one payload;
- *window* (``agg: count``, no ``scope``, ``window_days`` at most :data:`MAX_RING_DAYS`):
  per entity slot, the end day ``t``, the armed flag ``on`` and a ring of ``window_days``
  day buckets; within a batch the window end is a segmented running maximum, the count an
  event sees is the carried ring's days inside its window plus the earlier counted events of
  the batch inside it (a pairwise mask within the entity's events: out-of-order days within
  the lateness land in their own day, as the product's buckets do), and fire/re-arm is the
  product's state machine written as "a hit whose previous counted event was not a hit".

Numbers are compared as float64 (the schema bounds payload numbers to 1e14, inside float64's
exact integers). Not covered: ``window`` with ``sum``, ``ratio``, ``distinct`` or ``scope``
(sums in another order round differently; ``distinct`` keeps an LRU of hashes), and every
other kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from operator import attrgetter
from typing import Any

import numpy as np

from detectors.base import Signal
from detectors.rules.base import CST_OFFSET, DAY, Condition, Rule, match
from detectors.rules.threshold import ThresholdRule
from detectors.rules.window import WindowRule
from riskflow.core.schema import Event

#: Longest window kept as a ring of day buckets per entity slot (the pack's count windows: 7 and 30).
MAX_RING_DAYS = 400
_NEVER = np.iinfo(np.int64).min // 4  # day of an empty ring bucket: below every window
_TYPE, _KIND, _PAYLOAD, _TS = (attrgetter(a) for a in ("event_type", "entity_kind", "payload", "ts"))
_CMP = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal}


def covered(rule: Rule) -> bool:
    """Whether the prototype evaluates this rule."""
    if isinstance(rule, ThresholdRule):
        return True
    return (
        isinstance(rule, WindowRule)
        and rule.agg == "count"
        and rule.scope_type is None
        and rule.window_days <= MAX_RING_DAYS
    )


def _objects(values: Any, n: int) -> np.ndarray:
    return np.fromiter(values, dtype=object, count=n)


class _Columns:
    """One batch as columns: per event type, positions, entity kinds and payload fields."""

    def __init__(self, events: Sequence[Event], needs: dict[str, set[str]]) -> None:
        n = len(events)
        types = _objects(map(_TYPE, events), n)
        self.ts = np.fromiter(map(_TS, events), dtype=np.float64, count=n)
        self.pos: dict[str, np.ndarray] = {}
        self.kinds: dict[str, np.ndarray] = {}
        self.fields: dict[tuple[str, str], np.ndarray] = {}
        self.payloads: dict[str, list[Any]] = {}
        for et, fields in needs.items():
            pos = np.flatnonzero(types == et)
            if not len(pos):
                continue
            self.pos[et] = pos
            evs = [events[i] for i in pos.tolist()]
            self.kinds[et] = _objects(map(_KIND, evs), len(evs))
            payloads = self.payloads[et] = list(map(_PAYLOAD, evs))
            for f in fields:
                self.fields[et, f] = _objects(map(attrgetter(f), payloads), len(payloads))


def _isin(col: np.ndarray, values: Any) -> np.ndarray:
    m = np.zeros(len(col), dtype=bool)
    for v in values:
        m |= col == v
    return m


def _condition(cols: _Columns, et: str, c: Condition) -> np.ndarray:
    """Where ``c`` holds over the event type's rows (the product's ``Condition.test``)."""
    col = cols.fields[et, c.num]
    present = ~np.equal(col, None)
    if c.den:
        den = cols.fields[et, c.den]
        present &= ~np.equal(den, None)
        d = np.where(present, den, 1.0).astype(np.float64)
        present &= d > 0
        with np.errstate(all="ignore"):
            col = np.where(present, col, 0.0).astype(np.float64) / np.where(present, d, 1.0)
    op, want = c.op_name, c.want
    if op in _CMP:
        x = np.where(present, col, np.nan).astype(np.float64)
        with np.errstate(invalid="ignore"):
            return present & _CMP[op](x, float(want))
    if op == "==":
        return present & (col == want)
    if op == "!=":
        return present & (col != want)
    if op == "in":
        return present & _isin(col, want)
    if op == "not_in":
        return present & ~_isin(col, want)
    # any_in: a list field shares an element with the value list
    lists = col[present]
    lens = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
    flat = _objects(chain.from_iterable(lists), int(lens.sum()))
    seen = np.concatenate(([0], np.cumsum(_isin(flat, want))))
    ends = np.cumsum(lens)
    out = np.zeros(len(col), dtype=bool)
    out[present] = seen[ends] - seen[ends - lens] > 0
    return out


class _Ring:
    """A count window's state for every entity slot: end day, armed flag, day buckets."""

    def __init__(self, days: int) -> None:
        self.w = days
        self.t = np.zeros(0, dtype=np.int64)
        self.on = np.zeros(0, dtype=bool)
        self.day = np.zeros((0, days), dtype=np.int64)
        self.count = np.zeros((0, days), dtype=np.float64)

    def grow(self, slots: int) -> None:
        have = len(self.t)
        if slots <= have:
            return
        more = max(slots, 2 * have, 1024) - have
        self.t = np.concatenate((self.t, np.zeros(more, dtype=np.int64)))
        self.on = np.concatenate((self.on, np.zeros(more, dtype=bool)))
        self.day = np.concatenate((self.day, np.full((more, self.w), _NEVER, dtype=np.int64)))
        self.count = np.concatenate((self.count, np.zeros((more, self.w), dtype=np.float64)))


class ColumnarRules:
    """The covered rules of ``rules`` (in their order), evaluated over whole batches.

    ``uncovered`` lists the ids it leaves out; state lives in arrays keyed by an entity
    slot (one per entity id seen by a count window)."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = [r for r in rules if covered(r)]
        self.uncovered = [r.id for r in rules if not covered(r)]
        self.rank = {r.id: i for i, r in enumerate(self.rules)}
        self.needs: dict[str, set[str]] = {}
        for r in self.rules:
            fields = self.needs.setdefault(r.event_type, set())
            for c in r.when:
                fields.add(c.num)
                if c.den:
                    fields.add(c.den)
        self.slots: dict[str, int] = {}
        self.rings = {r.id: _Ring(r.window_days) for r in self.rules if isinstance(r, WindowRule)}

    def columns(self, events: Sequence[Event]) -> _Columns:
        return _Columns(events, self.needs)

    def process(self, events: Sequence[Event]) -> list[tuple[int, Signal]]:
        cols = self.columns(events)
        hits: list[tuple[int, int, Signal]] = []
        for rank, rule in enumerate(self.rules):
            et = rule.event_type
            pos = cols.pos.get(et)
            if pos is None:
                continue
            m = np.ones(len(pos), dtype=bool)
            if rule.entity_kinds is not None:
                m &= _isin(cols.kinds[et], rule.entity_kinds)
            for c in rule.when:
                m &= _condition(cols, et, c)
            if isinstance(rule, ThresholdRule):
                for k in np.flatnonzero(m).tolist():
                    p = int(pos[k])
                    evidence = match(rule.when, cols.payloads[et][k])
                    if evidence is None:  # the columns and the product disagree: a prototype bug
                        raise AssertionError(f"{rule.id}: column mask fired where match() does not")
                    hits.append((p, rank, Signal(rule.id, events[p].event_id, rule.severity, 1.0, evidence)))
            elif m.any():
                hits += self._count(rule, rank, events, pos[m], cols.ts)  # type: ignore[arg-type]
        hits.sort(key=lambda h: (h[0], h[1]))
        return [(p, sig) for p, _, sig in hits]

    def _count(
        self, rule: WindowRule, rank: int, events: Sequence[Event], q: np.ndarray, ts: np.ndarray
    ) -> list[tuple[int, int, Signal]]:
        slots = self.slots
        s = np.fromiter(
            (slots.setdefault(events[p].entity_id, len(slots)) for p in q.tolist()), dtype=np.int64, count=len(q)
        )
        ring = self.rings[rule.id]
        ring.grow(len(slots))
        w = ring.w
        d = np.floor_divide(ts[q] + CST_OFFSET, DAY).astype(np.int64)  # day_of, per event
        order = np.lexsort((q, s))  # by entity slot, then arrival
        s, d, q = s[order], d[order], q[order]
        n = len(q)
        start = np.concatenate(([True], s[1:] != s[:-1]))
        last = np.concatenate((start[1:], [True]))
        grp = np.cumsum(start) - 1
        # the window's end day after each event: a running maximum within each entity's events
        lo = int(d.min())
        span = int(d.max()) - lo + 1
        run = np.maximum.accumulate(grp * span + (d - lo)) - grp * span + lo
        t = np.maximum(run, ring.t[s])
        oldest = t - w + 1
        counted = d >= oldest  # else: too late for the window, the state is left alone
        carried = (ring.count[s] * (ring.day[s] >= oldest[:, None])).sum(axis=1)
        idx = np.arange(n)
        earlier = (grp[:, None] == grp[None, :]) & (idx[None, :] <= idx[:, None])
        inside = earlier & counted[None, :] & (d[None, :] >= oldest[:, None])
        value = carried + inside.sum(axis=1)
        hit = value >= rule.threshold if rule.op == ">=" else value > rule.threshold
        f = np.flatnonzero(counted)
        gf, hf = grp[f], hit[f]
        first = np.concatenate(([True], gf[1:] != gf[:-1])) if len(f) else np.zeros(0, dtype=bool)
        armed = np.empty(len(f), dtype=bool)
        armed[1:] = hf[:-1]
        armed[first] = ring.on[s[f[first]]]
        fire = hf & ~armed
        # carry the state: end day, armed flag after each entity's last counted event, buckets
        if len(f):
            lastf = np.concatenate((gf[1:] != gf[:-1], [True]))
            ring.on[s[f[lastf]]] = hf[lastf]
        ends = s[last]
        ring.t[ends] = t[last]
        floor = (t[last] - w + 1)[:, None]
        stale = ring.day[ends] < floor
        ring.day[ends] = np.where(stale, _NEVER, ring.day[ends])
        ring.count[ends] = np.where(stale, 0.0, ring.count[ends])
        keep = counted & (d >= (t[last] - w + 1)[grp])
        ks, kd = s[keep], d[keep]
        ring.day[ks, kd % w] = kd
        np.add.at(ring.count, (ks, kd % w), 1.0)
        out = []
        for k in f[fire].tolist():
            p = int(q[k])
            evidence = {"agg": rule.agg, "value": round(float(value[k]), 6), "threshold": rule.threshold}
            evidence["window_days"] = rule.window_days
            out.append((p, rank, Signal(rule.id, events[p].event_id, rule.severity, 1.0, evidence)))
        return out
