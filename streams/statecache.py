"""A bounded in-process cache of decoded entity states, in front of the table's msgpack bytes.

The table (``streams/tables.py``) stores each entity's state as msgpack bytes
and stays the source of truth; without this cache the worker decodes an
entity's bytes at its first event of every batch. The cache keeps the
:class:`~detectors.engine.EntityState` objects the worker itself last wrote,
so a busy entity is decoded once, not once per batch.

It is only ever a copy of what the worker wrote to the table, and is dropped
whole whenever that may no longer hold:

- the consumer generation changed (a rebalance: partitions were revoked or
  assigned, another worker may have written the states of an entity since),
- the table finished a recovery (its bytes were rewritten from the changelog),
- a batch failed or was cancelled half-way (the pipeline mutates states in
  place, so the cached objects may hold events whose offsets were never
  acknowledged and that will be read again).

Bounded: at most ``capacity`` entries (trimmed back to it in bulk once it is
an eighth over); the least recently written go first.
A decoded state is ~5 KB in memory (against ~0.9 KB of msgpack), so 10,000
entries cost ~50 MB. ``capacity`` 0 turns the cache off.

>>> from detectors.engine import EntityState
>>> c = StateCache(8)
>>> for i in range(10):
...     c.put(f"e{i}", EntityState(entity_id=f"e{i}"))
>>> c.get("e0") is None, c.get("e9").entity_id, len(c)
(True, 'e9', 8)
>>> c.check_generation(1); len(c)
0
"""

from __future__ import annotations

from itertools import islice

from detectors.engine import EntityState


class StateCache:
    """Entity id -> the decoded state last written for it (see the module docstring)."""

    __slots__ = ("_data", "capacity", "generation")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.generation: int | None = None
        self._data: dict[str, EntityState] = {}

    def __len__(self) -> int:
        return len(self._data)

    def get(self, entity_id: str) -> EntityState | None:
        return self._data.get(entity_id)

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

    def check_generation(self, generation: int) -> None:
        """Drop everything if the consumer generation moved on (a rebalance happened)."""
        if generation != self.generation:
            self._data.clear()
            self.generation = generation

    def clear(self) -> None:
        self._data.clear()
