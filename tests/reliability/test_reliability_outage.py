"""The broker unreachable at start-up and again for a few seconds mid-replay.

The worker talks to the (shared, session) broker only through a TCP proxy
(``KafkaProxy``) that refuses connections at first, then opens, then is cut
(every connection aborted, new ones refused) while the replay is being
processed, then opens again. The worker must wait and retry with back-off and
say so in its log, keep running, and in the end every expected alert is on the
alerts topic (by ``alert_id``, copies identical) and every entity's state
equals the offline reference.
"""

from __future__ import annotations

import itertools
import re
import time

from riskflow.core.schema import encode_event
from riskflow.replay import route
from riskflow.simulate import simulate
from tests.support.kafka_fixtures import Stack, Worker
from tests.support.reliability_tools import (
    BackgroundProducer,
    KafkaProxy,
    assert_alerts_exactly,
    committed,
    produce,
    reference,
    reference_alerts,
    routed_messages,
    touch_every_entity,
    wait_committed,
    wait_states,
)

DEDUP = 1000
RETRY = re.compile(r"Kafka at \S+ not reachable .*; retrying in (\d+\.\d)s")


def wait_for_log(worker: Worker, pattern: re.Pattern[str], count: int, timeout: float = 90.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = pattern.findall(worker.log_text())
        if len(found) >= count:
            return found
        assert worker.proc.poll() is None, worker.log_text()[-3000:]
        time.sleep(0.3)
    raise AssertionError(f"no {count} x {pattern.pattern!r} in the log:\n" + worker.log_text()[-3000:])


def test_broker_unreachable_at_start_and_mid_replay_loses_nothing(stack: Stack) -> None:
    events, _ = simulate(entities=20, days=30, seed=13)
    lines = [encode_event(e) for e in events] + touch_every_entity(events)
    stack.env.update(RISKFLOW_DEDUP_WINDOW=str(DEDUP), RISKFLOW_BATCH_SIZE="40", RISKFLOW_MAX_FETCH_BYTES="4096")
    s = stack.settings
    recs = [(r.topic, r.key, r.value) for r in route(lines, s)]
    msgs = routed_messages(recs, s.partitions)
    want_ids, want_states = reference(msgs, dedup_window=DEDUP)
    want_alerts = reference_alerts(msgs, dedup_window=DEDUP)

    proxy = KafkaProxy(stack.bootstrap)  # closed: connection refused
    try:
        stack.env["RISKFLOW_KAFKA_BOOTSTRAP"] = proxy.bootstrap
        w = stack.start_worker()
        stack.env["RISKFLOW_KAFKA_BOOTSTRAP"] = stack.bootstrap
        waits = wait_for_log(w, RETRY, 2)  # start-up: it waits, with growing back-off
        assert [float(x) for x in waits[:2]] == [1.0, 2.0], waits
        proxy.open()

        # The replay goes straight to the broker; only the worker is behind the proxy.
        ends_0 = produce(stack.bootstrap, recs[:50])
        wait_committed(stack.bootstrap, s.app_id, ends_0)
        bg = BackgroundProducer(stack.bootstrap, recs[50:], chunk=40, pause=0.2).start()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:  # until it has committed part of the background replay
            if any(n > ends_0[tp] for tp, n in committed(stack.bootstrap, s.app_id, list(ends_0)).items()):
                break
            time.sleep(0.2)
        log_at_cut = len(w.log_text())
        proxy.cut()
        time.sleep(5.0)  # not a timing assertion: the length of the outage
        proxy.open()
        bg.join(timeout=300)

        diff = wait_states(stack.bootstrap, s.app_id, want_states, timeout=240)
        assert not diff, "\n".join(diff[:20]) + w.log_text()[-3000:]
        assert_alerts_exactly(stack.consume(s.topic_alerts, min_count=len(want_ids), timeout=120), want_alerts)

        assert w.proc.poll() is None, "the worker must ride out the outage"
        log = w.log_text()
        assert log.count("Worker]: Ready") == 1, "the worker restarted"
        # The outage is reported as retries with back-off, not one aiokafka line per attempt
        # (~170 a second without riskflow.worker.BrokerRetryLog).
        outage = log[log_at_cut:].splitlines()
        reports = [line for line in outage if "Kafka broker unreachable, retrying" in line]
        assert reports, "\n".join(outage[:50])
        raw = [line for line in outage if "Unable connect to node" in line or "Failed fetch messages" in line]
        assert len(raw) == len([r for r in raw if "Kafka broker unreachable" in r]) < 40, len(raw)
        steps = [float(m) for m in re.findall(r"next report in (\d+)s", "\n".join(reports))]
        # 1, 2, 4 .. s (a report may already have been made just before the cut: then from 2 s)
        assert len(steps) >= 2 and all(b == min(2 * a, 60) for a, b in itertools.pairwise(steps)), steps
        w.stop()  # while the broker is reachable
    finally:
        proxy.stop()
