"""The batch tap's sequencing of input records (streams/batchtap.py): no record is
ever skipped. Unit tests of that rule on a stand-in for Faust's consumer state;
tests/test_reliability_rebalance.py proves it on the real broker."""

from __future__ import annotations

import asyncio
from collections import namedtuple
from typing import Any

from streams.batchtap import BatchTap, _in_sequence

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
