"""Latency at a steady rate: event produced → alert received, beside a relay that does no work.

Each round measures two paths on the same broker, back to back (their order alternating
from round to round), at the same rate (default 2,000 events/s), with the same fetch wait
(the worker's ``RISKFLOW_FETCH_MAX_WAIT``) for every consumer and the same producer of the
measured stream (linger 5 ms):

* *the worker*: a fresh deployment, a real ``riskflow worker``, and a simulated history
  produced at the rate; an alerts consumer reads the alerts topic (two broker hops: the
  input topic to the worker, the alerts topic to the reader), and a raw aiokafka consumer
  reads the input topics (one hop). The history is the simulator's with more failing
  entities (``ALERTING_MIX``), so that many events fire alerts. Latency of an alert = its
  arrival − the send time of the event that fired it; of a raw event = its arrival − its
  send time. Start-up is not part of it: the first second's events are produced first,
  and the steady stream starts once the worker has handled them (group joined, table
  recovered); measuring starts ``--warmup`` seconds into the steady stream.
* *the relay* of ``bench/broker_hop.py``: a separate process that reads each record and
  sends it on at once with a producer set as the worker's (linger 0, acks all); two hops,
  no work. Its p99 is the floor the broker sets for any two-hop path.

Headline: ``latency_p99_vs_relay`` = the median over rounds of alert p99 ÷ relay p99; the
line before it, ``latency_p99_vs_raw``, the median of alert p99 ÷ raw p99 (the ratio of
issue 9, which includes the broker's second hop). Each round also prints both paths by
hop: event sent → alert sent by the worker (the alert record's Kafka CreateTime) → alert
received, and record sent → sent on by the relay → received; and the worker's own account of
the measured span from its ``/metrics``, scraped just before and just after it (batches,
their wall time in the pipeline and delivering, state flushes, produced → decided).

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

from bench.broker_hop import SOURCE_LINGER_MS, relay_round
from bench.common import (
    Workers,
    arrivals,
    broker,
    headline,
    history,
    median,
    percentile,
    scrape,
    settings_of,
    stack_settings,
)
from riskflow.core.kafka import ensure_topics
from riskflow.core.settings import Settings
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
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=SOURCE_LINGER_MS)
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
        port = workers.procs[0].metrics_port
        seen_at: list[dict[str, float]] = []  # the worker's metrics just before and just after the span
        for i in range(prime, len(records), per_tick):
            ahead = t0 + ((i - prime) / per_tick) * tick - time.monotonic()
            if ahead > 0:
                await asyncio.sleep(ahead)
            if not seen_at and time.time() >= measured_from - 0.5:
                seen_at.append(await asyncio.to_thread(scrape, port))
            if time.time() >= end_at:
                seen_at.append(await asyncio.to_thread(scrape, port))
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
    return raw, alerts, len(measured), hops, _inside(seen_at)


def _inside(seen_at: list[dict[str, float]]) -> str:
    """The worker's own account of the measured span (its /metrics, scraped just outside it)."""
    if len(seen_at) != 2 or not all(seen_at):
        return "the worker's metrics: not read"
    d = {k: seen_at[1].get(k, 0.0) - seen_at[0].get(k, 0.0) for k in seen_at[1]}
    batches = d.get("riskflow_batch_processing_seconds_count", 0.0)
    decided = d.get("riskflow_processing_latency_seconds_count", 0.0)
    flushes = d.get("riskflow_state_flushes_total", 0.0)

    def per(key: str, n: float) -> float:
        return 1000 * d.get(key, 0.0) / n if n else float("nan")

    return (
        f"the worker over the span: {batches:.0f} batches of {decided / batches if batches else 0:.0f} events, "
        f"{per('riskflow_batch_processing_seconds_sum', batches):.1f} ms each "
        f"({per('riskflow_detector_evaluation_seconds_sum', batches):.1f} ms in the pipeline, the rest delivering); "
        f"{flushes:.0f} state flushes of {d.get('riskflow_states_written_total', 0.0) / flushes if flushes else 0:.0f} "
        f"states; produced -> decided mean {per('riskflow_processing_latency_seconds_sum', decided):.0f} ms"
    )


