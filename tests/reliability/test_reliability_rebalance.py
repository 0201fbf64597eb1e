"""A second worker joins mid-stream: partitions rebalance, no alert is lost or
doubled, and state follows its partitions (final per-entity state equals the
offline reference, whichever worker wrote it)."""

from __future__ import annotations

import time

from riskflow.core.schema import encode_event
from riskflow.replay import route
from riskflow.simulate import simulate
from tests.support.kafka_fixtures import Stack, Worker
from tests.support.reliability_tools import (
    BackgroundProducer,
    assert_alerts_exactly,
    explain_missing,
    metric_sum,
    produce,
    reference,
    reference_alerts,
    routed_messages,
    scrape,
    touch_every_entity,
    wait_committed,
    wait_states,
)

DEDUP = 1000


def wait_ready(w: Worker, timeout: float) -> None:
    """Until the worker has joined the group and finished its recovery (its log says so)."""
    deadline = time.monotonic() + timeout
    while "Worker ready" not in w.log_text():
        assert w.proc.poll() is None, w.log_text()[-3000:]
        assert time.monotonic() < deadline, "second worker never became ready"
        time.sleep(0.5)


def test_second_worker_mid_stream_shares_partitions_and_state(stack: Stack) -> None:
    events, _ = simulate(entities=60, days=60, seed=12)
    lines = [encode_event(e) for e in events] + touch_every_entity(events)
    want_ids, want_states = reference(lines, dedup_window=DEDUP)
    want_alerts = reference_alerts(lines, dedup_window=DEDUP)

    stack.env.update(RISKFLOW_DEDUP_WINDOW=str(DEDUP), RISKFLOW_BATCH_SIZE="40", RISKFLOW_MAX_FETCH_BYTES="4096")
    s = stack.settings
    recs = [(r.topic, r.key, r.value) for r in route(lines, s)]
    msgs = routed_messages(recs, s.partitions)
    want_ids, want_states = reference(msgs, dedup_window=DEDUP)
    want_alerts = reference_alerts(msgs, dedup_window=DEDUP)

    w0 = stack.start_worker()
    wait_committed(stack.bootstrap, s.app_id, produce(stack.bootstrap, recs[:50]))
    # The join happens while the replay goes on; the last third is held back until
    # the newcomer is ready, so that it always has events to take over (on a loaded
    # machine it once joined after the whole replay was processed, and got nothing).
    held = 50 + 2 * (len(recs) - 50) // 3
    bg = BackgroundProducer(stack.bootstrap, recs[50:held], chunk=20, pause=0.25).start()
    time.sleep(1.0)  # not a timing assertion: only lets the replay get going before the join
    w1 = stack.start_worker()
    wait_ready(w1, timeout=240)
    bg.join(timeout=300)
    bg2 = BackgroundProducer(stack.bootstrap, recs[held:], chunk=20, pause=0.25).start()
    bg2.join(timeout=300)
    assert bg.sent > 0 and bg2.sent > 0

    diff = wait_states(stack.bootstrap, s.app_id, want_states, timeout=240)
    assert not diff, "\n".join(diff[:20]) + "\n" + explain_missing(stack.bootstrap, s.app_id, msgs, diff)
    assert_alerts_exactly(stack.consume(s.topic_alerts, min_count=len(want_ids), timeout=120), want_alerts)

    # Both took part: the newcomer was given partitions and processed events.
    assert w0.proc.poll() is None and w1.proc.poll() is None
    n0 = metric_sum(scrape(w0.metrics_port), "riskflow_events_total")
    n1 = metric_sum(scrape(w1.metrics_port), "riskflow_events_total")
    assert n0 > 0 and n1 > 0, (n0, n1)
    assert n0 + n1 >= len(lines)  # a rebalance may re-process, never skip
