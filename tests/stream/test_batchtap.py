"""The batch tap's sequencing of input records (streams/batchtap.py): no record is
ever skipped. Unit tests of that rule on a stand-in for Faust's consumer state;
tests/reliability/test_reliability_rebalance.py proves it on the real broker."""

from __future__ import annotations

import asyncio
from collections import namedtuple
from typing import Any

from streams.batchtap import BatchTap, _flush, _in_sequence, _landed, _run_batch

TP = namedtuple("TP", "topic partition")
Rec = namedtuple("Rec", "offset")
T0 = TP("riskflow.fund-events", 3)


class Consumer:
    """What ``_in_sequence`` reads and calls on Faust's consumer."""

    def __init__(self, committed: int | None) -> None:
        self._committed_offset: dict[Any, int | None] = {T0: committed}
        self.seeks: list[tuple[Any, int]] = []
        self.gaps: list[tuple[Any, int, int]] = []

    def assignment(self) -> set[Any]:
        return {T0}

    async def seek(self, tp: Any, offset: int) -> None:
        self.seeks.append((tp, offset))

    async def _add_gap(self, tp: Any, start: int, end: int) -> None:
        self.gaps.append((tp, start, end))


def sequence(c: Consumer, tap: BatchTap, offsets: range, generation: int = 1) -> list[int]:
    got = asyncio.run(_in_sequence(c, tap, T0, [Rec(o) for o in offsets], generation))
    return [r.offset for r in got]


def tap() -> BatchTap:
    async def handle(records: list[Any]) -> None: ...

    return BatchTap({T0.topic}, handle)


def test_a_batch_continues_where_the_partition_stands() -> None:
    c, t = Consumer(committed=228), tap()
    assert sequence(c, t, range(228, 232)) == [228, 229, 230, 231]  # from the committed offset
    t.next_offset[T0] = (1, 232)
    assert sequence(c, t, range(230, 236)) == [232, 233, 234, 235]  # 230, 231 were processed
    assert c.seeks == [] and c.gaps == []


def test_a_jump_is_read_again_not_committed_past() -> None:
    """The failure of issue 8: after a rebalance the partition was seeked to its
    committed offset 228 and the next fetch began at 240. Faust's rule took it for a
    gap and committed past 232-239, which no worker had processed."""
    c, t = Consumer(committed=228), tap()
    t.next_offset[T0] = (0, 232)  # processed up to 231 in the previous generation
    assert sequence(c, t, range(240, 251), generation=1) == []
    assert c.seeks == [(T0, 228)] and c.gaps == []
    # Read again from 228: the records are there, in order.
    assert sequence(c, t, range(228, 245), generation=1) == list(range(228, 245))
    assert c.gaps == []


def test_a_jump_that_reads_the_same_twice_is_a_real_gap() -> None:
    """Offsets without records (transaction markers, compaction, retention): the second
    read from the expected offset starts at the same place, and then it is believed."""
    c, t = Consumer(committed=10), tap()
    assert sequence(c, t, range(13, 15)) == []
    assert sequence(c, t, range(13, 15)) == [13, 14]
    assert c.seeks == [(T0, 10)] and c.gaps == [(T0, 10, 12)]


def test_nothing_known_takes_the_partition_from_where_the_consumer_starts() -> None:
    c, t = Consumer(committed=None), tap()
    assert sequence(c, t, range(5, 8)) == [5, 6, 7]
    assert c.seeks == [] and c.gaps == []


# Offsets are acknowledged only after the flush that writes the states of their batches.


class Tapped(Consumer):
    """What ``_run_batch`` and ``_flush`` read and change on Faust's consumer."""

    def __init__(self, committed: int | None, generation: int = 1) -> None:
        from collections import defaultdict
        from types import SimpleNamespace

        super().__init__(committed)
        self.app = SimpleNamespace(consumer_generation_id=generation)
        self._unacked_messages: set[Any] = set()
        self._waiting_for_ack = None
        self._read_offset: dict[Any, int] = {}
        self._acked: dict[Any, list[int]] = defaultdict(list)
        self._acked_index: dict[Any, set[int]] = defaultdict(set)
        self._n_acked = 0
        self._commit_every = None