def _ms(xs: list[float], q: float) -> str:
    return f"{percentile(xs, q) * 1000:.0f}"


def _worker_path(args: argparse.Namespace, bootstrap: str, lines: list[bytes], r: int) -> tuple[float, float]:
    """One round of the worker path: (alert p99, raw p99), s; prints it by hop."""
    raw, alerts, n, (to_worker, to_reader), inside = asyncio.run(
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
    a99, r99 = percentile(alerts, 0.99), percentile(raw, 0.99)
    print(
        f"round {r + 1}, worker: {n} events measured; raw p50 {_ms(raw, 0.5)} ms p99 {_ms(raw, 0.99)} ms "
        f"({len(raw)} seen); event->alert p50 {_ms(alerts, 0.5)} ms p99 {_ms(alerts, 0.99)} ms "
        f"({len(alerts)} alerts); p99 vs raw {a99 / r99:.2f}",
        flush=True,
    )
    print(
        f"  by hop: event sent -> alert sent p50 {_ms(to_worker, 0.5)} ms p99 {_ms(to_worker, 0.99)} ms; "
        f"alert sent -> received p50 {_ms(to_reader, 0.5)} ms p99 {_ms(to_reader, 0.99)} ms",
        flush=True,
    )
    print(f"  {inside}", flush=True)
    return a99, r99


def _relay_path(args: argparse.Namespace, bootstrap: str, fetch_ms: int, r: int) -> float:
    """One round of the relay path: its two-hop p99, s; prints it by hop."""
    hops = asyncio.run(relay_round(bootstrap, args.rate, args.seconds, args.warmup, fetch_ms))
    print(
        f"round {r + 1}, relay: {len(hops.two)} records; one hop p50 {_ms(hops.one, 0.5)} ms "
        f"p99 {_ms(hops.one, 0.99)} ms; two hops p50 {_ms(hops.two, 0.5)} ms p99 {_ms(hops.two, 0.99)} ms",
        flush=True,
    )
    print(
        f"  by hop: record sent -> relay sent p50 {_ms(hops.to_relay, 0.5)} ms p99 {_ms(hops.to_relay, 0.99)} ms; "
        f"relay sent -> received p50 {_ms(hops.from_relay, 0.5)} ms p99 {_ms(hops.from_relay, 0.99)} ms",
        flush=True,
    )
    return percentile(hops.two, 0.99)


def main(argv: list[str] | None = None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=int, default=2000, help="events per second (both paths)")
    ap.add_argument("--seconds", type=float, default=20.0, help="measured seconds per round and path")
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
    fetch_ms = int(Settings().fetch_max_wait * 1000)  # the worker's, as its env gives it
    vs_relay, vs_raw = [], []
    with broker(args.bootstrap) as bootstrap:
        for r in range(args.rounds):
            # alternating order, so that a drift of the shared machine's load favours neither path
            if r % 2:
                relay99 = _relay_path(args, bootstrap, fetch_ms, r)
                a99, r99 = _worker_path(args, bootstrap, lines, r)
            else:
                a99, r99 = _worker_path(args, bootstrap, lines, r)
                relay99 = _relay_path(args, bootstrap, fetch_ms, r)
            vs_relay.append(a99 / relay99)
            vs_raw.append(a99 / r99)
            print(f"round {r + 1}: alert p99 vs relay p99 {a99 / relay99:.2f}; vs raw p99 {a99 / r99:.2f}", flush=True)
    headline("latency_p99_vs_raw", median(vs_raw), 2)
    value = median(vs_relay)
    headline("latency_p99_vs_relay", value, 2)
    return value


if __name__ == "__main__":
    main()
