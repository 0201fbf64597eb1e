"""Producing a flush: one aiokafka ``send`` per record beside the worker's batched sends.

A state flush (``streams/flusher.py``) writes one changelog record per changed
entity, about once a second: thousands of ~1 KB records. This times, against
the embedded broker, in one process, alternating: (a) one ``send`` per record
and a wait for all their futures, as the worker did before; (b) the worker's
:func:`streams.emitter.batched`: record batches filled per partition and
submitted with ``send_batch``, one future per batch. CPU time of this process
only (``time.process_time``; the broker is another process), per record.

    python bench/produce.py [--records 7400] [--size 900] [--partitions 4] [--rounds 5]

Headline: ``batched_vs_send_cpu_ratio`` = median over rounds of (b) ÷ (a), CPU per record.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from types import SimpleNamespace

if __package__ in (None, ""):
    import _path  # noqa: F401

from aiokafka import AIOKafkaProducer

from bench.common import broker, headline, median
from streams.emitter import batched, deliver


async def _rounds(bootstrap: str, n: int, size: int, partitions: int, rounds: int) -> list[float]:
    # As the worker's producer: linger 0, 256 KB batches (streams/app.py).
    aio = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, max_batch_size=256 * 1024)
    await aio.start()
    topic = f"produce-{uuid.uuid4().hex[:8]}"
    value = os.urandom(size)
    records = [(topic, f"PF-{i:07d}".encode(), value, i % partitions) for i in range(n)]
    faustlike = SimpleNamespace(_ensure_producer=lambda: aio)
    ratios = []
    try:
        for p in range(partitions):  # the topic and its partitions exist before timing
            await aio.send_and_wait(topic, b"x", partition=p)
        for r in range(rounds):
            c0, t0 = time.process_time(), time.perf_counter()
            futures = [await aio.send(t, v, key=k, partition=p) for t, k, v, p in records]
            await asyncio.gather(*futures)
            c1, t1 = time.process_time(), time.perf_counter()
            await deliver(batched(faustlike, records), "records")
            c2, t2 = time.process_time(), time.perf_counter()
            one, many = (c1 - c0) / n, (c2 - c1) / n
            ratios.append(many / one)
            print(
                f"round {r + 1}: {n} records of {size} B on {partitions} partitions; one send each: "
                f"CPU {one * 1e6:.2f} µs/record, wall {1e3 * (t1 - t0):.0f} ms; batched: "
                f"CPU {many * 1e6:.2f} µs/record, wall {1e3 * (t2 - t1):.0f} ms; ratio {many / one:.2f}",
                flush=True,
            )
    finally:
        await aio.stop()
    return ratios


def main(argv: list[str] | None = None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=7400, help="records per flush (the bench history's entities)")
    ap.add_argument("--size", type=int, default=900, help="bytes per record (a state is ~0.7-1 KB)")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--bootstrap", default=None)
    args = ap.parse_args(argv)
    with broker(args.bootstrap) as bootstrap:
        ratios = asyncio.run(_rounds(bootstrap, args.records, args.size, args.partitions, args.rounds))
    value = median(ratios)
    headline("batched_vs_send_cpu_ratio", value, 2)
    return value


if __name__ == "__main__":
    main()
