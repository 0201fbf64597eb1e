"""Scale-out: events/s of 2 workers ÷ 1 worker on the same topic, same run.

One simulated history is loaded once. Each round runs one ``riskflow worker``
over it with a fresh consumer group and empty state, then two workers started
together in another fresh group (they split the 4 partitions), and divides
the two throughputs (progress summed from the workers' ``/metrics``). On a
2-core machine shared with the broker and the measuring process, 2.0 is out of
reach; the figure says how much of a second core a second worker turns into
throughput.

    python bench/scaleout.py [--events 200000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import uuid

if __package__ in (None, ""):
    import _path  # noqa: F401

from bench.common import Workers, broker, headline, history, input_topics, load_topics, median, stack_settings


def main(argv: list[str] | None = None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--bootstrap", default=None)
    ap.add_argument("--timeout", type=float, default=900.0)
    args = ap.parse_args(argv)

    lines = history(args.events)
    ratios = []
    with broker(args.bootstrap) as bootstrap:
        env = stack_settings(bootstrap)
        n = load_topics(env, lines)
        print(f"loaded {n} events on {input_topics(env)}", flush=True)
        for r in range(args.rounds):
            rates = []
            for count in (1, 2):
                run_env = dict(env, RISKFLOW_APP_ID=f"riskflow-scale{count}-{uuid.uuid4().hex[:8]}")
                with Workers(run_env).start(count) as w:
                    rates.append(w.follow(n, timeout=args.timeout))
            one, two = rates
            ratio = two.per_s / one.per_s
            ratios.append(ratio)
            print(
                f"round {r + 1}: 1 worker {one.per_s:,.0f} ev/s ({one.count} in {one.seconds:.2f}s), "
                f"2 workers {two.per_s:,.0f} ev/s ({two.count} in {two.seconds:.2f}s), ratio {ratio:.2f}",
                flush=True,
            )
    value = median(ratios)
    headline("scaleout_ratio", value, 2)
    return value


if __name__ == "__main__":
    main()