class Flusher:
    def __init__(self) -> None:
        self.reason: str | None = None
        self.flushes: list[str] = []
        self.landed: list[str] = []
        self.discards = 0
        self.gate: asyncio.Event | None = None  # set: a write lands only once it is set

    def due(self) -> str | None:
        return self.reason

    def start(self, reason: str) -> Any:
        self.flushes.append(reason)
        gate = self.gate

        async def write() -> None:
            if gate is not None:
                await gate.wait()
            self.landed.append(reason)

        return write()

    def discard(self) -> None:
        self.discards += 1


def batch(c: Tapped, t: BatchTap, offsets: range, generation: int = 1, fail: BaseException | None = None) -> None:
    recs = [Rec(o) for o in offsets]

    async def handle(records: list[Any]) -> None:
        if fail is not None:
            raise fail

    t.handler = handle

    async def run() -> None:
        await _run_batch(c, t, recs, [(T0, recs)], generation)
        await _landed(c, t)  # a flush behind the batch lands before this event loop closes

    try:
        asyncio.run(run())
    except BaseException as exc:
        assert exc is fail


def flushing_tap() -> tuple[BatchTap, Flusher]:
    f = Flusher()
    t = BatchTap({T0.topic}, tap().handler, f)
    t.tuned = True  # no garbage-collector tuning inside the test process
    return t, f


def test_offsets_wait_for_the_flush_that_writes_their_states() -> None:
    c, (t, f) = Tapped(committed=10), flushing_tap()
    batch(c, t, range(10, 14))
    batch(c, t, range(14, 16))
    # processed (the partition stands after them in this generation) but not acknowledged
    assert t.next_offset[T0] == (1, 16) and c._acked[T0] == [] and not c._unacked_messages
    f.reason = "interval"
    batch(c, t, range(16, 18))
    assert f.flushes == ["interval"] and c._acked[T0] == list(range(10, 18)) and c._n_acked == 8
    assert t.pending == {}


def test_without_a_flusher_every_batch_is_acknowledged_at_once() -> None:
    c, t = Tapped(committed=0), tap()
    t.tuned = True
    batch(c, t, range(0, 3))
    assert c._acked[T0] == [0, 1, 2]


def test_pending_work_is_never_flushed_into_another_generation() -> None:
    """A rebalance came between the batches and the flush: the worker may not own the
    partition any more. Nothing is written or acknowledged; the committed offset rules."""
    c, (t, f) = Tapped(committed=10), flushing_tap()
    batch(c, t, range(10, 14))
    c.app.consumer_generation_id = 2
    f.reason = "interval"
    batch(c, t, range(10, 12), generation=2)  # re-read from the committed offset
    assert f.discards == 1
    assert c._acked[T0] == [10, 11]  # only the new generation's batch, after its own flush


def test_a_failed_batch_drops_the_pending_batches_and_rewinds_to_the_first() -> None:
    c, (t, f) = Tapped(committed=10), flushing_tap()
    batch(c, t, range(10, 14))
    batch(c, t, range(14, 16), fail=RuntimeError("boom"))
    assert f.discards == 1 and f.flushes == [] and c._acked[T0] == []
    assert t.next_offset[T0] == (1, 10) and c.seeks == [(T0, 10)]
    assert not c._unacked_messages


def test_pending_work_of_a_member_the_group_forgot_is_dropped() -> None:
    """Session expired: aiokafka reset the member's generation (-1) before rejoining, and
    another worker may own the partition and have written its states. No late write."""
    from types import SimpleNamespace

    c, (t, f) = Tapped(committed=10), flushing_tap()
    coordinator = SimpleNamespace(generation=1)
    c._thread = SimpleNamespace(_consumer=SimpleNamespace(_coordinator=coordinator))
    batch(c, t, range(10, 14))
    coordinator.generation = -1
    asyncio.run(_flush(c, t, "rebalance"))
    assert f.flushes == [] and f.discards == 1 and c._acked[T0] == [] and t.pending == {}


