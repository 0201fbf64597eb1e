"""State written once per flush, not once per batch (issue 9), on the real broker.

With a flush interval far longer than the test, a worker delivers every alert
batch by batch while it writes no entity state and commits no offset (states
stay dirty in process; offsets wait for the flush that covers them). Stopped
with SIGTERM, it flushes: exactly one changelog record per entity for the
whole replay (not one per batch per entity) and the offsets committed. Killed
with SIGKILL after its alerts went out but before any flush, the restarted
worker re-reads the uncommitted tail over the last written states: no alert
is missing or extra against the offline reference, re-emitted copies are
identical, and the final states equal the reference.
"""

from __future__ import annotations

import time

from aiokafka import TopicPartition

from riskflow.core.schema import encode_event
from riskflow.replay import route
from riskflow.simulate import simulate
from tests.support.kafka_fixtures import Stack
from tests.support.reliability_tools import (
    alerts_by_id,
    assert_alerts_exactly,
    changelog_topic,
    committed,
    metric_sum,
    produce,
    read_all,
    reference,
    reference_alerts,
    routed_messages,
    scrape,
    touch_every_entity,
    wait_committed,
    wait_states,
)

DEDUP = 1000
LONG = {"RISKFLOW_STATE_FLUSH_INTERVAL": "3600"}  # no flush by time during the test


def state_records(stack: Stack) -> list[bytes]:
    """Keys of the entity-state records on the changelog, one per write."""
    topic = changelog_topic(stack.settings.app_id)
    return [k for k, v in read_all(stack.bootstrap, topic, settle=1.0) if k and v and not k.startswith(b"\x00")]


def wait_alert_ids(stack: Stack, want: set[str], timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    got: set[str] = set()
    while time.monotonic() < deadline:
        got = set(alerts_by_id(stack.consume(stack.settings.topic_alerts, timeout=30, settle=1.0)))
        if want <= got:
            return
        time.sleep(0.5)
    raise AssertionError(f"{len(want - got)} alerts never arrived")


def test_states_flush_per_interval_and_a_kill_before_the_flush_loses_nothing(stack: Stack) -> None:
    events, _ = simulate(entities=60, days=60, seed=13)
    lines = [encode_event(e) for e in events] + touch_every_entity(events)
    stack.env.update(RISKFLOW_DEDUP_WINDOW=str(DEDUP), RISKFLOW_BATCH_SIZE="40", RISKFLOW_MAX_FETCH_BYTES="4096")
    s = stack.settings
    recs = [(r.topic, r.key, r.value) for r in route(lines, s)]
    msgs = routed_messages(recs, s.partitions)
    cut = len(recs) // 2
    ids_a, states_a = reference(msgs[:cut], dedup_window=DEDUP)
    _, want_states = reference(msgs, dedup_window=DEDUP)
    want_alerts = reference_alerts(msgs, dedup_window=DEDUP)
    tps = [TopicPartition(t, p) for t in (s.topic_institution_events, s.topic_fund_events) for p in range(s.partitions)]

    # 1. Alerts go out batch by batch; no state is written and no offset committed meanwhile.
    w0 = stack.start_worker(extra_env=LONG)
    ends_a = produce(stack.bootstrap, recs[:cut])
    wait_alert_ids(stack, ids_a)
    m0 = scrape(w0.metrics_port)
    batches = metric_sum(m0, "riskflow_batches_total")
    assert batches >= 20, batches  # many batches, each touching many entities
    assert state_records(stack) == []
    assert committed(stack.bootstrap, s.app_id, tps) == {}
    # SIGTERM: one flush at shutdown, before Faust's last commit.
    assert w0.stop() == 0, w0.log_text()[-3000:]
    written = state_records(stack)
    assert sorted(written) == sorted(k.encode() for k in states_a)  # one record per entity, not per batch
    wait_committed(stack.bootstrap, s.app_id, ends_a, timeout=30)
    assert not wait_states(stack.bootstrap, s.app_id, states_a, timeout=30)

    # 2. The rest, with SIGKILL after its alerts went out but before any flush.
    w1 = stack.start_worker(extra_env=LONG)
    ends = produce(stack.bootstrap, recs[cut:])
    wait_alert_ids(stack, set(want_alerts))
    assert sorted(state_records(stack)) == sorted(written)  # still nothing written ...
    assert committed(stack.bootstrap, s.app_id, tps) == {tp: n for tp, n in ends_a.items()}  # ... or committed
    w1.kill()

    # 3. Restarted (default interval): the uncommitted tail is read again over the written states.
    w2 = stack.start_worker()
    diff = wait_states(stack.bootstrap, s.app_id, want_states)
    assert not diff, "\n".join(diff[:20]) + w2.log_text()[-2000:]
    wait_committed(
        stack.bootstrap,
        s.app_id,
        {tp: max(ends_a.get(tp, 0), ends.get(tp, 0)) for tp in tps if tp in ends or tp in ends_a},
    )
    assert_alerts_exactly(stack.consume(s.topic_alerts, min_count=len(want_alerts), timeout=120), want_alerts)
    m2 = scrape(w2.metrics_port)
    assert metric_sum(m2, "riskflow_state_flushes_total") >= 1
    # Faust's per-topic sent counter still counts the changelog records, now per flush.
    changelog = f"topic.{changelog_topic(s.app_id)}"
    sent = metric_sum(m2, "faust_topic_messages_sent_total", topic=changelog)
    assert sent == metric_sum(m2, "riskflow_states_written_total") > 0
    assert w2.proc.poll() is None
