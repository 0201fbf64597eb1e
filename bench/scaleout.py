"""Scale-out: events/s of ``riskflow worker --processes 2`` ÷ one worker on the same topic, same run.

One simulated history (>= 500k events by default: runs of ~5 s said nothing; generated
once and cached under /tmp, ``bench/common.py`` ``history``) is loaded once. Each round
runs one ``riskflow worker`` over it with a fresh consumer group and empty state, and
``riskflow worker --processes 2`` (the product's path: a supervisor and two workers of
one group, splitting the input partitions) in another fresh group; the order of the two
alternates from round to round, so that neither always runs on a warmer or quieter
machine. Progress is counted from the workers' ``/metrics`` outside the measured span
(``Workers.follow_outside``); CPU µs/event (every process of the side, the supervisor
included, from ``/proc``) is printed beside events/s. On a 2-core machine shared with the
broker and the measuring process, 2.0 is out of reach; the figure says how much of a
second core a second process turns into throughput.

    python bench/scaleout.py [--events 500000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import uuid

if __package__ in (None, ""):
    import _path  # noqa: F401

from bench.common import Rate, Workers, broker, headline, history, input_topics, load_topics, median, stack_settings


def run_side(env: dict[str, str], processes: int, expect: int, timeout: float) -> Rate:
    """One side of a round: ``riskflow worker --processes <processes>`` in a fresh group, over the whole topic."""
    run_env = dict(env, RISKFLOW_APP_ID=f"riskflow-scale{processes}-{uuid.uuid4().hex[:8]}")
    with Workers(run_env).start(1, processes=processes) as w:
        rate = w.follow_outside(expect, timeout=timeout)
        w.total()  # raises, with the log's tail, if a process died on the way
    return rate


def main(argv: list[str] | None = None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=500_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bootstrap", default=None)
    ap.add_argument("--timeout", type=float, default=1800.0)
    args = ap.parse_args(argv)

    lines = history(args.events)
    ratios: list[float] = []
    cpu: dict[int, list[float]] = {1: [], 2: []}
    with broker(args.bootstrap) as bootstrap:
        env = stack_settings(bootstrap)
        n = load_topics(env, lines)
        print(f"loaded {n} events on {input_topics(env)}", flush=True)
        for r in range(args.rounds):
            order = (1, 2) if r % 2 == 0 else (2, 1)
            rates = {p: run_side(env, p, n, args.timeout) for p in order}
            one, two = rates[1], rates[2]
            ratio = two.per_s / one.per_s
            ratios.append(ratio)
            for p in (1, 2):
                cpu[p].append(rates[p].cpu_us_per_event)
            print(
                f"round {r + 1} (order {order[0]}, {order[1]}): "
                f"1 process {one.per_s:,.0f} ev/s, {one.cpu_us_per_event:.1f} CPU µs/event "
                f"({one.count} in {one.seconds:.2f}s); "
                f"2 processes {two.per_s:,.0f} ev/s, {two.cpu_us_per_event:.1f} CPU µs/event "
                f"({two.count} in {two.seconds:.2f}s); ratio {ratio:.2f}",
                flush=True,
            )
    print(f"median CPU µs/event: 1 process {median(cpu[1]):.1f}, 2 processes {median(cpu[2]):.1f}", flush=True)
    value = median(ratios)
    headline("worker_processes2_vs_1", value, 2)
    return value


if __name__ == "__main__":
    main()