def test_a_flush_behind_the_batches_acknowledges_its_offsets_when_its_write_lands() -> None:
    """After a batch, the due flush encodes the states and its write goes on while the
    next batches run: their offsets wait for the next flush, the written batches' for
    the write to land. The next flush (or a rebalance's) waits for the write in flight."""
    c, (t, f) = Tapped(committed=10), flushing_tap()

    async def run() -> None:
        f.gate = asyncio.Event()
        handled: list[int] = []

        async def handle(records: list[Any]) -> None:
            handled.extend(r.offset for r in records)

        t.handler = handle
        f.reason = "interval"
        recs = [Rec(o) for o in range(10, 14)]
        await _run_batch(c, t, recs, [(T0, recs)], 1)
        assert f.flushes == ["interval"] and f.landed == [] and c._acked[T0] == []  # in flight
        f.reason = None
        recs = [Rec(o) for o in range(14, 16)]
        await _run_batch(c, t, recs, [(T0, recs)], 1)  # runs while the write is in flight
        assert handled == list(range(10, 16)) and c._acked[T0] == [] and t.pending == {T0: [14, 15]}
        f.gate.set()
        await _landed(c, t)
        assert f.landed == ["interval"] and c._acked[T0] == [10, 11, 12, 13] and t.pending == {T0: [14, 15]}
        # a rebalance: the rest is written and acknowledged before Faust commits
        f.gate = asyncio.Event()
        f.reason = "interval"
        recs = [Rec(o) for o in range(16, 18)]
        await _run_batch(c, t, recs, [(T0, recs)], 1)
        assert t.landing is not None and c._acked[T0] == [10, 11, 12, 13]
        settle = asyncio.ensure_future(_flush(c, t, "rebalance"))
        await asyncio.sleep(0.01)
        assert not settle.done()  # waits for the write in flight
        f.gate.set()
        await settle
        assert c._acked[T0] == list(range(10, 18)) and f.flushes[-1] == "rebalance" and t.pending == {}

    asyncio.run(run())


def test_a_flush_that_lands_in_another_generation_acknowledges_nothing() -> None:
    c, (t, f) = Tapped(committed=10), flushing_tap()

    async def run() -> None:
        f.gate = asyncio.Event()
        f.reason = "interval"
        recs = [Rec(o) for o in range(10, 14)]
        await _run_batch(c, t, recs, [(T0, recs)], 1)
        c.app.consumer_generation_id = 2  # a rebalance began while the states were written
        f.gate.set()
        await _landed(c, t)
        assert f.landed == ["interval"] and c._acked[T0] == []

    asyncio.run(run())


def test_a_cancelled_write_drops_what_came_after_it_and_rewinds() -> None:
    """Offsets are acknowledged in order (Faust commits the first consecutive run of acked
    offsets, wherever it starts): a write that never landed takes the batches after it along."""
    c, (t, f) = Tapped(committed=10), flushing_tap()

    async def run() -> None:
        f.gate = asyncio.Event()  # never set: the write hangs until cancelled
        f.reason = "interval"
        recs = [Rec(o) for o in range(10, 14)]
        await _run_batch(c, t, recs, [(T0, recs)], 1)
        f.reason = None
        recs = [Rec(o) for o in range(14, 16)]
        await _run_batch(c, t, recs, [(T0, recs)], 1)
        assert t.landing is not None
        await asyncio.sleep(0)  # the write has started (and waits for the broker)
        t.landing.cancel()
        await _landed(c, t)
        assert c._acked[T0] == [] and t.pending == {} and f.discards == 1
        assert t.next_offset[T0] == (1, 10) and c.seeks == [(T0, 10)] and t.landing is None

    asyncio.run(run())
