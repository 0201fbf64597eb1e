"""The in-process entity states (streams/statecache.py): dirty states are the truth
for the worker until a flush, the flush policy (every batch, interval, dirty limit),
and what is dropped when. The stream-level claims are in tests/reliability/test_reliability_flush.py."""

from __future__ import annotations

from detectors.engine import EntityState, encode_state
from streams.statecache import StateCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def st(eid: str, events: int = 0) -> EntityState:
    return EntityState(entity_id=eid, events=events)


def flush(c: StateCache) -> list[str]:
    """A flush as the worker makes it, the write landing at once: the ids written."""
    taken = c.take()
    c.written(taken, c.epoch)
    return sorted(taken)


def test_interval_zero_flushes_after_every_batch_that_changed_something() -> None:
    c = StateCache(8)
    assert c.due() is None  # nothing dirty: nothing to write
    c.mark("a", st("a"), 1)
    assert c.due() == "batch"


def test_a_flush_is_due_interval_seconds_after_the_first_state_became_dirty() -> None:
    clock = Clock()
    c = StateCache(8, interval=1.0, max_dirty=100, clock=clock)
    c.mark("a", st("a"), 0)
    clock.now += 0.6
    c.mark("b", st("b"), 1)  # a later change does not move the deadline
    assert c.due() is None
    clock.now += 0.4
    assert c.due() == "interval"
    assert flush(c) == ["a", "b"]
    assert c.due() is None and not c.dirty
    clock.now += 5.0  # idle for long: the next change still waits a whole interval
    c.mark("a", st("a", 2), 0)
    assert c.due() is None


def test_more_dirty_states_than_the_bound_flush_at_once() -> None:
    c = StateCache(8, interval=60.0, max_dirty=3, clock=Clock())
    for i in range(3):
        c.mark(f"e{i}", st(f"e{i}"), 0)
    assert c.due() is None
    c.mark("e3", st("e3"), 0)
    assert c.due() == "dirty_limit"


def test_dirty_states_are_the_truth_and_are_not_evicted() -> None:
    c = StateCache(2, interval=60.0, clock=Clock())
    c.put("a", st("a", 1))
    c.mark("a", st("a", 2), 0)
    for i in range(10):  # the clean part is bounded; dirty states stay whatever the capacity
        c.mark(f"e{i}", st(f"e{i}"), 0)
    assert c.get("a").events == 2 and len(c.dirty) == 11
    flush(c)
    assert c.get("a") is None or c.get("a").events == 2  # clean again, bounded to the newest
    assert len(c) <= 2 + (2 >> 3) and not c.dirty


def test_capacity_zero_still_holds_dirty_states() -> None:
    c = StateCache(0, interval=60.0, clock=Clock())
    c.mark("a", st("a", 3), 0)
    assert c.get("a").events == 3
    flush(c)
    assert c.get("a") is None


def test_a_rebalance_or_a_failed_batch_drops_dirty_states_unwritten() -> None:
    c = StateCache(8, interval=60.0, clock=Clock())
    c.check_generation(1)
    c.mark("a", st("a"), 0)
    c.check_generation(1)
    assert c.get("a") is not None
    c.check_generation(2)
    assert c.get("a") is None and c.due() is None and c.dirty_since is None
    c.mark("b", st("b"), 0)
    c.clear()
    assert c.get("b") is None and c.due() is None


def test_overlay_gives_dirty_states_over_the_tables_bytes() -> None:
    c = StateCache(8, interval=60.0, clock=Clock())
    stored = [(b"a", encode_state(st("a", 1))), (b"b", encode_state(st("b", 1))), (b"c", None)]
    c.mark("a", st("a", 5), 0)
    c.mark("d", st("d", 1), 0)
    got = {s.entity_id: s.events for s in c.overlay(stored)}
    assert got == {"a": 5, "b": 1, "d": 1}


def test_states_being_written_stay_the_truth_until_they_land() -> None:
    """A flush behind the batches (streams/batchtap.py): taken states are encoded and written
    while the next batches run; reads see them (or their newer dirty copy) until they land,
    and a clear() in between keeps a late landing from filling the clean cache."""
    c = StateCache(8, interval=60.0, clock=Clock())
    a, b = st("a", 1), st("b", 1)
    c.mark("a", a, 0)
    c.mark("b", b, 1)
    epoch = c.epoch
    taken = c.take()
    assert set(taken) == {"a", "b"} and not c.dirty and c.due() is None
    assert c.get("a") is a and c.get("b") is b  # in flight: still the truth
    c.mark("a", a, 0)  # a later batch changed it again: dirty again, for the next flush
    stored = [(b"a", encode_state(st("a", 0))), (b"b", encode_state(st("b", 0))), (b"c", encode_state(st("c", 7)))]
    assert {s.entity_id: s.events for s in c.overlay(stored)} == {"a": 1, "b": 1, "c": 7}
    c.written(taken, epoch)
    assert not c.writing and c.get("b") is b and set(c.dirty) == {"a"}
    # a batch failed while a write was in flight: the landing leaves the emptied cache alone
    epoch = c.epoch
    taken = c.take()
    c.clear()
    c.written(taken, epoch)
    assert c.get("a") is None and c.get("b") is None and len(c) == 0
