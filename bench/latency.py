"""Latency at a steady rate: event produced → alert on the alerts topic, beside produce → raw receive.

Each round creates a fresh deployment, starts a real ``riskflow worker``, and
produces a simulated history at a steady rate (default 2,000 events/s). In the
same process, in the same run, a raw aiokafka consumer reads the input topics
and an alerts consumer reads the alerts topic; both use the worker's fetch
wait (``RISKFLOW_FETCH_MAX_WAIT``) and the same producer (linger 5 ms).
The history is the simulator's with more failing entities (``ALERTING_MIX``),
so that many events fire alerts. Latency of an alert = its arrival − the send
time of the event that fired it;
of a raw event = its arrival − its send time. Start-up is not part of it: the
first second's events are produced first, and the steady stream starts once
the worker has handled them (group joined, table recovered); measuring starts
``--warmup`` seconds into the steady stream. (Until 2026-11-28 the stream
started with the worker, so a worker that was slower to start than the stream
carried its start-up backlog into the measurement: p99s of minutes.) The headline is the median over rounds of
alert p99 ÷ raw p99. The alert path has one more hop (the alerts topic) than
the raw path; that is part of what an officer waits for. Each round also prints
the alert path by hop (event sent -> alert sent by the worker, from the alert
record's Kafka timestamp; alert sent -> received).

    python bench/latency.py [--rate 2000] [--seconds 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import time

if __package__ in (None, ""):
    import _path  # noqa: F401

import orjson
from aiokafka import AIOKafkaProducer

from bench.common import (
    Workers,
    arrivals,
    broker,
    headline,
    history,
    median,
    percentile,
    settings_of,
    stack_settings,
)
from riskflow.core.kafka import ensure_topics
from riskflow.replay import route

ALERTING_MIX = {"ponzi_fund": 0.2, "illegal_fundraising": 0.1}


async def _reader(
    bootstrap: str,
    topics: list[str],
    fetch_ms: int,
    out: dict[str, float],
    stop: asyncio.Event,
    created: dict[str, float] | None = None,
) -> None:
    """Arrival time of each event id read (first copy); ``created``: the record's Kafka
    timestamp too (CreateTime, set by its producer: for an alert, when the worker sent it)."""
    loads = orjson.loads
    async for now, m in arrivals(bootstrap, topics, fetch_ms, stop):
        eid = loads(m.value).get("event_id")
        if eid is not None and eid not in out:
            out[eid] = now
            if created is not None:
                created[eid] = m.timestamp / 1000.0


async def _round(
    bootstrap: str,
    lines: list[bytes],
    rate: int,
    seconds: float,
    warmup: float,
    drain_limit: float,
    start_limit: float,
) -> tuple:
    env = stack_settings(bootstrap)
    s = settings_of(env)
    fetch_ms = int(s.fetch_max_wait * 1000)
    await ensure_topics(s)
    records = list(route(lines, s))
    ids = [orjson.loads(r.value)["event_id"] for r in records]
    sent: dict[str, float] = {}
    raw_seen: dict[str, float] = {}
    alert_seen: dict[str, float] = {}
    alert_created: dict[str, float] = {}
    stop = asyncio.Event()
    inputs = [s.topic_institution_events, s.topic_fund_events]
    readers = [
        asyncio.create_task(_reader(bootstrap, inputs, fetch_ms, raw_seen, stop)),
        asyncio.create_task(_reader(bootstrap, [s.topic_alerts], fetch_ms, alert_seen, stop, alert_created)),
    ]
    workers = Workers(env).start(1)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    try:
        # Start-up first: the first second's events, and wait until the worker has handled
        # them (group joined, table recovered, first batches done), so that the steady
        # stream below meets a running worker instead of a start-up backlog.
        prime = min(rate, len(records) // 10)
        t_start = time.monotonic()
        for rec, eid in zip(records[:prime], ids[:prime], strict=True):
            sent[eid] = time.time()
            await producer.send(rec.topic, rec.value, key=rec.key)
        await producer.flush()
        while (workers.total() or 0) < prime:
            if time.monotonic() - t_start > start_limit:
                raise RuntimeError(f"worker not up after {start_limit:.0f}s:\n{workers.procs[0].tail()}")
            await asyncio.sleep(0.5)
        # The steady stream: measured from `warmup` s after it starts, for `seconds`.
        tick = 0.01
        per_tick = max(1, round(rate * tick))
        t0 = time.monotonic()
        measured_from = time.time() + warmup
        end_at = measured_from + seconds
        for i in range(prime, len(records), per_tick):
            ahead = t0 + ((i - prime) / per_tick) * tick - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
            if time.time() >= end_at:
                break
            for rec, eid in zip(records[i : i + per_tick], ids[i : i + per_tick], strict=True):
                sent[eid] = time.time()
                await producer.send(rec.topic, rec.value, key=rec.key)
            if workers.procs[0].proc.poll() is not None:
                raise RuntimeError(f"worker exited:\n{workers.procs[0].tail()}")
        await producer.flush()
        # Drain: until the worker has handled every event sent (a slow worker
        # finishes its backlog), then until no alert arrived for 3 s.
        while time.monotonic() - t0 < drain_limit and (workers.total() or 0) < len(sent):
            await asyncio.sleep(0.5)
        seen, quiet_since = len(alert_seen), time.monotonic()
        while time.monotonic() - quiet_since < 3.0 and time.monotonic() - t0 < drain_limit:
            await asyncio.sleep(0.2)
            if len(alert_seen) != seen:
                seen, quiet_since = len(alert_seen), time.monotonic()
    finally:
        stop.set()
        await asyncio.gather(*readers, return_exceptions=True)
        await producer.stop()
        workers.stop()
    measured = {e for e, t in sent.items() if t >= measured_from}
    raw = [raw_seen[e] - sent[e] for e in measured if e in raw_seen]
    alerts = [alert_seen[e] - sent[e] for e in measured if e in alert_seen]
    # The alert path in its two hops: event sent -> alert sent by the worker (the alert
    # record's CreateTime; same machine, same clock), and alert sent -> alert received.
    hops = (
        [alert_created[e] - sent[e] for e in measured if e in alert_seen],
        [alert_seen[e] - alert_created[e] for e in measured if e in alert_seen],
    )
    return raw, alerts, len(measured), hops


def main(argv: list[str] | None = None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=int, default=2000, help="events per second")
    ap.add_argument("--seconds", type=float, default=20.0, help="measured seconds per round")
    ap.add_argument("--warmup", type=float, default=10.0, help="seconds of the steady stream excluded before measuring")
    ap.add_argument("--start-limit", type=float, default=60.0, help="longest the worker may take to start, s")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bootstrap", default=None)
    args = ap.parse_args(argv)

    need = int(args.rate * (args.seconds + args.warmup + args.start_limit)) + 1
    # A history rich in failing entities, without its quiet start (scenarios begin
    # later), so that a good share of the events fire alerts whose latency we measure.
    full = history(int(need / 0.6) + 1, mix=ALERTING_MIX, intensity=2.0)
    lines = full[len(full) - need :]
    ratios = []
    with broker(args.bootstrap) as bootstrap:
        for r in range(args.rounds):
            raw, alerts, n, (to_worker, to_reader) = asyncio.run(
                _round(
                    bootstrap,
                    lines,
                    args.rate,
                    args.seconds,
                    args.warmup,
                    drain_limit=600.0,
                    start_limit=args.start_limit,
                )
            )
            if not raw or not alerts:
                raise SystemExit(f"round {r + 1}: no measurement (raw {len(raw)}, alerts {len(alerts)} of {n})")
            r50, r99 = percentile(raw, 0.5), percentile(raw, 0.99)
            a50, a99 = percentile(alerts, 0.5), percentile(alerts, 0.99)
            ratios.append(a99 / r99)
            print(
                f"round {r + 1}: {n} events measured; raw p50 {r50 * 1000:.0f} ms p99 {r99 * 1000:.0f} ms "
                f"({len(raw)} seen); event->alert p50 {a50 * 1000:.0f} ms p99 {a99 * 1000:.0f} ms "
                f"({len(alerts)} alerts); p99 ratio {a99 / r99:.2f}",
                flush=True,
            )
            print(
                f"  alert path by hop: event sent -> alert sent p50 {percentile(to_worker, 0.5) * 1000:.0f} ms "
                f"p99 {percentile(to_worker, 0.99) * 1000:.0f} ms; alert sent -> received "
                f"p50 {percentile(to_reader, 0.5) * 1000:.0f} ms p99 {percentile(to_reader, 0.99) * 1000:.0f} ms",
                flush=True,
            )
    value = median(ratios)
    headline("latency_p99_vs_raw", value, 2)
    return value


if __name__ == "__main__":
    main()
