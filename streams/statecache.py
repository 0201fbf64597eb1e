"""Decoded entity states in process: the changed ones not yet written, and a bounded cache.

The table (``streams/tables.py``) stores each entity's state as msgpack bytes.
This module holds, in front of it, the :class:`~detectors.engine.EntityState`
objects of this worker, in two parts:

- **dirty**: states changed by processed batches and not yet written to the
  changelog. For this worker they are the truth (:meth:`StateCache.get`
  returns them first); the table's bytes and the changelog still hold the
  last *flushed* state. They are written — encoded once, one changelog record
  per changed entity — by a *flush* (``streams/flusher.py``), when
  :meth:`StateCache.due` says so: ``interval`` seconds after the first state
  became dirty (0: after every batch), or once more than ``max_dirty`` states
  are dirty. The batch tap also flushes before offsets are committed on a
  rebalance and before shutdown (``streams/batchtap.py``). A batch's offsets
  are acknowledged only after the flush that covers it, so the order stays:
  alerts delivered → states written → offsets acknowledged. Dirty states never
  reach the table's bytes before the changelog acknowledged them.
- **writing**: the states of the flush in flight. A flush *takes* the dirty
  states (:meth:`StateCache.take`), encodes them (a slice after each batch,
  ``streams/flusher.py``) and writes them while the next batches run
  (``streams/batchtap.py``); until the write has landed (:meth:`StateCache.written`)
  they are still what :meth:`StateCache.get` returns, and a batch that changes one
  makes it dirty again, for the next flush.
- **clean**: the states this worker last wrote, so a busy entity is decoded
  once, not once per batch. At most ``capacity`` entries (trimmed back to it
  in bulk once it is an eighth over); the least recently written go first.
  A decoded state is ~5 KB in memory (against ~0.9 KB of msgpack), so 10,000
  entries cost ~50 MB. ``capacity`` 0 turns this part off.

Both are dropped whole (dirty states are *not* written) whenever they may no
longer be the truth:

- the consumer generation changed (a rebalance: partitions were revoked or
  assigned, another worker may own them now and have written their states;
  the un-acknowledged offsets are read again from the committed offsets),
- the table finished a recovery (its bytes were rewritten from the changelog),
- a batch failed or was cancelled half-way (the pipeline mutates states in
  place, so the objects may hold events whose alerts were never delivered;
  the batch tap then acknowledges none of the un-flushed batches).

>>> from detectors.engine import EntityState, decode_state
>>> c = StateCache(8)
>>> for i in range(10):
...     c.put(f"e{i}", EntityState(entity_id=f"e{i}"))
>>> c.get("e0") is None, c.get("e9").entity_id, len(c)
(True, 'e9', 8)
>>> c.check_generation(1); len(c)
0
>>> c = StateCache(8, interval=1.0, max_dirty=2, clock=iter([10.0, 10.5, 11.0]).__next__)
>>> c.mark("a", EntityState(entity_id="a"), 0); c.due()
>>> c.due()
'interval'
>>> taken = c.take(); c.written(taken, c.epoch)
>>> list(taken), c.get("a").entity_id, len(c.dirty)
(['a'], 'a', 0)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from itertools import islice

from detectors.engine import EntityState, decode_state


class StateCache:
    """Entity id -> its dirty (un-flushed) state, else the state last written (module docstring)."""

    __slots__ = (
        "_data",
        "capacity",
        "clock",
        "dirty",
        "dirty_since",
        "epoch",
        "generation",
        "interval",
        "max_dirty",
        "writing",
    )

    def __init__(
        self,
        capacity: int,
        *,
        interval: float = 0.0,
        max_dirty: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = capacity
        self.interval = interval
        self.max_dirty = max_dirty
        self.clock = clock
        self.generation: int | None = None
        self._data: dict[str, EntityState] = {}
        #: Entity id -> (changed state, its changelog partition), not yet written.
        self.dirty: dict[str, tuple[EntityState, int]] = {}
        self.dirty_since: float | None = None  # clock() when the first of them became dirty
        #: The states of the write in flight (taken from ``dirty`` by :meth:`take`), until written.
        self.writing: dict[str, tuple[EntityState, int]] = {}
        self.epoch = 0  # counts clear(): a write that lands after one leaves the cache alone

    def __len__(self) -> int:
        return len(self._data) + len(self.dirty)

    def get(self, entity_id: str) -> EntityState | None:
        hit = self.dirty.get(entity_id)
        if hit is not None:
            return hit[0]
        if self.writing:
            hit = self.writing.get(entity_id)
            if hit is not None:
                return hit[0]
        return self._data.get(entity_id)

    def mark(self, entity_id: str, state: EntityState, partition: int) -> None:
        """``state`` changed in a processed batch: hold it until the next flush."""
        if self.dirty_since is None:
            self.dirty_since = self.clock()
        self.dirty[entity_id] = (state, partition)

    def due(self) -> str | None:
        """Why the dirty states should be written now (``None``: not yet)."""
        if not self.dirty:
            return None
        if not self.interval:
            return "batch"
        if len(self.dirty) > self.max_dirty:
            return "dirty_limit"
        if self.dirty_since is not None and self.clock() - self.dirty_since >= self.interval:
            return "interval"
        return None

    def take(self) -> dict[str, tuple[EntityState, int]]:
        """The dirty states, to be encoded now and written: from here on they are the write in
        flight (still what :meth:`get` returns, unless changed again, which makes them dirty
        again), and new changes start a new set of dirty states."""
        taken = self.dirty
        self.writing = taken
        self.dirty = {}
        self.dirty_since = None
        return taken

    def written(self, taken: dict[str, tuple[EntityState, int]], epoch: int) -> None:
        """The states ``take`` returned are in the changelog: they become the clean states last
        written. Not if the cache was cleared since (``epoch`` moved on): the objects may hold
        changes of a batch that failed half-way."""
        if epoch != self.epoch:
            return
        if self.writing is taken:
            self.writing = {}
        for eid, (st, _) in taken.items():
            self.put(eid, st)

    def put(self, entity_id: str, state: EntityState) -> None:
        """Remember ``state`` as the one just written for ``entity_id`` (most recent last)."""
        if not self.capacity:
            return
        data = self._data
        data.pop(entity_id, None)
        data[entity_id] = state
        if len(data) > self.capacity + (self.capacity >> 3):
            # Trim in bulk to the newest ``capacity`` (amortised O(1) per put; deleting the
            # oldest one at a time would rescan the dict's deleted slots on every eviction).
            self._data = dict(islice(data.items(), len(data) - self.capacity, None))

    def overlay(self, stored: Iterable[tuple[bytes, bytes | None]]) -> Iterator[EntityState]:
        """Every entity's current state: the dirty ones, those being written, then the table's
        (key, bytes) for the rest."""
        dirty, writing = self.dirty, self.writing
        for st, _ in list(dirty.values()):
            yield st
        for eid, (st, _) in list(writing.items()):
            if eid not in dirty:
                yield st
        for key, raw in stored:
            if raw is not None:
                eid = key.decode()
                if eid not in dirty and eid not in writing:
                    yield decode_state(raw)

    def drop(self, entity_id: str) -> None:
        """Forget ``entity_id``'s state, dirty or not: it is read from the table's bytes again."""
        self.dirty.pop(entity_id, None)
        self.writing.pop(entity_id, None)
        self._data.pop(entity_id, None)

    def check_generation(self, generation: int) -> None:
        """Drop everything (dirty states too) if the consumer generation moved on (a rebalance)."""
        if generation != self.generation:
            self.clear()
            self.generation = generation

    def clear(self) -> None:
        self._data.clear()
        self.dirty = {}
        self.dirty_since = None
        self.writing = {}
        self.epoch += 1
