"""A detector that raises does not stop the worker, on the real broker.

The worker runs with a detector that has a bug (``tests/support/reliability_tools.py`` ``Boom``,
added to the worker's processor by a test-only ``sitecustomize``): it raises on events whose
id starts with ``boom-``. Three such events sit among valid ones (one of an entity that has
no other event). Each is dead-lettered with reason ``processing_error`` naming the detector
and the exception, counted in ``riskflow_invalid_events_total{reason="processing_error"}``;
the worker process keeps running (same process, no restart, no crash in its log) and every
other event is processed: the alerts and states equal the offline reference of the history
without the faulty events.
"""

from __future__ import annotations

import json
import time
from typing import Any

from detectors.factory import build_processor
from detectors.rules import load_pack
from riskflow.core.schema import encode_event
from riskflow.replay import route
from riskflow.simulate import simulate
from tests.support.kafka_fixtures import Stack
from tests.support.reliability_tools import (
    assert_alerts_exactly,
    assert_same_contents,
    changelog_states,
    metric_sum,
    reference,
    reference_alerts,
    routed_messages,
    scrape,
    state_diff,
    wait_read,
    wait_states,
    with_boom,
    worker_injection,
)


def test_a_raising_detector_dead_letters_its_event_and_the_worker_goes_on(stack: Stack) -> None:
    events, _ = simulate(entities=12, days=30, seed=21)
    booms = [
        {**events[len(events) // 4], "event_id": "boom-1"},
        {**events[len(events) // 2], "event_id": "boom-2"},
        {**events[len(events) // 2], "event_id": "boom-3", "entity_id": events[len(events) // 2]["entity_id"] + "X"},
    ]
    at = [len(events) // 4 + 1, len(events) // 2 + 1, len(events) // 2 + 2]
    lines = [encode_event(e) for e in events]
    good = list(lines)
    for pos, b in sorted(zip(at, booms, strict=True), key=lambda x: x[0]):
        lines.insert(pos, encode_event(b))
    s = stack.settings
    recs = [(r.topic, r.key, r.value) for r in route(lines, s)]
    good_recs = [(r.topic, r.key, r.value) for r in route(good, s)]
    want_ids, want_states = reference(routed_messages(good_recs, s.partitions), dedup_window=64, boom=True)
    want_alerts = reference_alerts(routed_messages(good_recs, s.partitions), dedup_window=64, boom=True)
    assert len(want_ids) >= 5

    w = stack.start_worker(extra_env=worker_injection(stack.tmp / "inject", boom=True))
    stack.produce(recs)
    diff = wait_states(stack.bootstrap, s.app_id, want_states)
    assert not diff, "\n".join(diff[:20]) + w.log_text()[-3000:]
    got = assert_alerts_exactly(stack.consume(s.topic_alerts, min_count=len(want_ids), timeout=120), want_alerts)
    assert_same_contents(got, want_alerts)

    dead = [json.loads(v) for v in stack.consume(s.topic_deadletter, min_count=3, timeout=60)]
    failed = [d for d in dead if d["reason"] == "processing_error"]
    assert sorted(json.loads(d["original"])["event_id"] for d in failed) == ["boom-1", "boom-2", "boom-3"]
    assert all(d["detail"] == "ValueError in detector test.boom: boom on purpose" for d in failed)

    deadline = time.monotonic() + 30
    while metric_sum(scrape(w.metrics_port), "riskflow_invalid_events_total", reason="processing_error") < 3:
        assert time.monotonic() < deadline, "processing_error not counted"
        time.sleep(0.5)
    m = scrape(w.metrics_port)
    assert metric_sum(m, "riskflow_invalid_events_total", reason="processing_error") == 3
    assert metric_sum(m, "riskflow_events_total") == counted(routed_messages(good_recs, s.partitions))
    # The very same process, still running, never restarted or crashed.
    assert w.proc.poll() is None and len(stack.workers) == 1
    assert "crashed" not in w.log_text(), w.log_text()[-3000:]
    assert booms[2]["entity_id"] not in {a.entity_id for copies in got.values() for a in copies}


def counted(msgs: list) -> int:
    """Events the offline reference processes (valid, not duplicates)."""
    return len(with_boom(build_processor(load_pack())).process(msgs, {}.get).counted)


def test_a_state_that_cannot_be_encoded_does_not_stop_the_worker(stack: Stack) -> None:
    """A detector keeps a value msgpack cannot encode in one entity's state (a bug that shows
    only when the state is written): that state is not written, the entity goes on from its
    last written state, and the worker goes on with everything else."""
    events, _ = simulate(entities=12, days=30, seed=22)
    at = len(events) // 3
    victim = events[at]
    lines = [encode_event(e) for e in events]
    lines.insert(at + 1, encode_event({**victim, "event_id": "unenc-1"}))
    stack.env["RISKFLOW_STATE_FLUSH_INTERVAL"] = "0"
    stack.env["RISKFLOW_BATCH_SIZE"] = "50"
    s = stack.settings
    recs = [(r.topic, r.key, r.value) for r in route(lines, s)]
    msgs = routed_messages(recs, s.partitions)
    _, want_states = reference(msgs, dedup_window=64)
    apart = linked(events, victim["entity_id"])  # the victim and the entities contagion ties to it
    others = {k: v for k, v in want_states.items() if k not in apart}

    w = stack.start_worker(extra_env=worker_injection(stack.tmp / "inject", unencodable=True))
    stack.produce(recs)
    m = wait_read(w, len(recs))
    assert metric_sum(m, "riskflow_events_total") == len(build_processor(load_pack()).process(msgs, {}.get).counted)
    deadline = time.monotonic() + 60
    while True:
        got = changelog_states(stack.bootstrap, s.app_id, settle=0.5)
        if not state_diff({k: v for k, v in got.items() if k not in apart}, others):
            break
        assert time.monotonic() < deadline, state_diff(got, others)[:10]
    assert victim["entity_id"] in got  # its earlier states were written; the unencodable one was not
    assert w.proc.poll() is None and "crashed" not in w.log_text()
    assert f"entity {victim['entity_id']}: its state cannot be encoded" in w.log_text()


def linked(events: list[dict[str, Any]], entity: str) -> set[str]:
    """``entity`` and every entity a contagion link ties to it (named in a payload, either way)."""
    out = {entity}
    for e in events:
        payload = json.dumps(e["payload"])
        if e["entity_id"] == entity:
            out |= {v for v in e["payload"].values() if isinstance(v, str) and v != entity}
        elif entity in payload:
            out.add(e["entity_id"])
    return out
