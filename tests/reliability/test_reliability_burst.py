"""A burst far above the steady rate does not grow the worker's memory without bound.

The worker reads through bounded buffers: a fetch brings at most
``RISKFLOW_MAX_FETCH_BYTES`` per partition and a batch at most
``RISKFLOW_BATCH_SIZE`` records; the next fetch waits until the batch is
handled (streams/batchtap.py), and a batch's outputs are awaited before the
next one (streams/handler.py). A backlog therefore stays in the broker, not in
the worker. The test measures, without any timing, the worker's peak resident
memory (``VmHWM``) after a burst of N events and after 2N more of the same
entities: the growth must stay under a bound derived from those settings,
far below what holding the second burst in memory would take.
"""

from __future__ import annotations

import datetime as dt
import signal
from pathlib import Path

from riskflow.core.schema import encode_event
from riskflow.replay import route
from tests.support.kafka_fixtures import Stack
from tests.support.reliability_tools import produce, wait_committed

N = 2_500
ENTITIES = 40
FETCH = 64 * 1024
BATCH = 500
T0 = dt.datetime(2025, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=8)))


def burst(start: int, n: int) -> list[bytes]:
    """``n`` quiet grid reports (8 kB each: bytes, not event count, fill buffers) spread over
    ENTITIES entities, one a minute of event time."""
    return [
        encode_event(
            {
                "schema": "riskflow.event/v1",
                "event_id": f"burst-{i}",
                "event_type": "grid.report",
                "entity_id": f"INST-BURST-{i % ENTITIES}",
                "entity_kind": "microfinance",
                "region": "330100",
                "event_time": (T0 + dt.timedelta(minutes=i)).isoformat(),
                "source": "grid",
                "payload": {"observation": "normal", "note": "x" * 8000},
            }
        )
        for i in range(start, start + n)
    ]


def peak_rss(pid: int) -> int:
    """The process's peak resident set size, bytes (Linux ``VmHWM``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_a_burst_three_times_larger_does_not_grow_peak_memory_beyond_the_buffers(stack: Stack) -> None:
    # 4 partitions: the bound below grows with them, and a burst dwarfing it at the default 12
    # would only make the test slower; what is tested is the bound per partition.
    stack.env.update(RISKFLOW_MAX_FETCH_BYTES=str(FETCH), RISKFLOW_BATCH_SIZE=str(BATCH), RISKFLOW_PARTITIONS="4")
    s = stack.settings
    # Each burst is in the broker in full before the worker reads it: the first before the
    # worker starts, the second while it is stopped (SIGSTOP), so the whole backlog is there.
    first = [(r.topic, r.key, r.value) for r in route(burst(0, N), s)]
    ends = produce(stack.bootstrap, first)
    w = stack.start_worker()
    wait_committed(stack.bootstrap, s.app_id, ends, 240)
    after_n = peak_rss(w.proc.pid)
    more = burst(N, 2 * N)
    w.proc.send_signal(signal.SIGSTOP)
    try:
        ends = produce(stack.bootstrap, [(r.topic, r.key, r.value) for r in route(more, s)])
    finally:
        w.proc.send_signal(signal.SIGCONT)
    wait_committed(stack.bootstrap, s.app_id, ends, 300)
    after_3n = peak_rss(w.proc.pid)
    assert w.proc.poll() is None

    # What the worker may hold for reading: a fetch per input partition (two input topics
    # and the links topic) and the batch taken from it; plus the state of ENTITIES entities
    # and allocator slack, a fixed 16 MiB whatever the burst.
    partitions = 3 * s.partitions
    bound = 4 * partitions * FETCH + 16 * 1024 * 1024
    burst_bytes = sum(len(x) for x in more)
    growth = after_3n - after_n
    mib = 2**20
    report = (
        f"peak RSS after N={N}: {after_n / mib:.1f} MiB; after 3N: {after_3n / mib:.1f} MiB; growth "
        f"{growth / mib:.1f} MiB; bound {bound / mib:.1f} MiB; second burst {burst_bytes / mib:.1f} MiB raw"
    )
    print(report)
    assert burst_bytes > 2 * bound, "the burst must dwarf the bound for the test to mean anything: " + report
    assert growth < bound, report
