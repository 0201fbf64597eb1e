"""Pipeline throughput: the full worker ÷ a raw aiokafka + orjson consumer, same topic, same run.

One simulated history is written once to the input topics of an isolated
deployment on the embedded broker. Each round then reads it twice, side by
side: (a) a raw ``getmany`` + ``orjson.loads`` consumer, (b) a real
``riskflow worker`` process with a fresh consumer group and empty state
(parse, dead-letter check, every detector of ``detectors.factory.build_processor``,
alert emission, state written to the changelog), whose progress is read from
its ``/metrics`` before and after the measured span, never inside it (a scrape
renders every series on the worker's CPU: ~5 % of it at one a second); the
span ends when the worker's CPU goes idle (``Workers.follow_outside``). The
headline is the median of the per-round ratios. Each round also runs the same
processor offline on the same events (no Kafka, one core), which shows how much
of the gap to the raw consumer is detector work, and the worker's CPU per event
(user + system, all its threads, over the same span as its rate): for an A/B of
the worker, a figure that the load of a shared machine moves less than the rate.

    python bench/pipeline.py [--events 200000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import uuid

if __package__ in (None, ""):
    import _path  # noqa: F401

from bench.common import (
    Workers,
    broker,
    headline,
    history,
    input_topics,
    load_topics,
    median,
    raw_consume,
    stack_settings,
)
from bench.processor import run_offline


def main(argv: list[str] | None = None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bootstrap", default=None, help="use this cluster instead of the embedded broker")
    ap.add_argument("--timeout", type=float, default=900.0, help="longest a worker may take per round, s")
    args = ap.parse_args(argv)

    lines = history(args.events)
    with broker(args.bootstrap) as bootstrap:
        env = stack_settings(bootstrap)
        n = load_topics(env, lines)
        print(f"loaded {n} events on {input_topics(env)}", flush=True)
        ratios, raws, pipes, offline, cpus = [], [], [], [], []
        for r in range(args.rounds):
            raw = asyncio.run(raw_consume(bootstrap, input_topics(env), n))
            secs, _ = run_offline(lines, 1000)
            offline.append(len(lines) / secs)
            run_env = dict(env, RISKFLOW_APP_ID=f"riskflow-pipe-{uuid.uuid4().hex[:8]}")
            with Workers(run_env).start(1) as w:
                pipe = w.follow_outside(n, timeout=args.timeout)
            ratio = pipe.per_s / raw.per_s
            ratios.append(ratio)
            raws.append(raw.per_s)
            pipes.append(pipe.per_s)
            cpus.append(pipe.cpu_us_per_event)
            print(
                f"round {r + 1}: raw {raw.per_s:,.0f} ev/s ({raw.count} in {raw.seconds:.2f}s)  "
                f"worker {pipe.per_s:,.0f} ev/s ({pipe.count} in {pipe.seconds:.2f}s, "
                f"CPU {pipe.cpu_us_per_event:.1f} µs/event)  ratio {ratio:.3f}  "
                f"(same processor offline, no Kafka: {offline[-1]:,.0f} ev/s)",
                flush=True,
            )
    print(
        f"median: raw {median(raws):,.0f} ev/s, worker {median(pipes):,.0f} ev/s, "
        f"offline processor {median(offline):,.0f} ev/s (worker / offline {median(pipes) / median(offline):.2f}); "
        f"worker CPU {median(cpus):.1f} µs/event",
        flush=True,
    )
    value = median(ratios)
    headline("pipeline_vs_raw_ratio", value)
    return value


if __name__ == "__main__":
    main()
