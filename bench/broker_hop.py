"""The broker's share of latency: one hop, and two hops through a relay that does no work.

``bench/latency.py`` compares event -> alert (two broker hops: the input topic to the
worker, the alerts topic to the reader) with the raw consumer's produce -> receive (one
hop). This script measures what the broker alone makes of that comparison, with no
RiskFlow code in the path: at a steady rate (default 2,000 records/s, the latency
benchmark's), a producer (linger 5 ms, as there) writes small records to topic A; a
plain reader reads A (one hop); a *relay*, a separate process like the worker, reads A
and at once sends every record on to topic B (producer linger 0, as the worker's); a
second reader reads B (two hops). Every consumer uses the same fetch wait, the worker's
``RISKFLOW_FETCH_MAX_WAIT`` unless ``--waits`` lists others (in ms).

If the relay's two-hop p99 is already above 1.5 x the one-hop p99, no worker can meet
issue 9's latency target on this broker with both paths tuned alike: the target then
measures the broker's fetch timing, not the pipeline.

    python bench/broker_hop.py [--rate 2000] [--seconds 15] [--waits 50] [--rounds 3]

Headline: ``relay_p99_vs_one_hop`` = median over rounds (at the first fetch wait) of the
relay path's p99 / the one-hop p99.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import struct
import subprocess
import sys
import time
import uuid

if __package__ in (None, ""):
    import _path  # noqa: F401

from aiokafka import AIOKafkaProducer

from bench.common import arrivals, broker, headline, median, percentile, plain_consumer
from riskflow.core.settings import Settings

_STAMP = struct.Struct(">Qd")  # sequence number, send time (time.time())
_PAD = b"x" * 180  # ~200-byte records, as the events


async def _read(bootstrap: str, topic: str, fetch_ms: int, out: dict[int, float], stop: asyncio.Event) -> None:
    async for now, m in arrivals(bootstrap, [topic], fetch_ms, stop):
        seq, _ = _STAMP.unpack_from(m.value)
        out.setdefault(seq, now)


async def _relay(bootstrap: str, src: str, dst: str, fetch_ms: int) -> None:
    """Read ``src`` and send each record on to ``dst`` at once, until stdin closes."""
    c = plain_consumer(bootstrap, [src], fetch_ms)
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await c.start()
    await p.start()
    loop = asyncio.get_running_loop()
    closed = loop.run_in_executor(None, sys.stdin.read)
    print("ready", flush=True)
    try:
        while not closed.done():
            batch = await c.getmany(timeout_ms=100)
            sends = [await p.send(dst, m.value) for msgs in batch.values() for m in msgs]
            if sends:
                await asyncio.gather(*sends)
    finally:
        await c.stop()
        await p.stop()


async def _round(bootstrap: str, rate: int, seconds: float, warmup: float, fetch_ms: int) -> tuple[list, list]:
    tag = uuid.uuid4().hex[:8]
    a, b = f"hop-a-{tag}", f"hop-b-{tag}"
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    # create both topics before anyone reads them (producing to a missing topic creates it)
    await producer.send_and_wait(a, _STAMP.pack(0, 0.0) + _PAD)
    await producer.send_and_wait(b, _STAMP.pack(0, 0.0) + _PAD)
    relay = subprocess.Popen(
        [sys.executable, __file__, "--relay", bootstrap, a, b, str(fetch_ms)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    assert relay.stdout is not None
    if relay.stdout.readline().strip() != "ready":
        raise RuntimeError("relay did not start")
    sent: dict[int, float] = {}
    one: dict[int, float] = {}
    two: dict[int, float] = {}
    stop = asyncio.Event()
    readers = [
        asyncio.create_task(_read(bootstrap, a, fetch_ms, one, stop)),
        asyncio.create_task(_read(bootstrap, b, fetch_ms, two, stop)),
    ]
    try:
        await asyncio.sleep(1.0)  # readers and relay positioned
        tick = 0.01
        per_tick = max(1, round(rate * tick))
        t0 = time.monotonic()
        measured_from = time.time() + warmup
        end_at = measured_from + seconds
        seq = 0
        while time.time() < end_at:
            ahead = t0 + (seq / per_tick) * tick - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
            for _ in range(per_tick):
                seq += 1
                sent[seq] = now = time.time()
                await producer.send(a, _STAMP.pack(seq, now) + _PAD)
        await producer.flush()
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and (len(one) <= seq or len(two) <= seq):
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.gather(*readers, return_exceptions=True)
        await producer.stop()
        relay.communicate(timeout=30)
    measured = [s for s, t in sent.items() if t >= measured_from]
    if not measured:
        raise RuntimeError("nothing measured")
    lost = [s for s in measured if s not in one or s not in two]
    if lost:
        raise RuntimeError(f"{len(lost)} of {len(measured)} records not read on both paths")
    return [one[s] - sent[s] for s in measured], [two[s] - sent[s] for s in measured]


def main(argv: list[str] | None = None) -> float:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--relay":
        _, _, bootstrap, src, dst, fetch_ms = sys.argv
        asyncio.run(_relay(bootstrap, src, dst, int(fetch_ms)))
        return 0.0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=int, default=2000, help="records per second")
    ap.add_argument("--seconds", type=float, default=15.0, help="measured seconds per round")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds of the stream excluded before measuring")
    ap.add_argument(
        "--waits",
        default=str(int(Settings().fetch_max_wait * 1000)),
        help="comma-separated fetch waits in ms (default: the worker's RISKFLOW_FETCH_MAX_WAIT)",
    )
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bootstrap", default=None)
    args = ap.parse_args(argv)
    waits = [int(w) for w in args.waits.split(",")]
    ratios: dict[int, list[float]] = {w: [] for w in waits}
    with broker(args.bootstrap) as bootstrap:
        for r in range(args.rounds):
            for w in waits:
                one, two = asyncio.run(_round(bootstrap, args.rate, args.seconds, args.warmup, w))
                o50, o99, t50, t99 = (percentile(x, q) * 1000 for x in (one, two) for q in (0.5, 0.99))
                ratios[w].append(t99 / o99)
                print(
                    f"round {r + 1}, fetch wait {w} ms: {len(one)} records; one hop p50 {o50:.1f} ms "
                    f"p99 {o99:.1f} ms; relay (two hops) p50 {t50:.1f} ms p99 {t99:.1f} ms; "
                    f"p99 ratio {t99 / o99:.2f}",
                    flush=True,
                )
    for w in waits[1:]:
        print(f"fetch wait {w} ms: median p99 ratio {median(ratios[w]):.2f}")
    value = median(ratios[waits[0]])
    headline("relay_p99_vs_one_hop", value, 2)
    return value


if __name__ == "__main__":
    main()
