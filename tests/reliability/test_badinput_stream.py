"""A flood of bad input on the real broker: >= 10,000 bad messages of every kind
mixed into a simulated history. Every bad message reaches the dead-letter topic
exactly once with the right reason and its exact bytes, every good one is
processed, metrics and topics add up exactly, and the worker never restarts.

The history also ends with a few valid but *late* events (beyond the allowed
lateness of their entity, detectors/lateness.py): they are not dead letters;
each reaches the late-event ledger topic once, as the offline run records it,
and ``riskflow_late_events_total`` counts them."""

from __future__ import annotations

import random
from collections import Counter

import msgspec

from detectors.factory import build_processor
from detectors.lateness import decode_late
from detectors.pipeline import RawMessage
from detectors.rules import load_pack
from riskflow.core.deadletter import original_bytes
from riskflow.core.partitioning import partition_for
from riskflow.core.schema import encode_event
from riskflow.replay import route
from riskflow.simulate import simulate
from tests.support.kafka_fixtures import Stack
from tests.support.reliability_tools import (
    alerts_by_id,
    assert_copies_identical,
    late_copies,
    latest_revisions,
    metric_sum,
    produce_located,
    reference_alerts,
    reference_late,
    scrape,
)

PER_KIND = 1250  # x 8 kinds = 10,000 bad messages
MAX_BYTES = 1024


def bad_messages(good: list[dict], rng: random.Random) -> list[tuple[str, bytes, bytes]]:
    """(expected reason, key, value) for seven kinds of broken messages."""
    subs = [e for e in good if e["event_type"] == "fund.subscription"] or good
    out: list[tuple[str, bytes, bytes]] = []
    for i in range(PER_KIND):
        g = rng.choice(subs)
        line = encode_event(g)
        key = rng.choice([b"BAD-%d" % (i % 13), b"\xff\xfeK", g["entity_id"].encode()])
        out += [
            ("malformed_json", key, line.decode()[: rng.randrange(1, len(line) // 2)].encode()),
            ("invalid_payload", key, encode_event({**g, "payload": {k: {"n": i} for k in g["payload"]}})),
            ("invalid_envelope", key, encode_event({k: v for k, v in g.items() if k != "entity_id"})),
            ("unknown_event_type", key, encode_event({**g, "event_type": f"lottery.win{i % 5}"})),
            (
                "not_utf8",
                key,
                rng.choice([b"\xff\xfe\x00junk", line.replace(b'"' + g["entity_id"].encode(), b'"\xc3\x28')]),
            ),
            ("oversized", key, encode_event({**g, "payload": {**g["payload"], "pad": "x" * (MAX_BYTES + i % 50)}})),
            ("future_time", key, encode_event({**g, "event_time": "2100-01-01T00:00:00+08:00"})),
        ]
    return out


def test_ten_thousand_bad_messages_are_dead_lettered_and_counted_exactly(stack: Stack) -> None:
    rng = random.Random(8)
    events, _ = simulate(entities=40, days=40, seed=3)
    late = late_copies(events, 6)
    assert len(late) == 6
    good = [encode_event(e) for e in [*events, *late]]
    want_alerts = reference_alerts(good, dedup_window=1000)
    want_late = reference_late(good, dedup_window=1000)
    assert sorted(r.event_id for r in want_late) == sorted(e["event_id"] for e in late)
    # The late events exercise re-evaluation, and one of them raises an alert.
    assert any(x.action == "reevaluated" for r in want_late for x in r.rules)
    assert any(r.alerts for r in want_late)
    want_ids = set(want_alerts)

    stack.env.update(RISKFLOW_DEDUP_WINDOW="1000", RISKFLOW_MAX_EVENT_BYTES=str(MAX_BYTES))
    s = stack.settings
    worker = stack.start_worker()

    good_recs_routed = list(route(good, s))
    good_recs = [("good", r.topic, r.key, r.value) for r in good_recs_routed]
    bad = [
        (reason, rng.choice([s.topic_fund_events, s.topic_institution_events]), k, v)
        for reason, k, v in bad_messages(events, rng)
    ]
    # Interleave at random, keeping the good events in their own order.
    mixed: list[tuple[str, str, bytes | None, bytes]] = []
    gi, bi = 0, 0
    rng.shuffle(bad)
    while gi < len(good_recs) or bi < len(bad):
        if bi >= len(bad) or (gi < len(good_recs) and rng.random() < len(good_recs) / (len(good_recs) + len(bad))):
            mixed.append(good_recs[gi])
            gi += 1
        else:
            mixed.append(bad[bi])
            bi += 1
    # Duplicates last, each to its original's partition (same key): re-sent events.
    dups = [("duplicate_event", t, k, v) for _, t, k, v in rng.sample(good_recs, len(good_recs)) * 4][:PER_KIND]
    mixed += dups
    where = produce_located(stack.bootstrap, [(t, k, v) for _, t, k, v in mixed])
    sent = {loc: (reason, value) for loc, (reason, _, _, value) in zip(where, mixed, strict=True)}
    want_bad = Counter(reason for reason, _, _, _ in mixed if reason != "good")
    assert sum(want_bad.values()) >= 10_000 and len(want_bad) == 8

    dead = [
        msgspec.json.decode(v) for v in stack.consume(s.topic_deadletter, min_count=sum(want_bad.values()), timeout=240)
    ]
    locs = [(d["topic"], d["partition"], d["offset"]) for d in dead]
    assert len(locs) == len(set(locs)), "a message was dead-lettered twice"
    assert Counter(d["reason"] for d in dead) == want_bad
    for d, loc in zip(dead, locs, strict=True):
        reason, value = sent[loc]
        assert d["reason"] == reason, (loc, d["detail"])
        assert original_bytes(d) == value and d["original_sha256"] and d["detail"]

    alerts = alerts_by_id(stack.consume(s.topic_alerts, min_count=len(want_ids), timeout=60))
    assert alerts.keys() == want_ids
    assert latest_revisions(alerts) == latest_revisions(want_alerts)
    assert_copies_identical(alerts)
    n_alert_records = sum(len(v) for v in alerts.values())

    # Events that ran ahead of their partition's time share the ledger (ahead: true); which
    # ones do depends on the partitioning, so the reference is placed as the worker's input is.
    placed = [
        RawMessage(r.value, r.topic, partition_for(r.key or b"", s.partitions), i, r.key)
        for i, r in enumerate(good_recs_routed)
    ]
    want_ahead = build_processor(load_pack(), dedup_window=1000).process(placed, {}.get).ahead
    got = stack.consume(s.topic_late, min_count=len(want_late) + len(want_ahead), timeout=60)
    ledger_all = [decode_late(v) for v in got]
    assert sorted(r.event_id for r in ledger_all if r.ahead) == sorted(r.event_id for r in want_ahead)
    ledger = [r for r in ledger_all if not r.ahead]
    assert sorted(r.event_id for r in ledger) == sorted(r.event_id for r in want_late)
    by_id = {r.event_id: r for r in ledger}
    for want in want_late:
        got = by_id[want.event_id]
        assert (got.rules, got.alerts, got.late_by_seconds) == (want.rules, want.alerts, want.late_by_seconds)
        assert msgspec.json.decode(got.event)["event_id"] == want.event_id  # type: ignore[arg-type]

    m = scrape(worker.metrics_port)
    assert metric_sum(m, "riskflow_late_events_total") == len(late)
    assert metric_sum(m, "riskflow_events_total") == len(good)
    for reason, n in want_bad.items():
        assert metric_sum(m, "riskflow_invalid_events_total", reason=reason) == n, reason
    assert metric_sum(m, "riskflow_invalid_events_total") == sum(want_bad.values())
    assert metric_sum(m, "riskflow_alerts_total") == n_alert_records

    log = worker.log_text()
    assert worker.proc.poll() is None, "the worker must keep running"
    assert log.count("Worker]: Ready") == 1, "the worker restarted"
    assert "Traceback" not in log and "crashed" not in log.lower(), log[-3000:]


def test_the_single_message_crashers_are_dead_lettered_and_the_worker_goes_on(stack: Stack) -> None:
    """Each of these small messages crash-looped every worker (issue 22): a payload nested 3,000
    levels deep inside an unknown field, a quarterly filing for period 9999-12-31, an event at
    0001-01-01T00:00:00+14:00. Produced between valid events, each is dead-lettered with its
    reason, the worker keeps running (the same process), and the events after them raise the
    alerts they raise without them."""
    events, _ = simulate(entities=20, days=30, seed=5)
    good = [encode_event(e) for e in events]
    like = events[len(events) // 2]
    deep = encode_event(like)[:-1] + b', "extra": ' + b"[" * 3000 + b"]" * 3000 + b"}"
    far_filing = {"filing": "quarterly", "period_end": "9999-12-31"}
    crashers = [
        deep,
        encode_event({**like, "event_id": "far", "event_type": "filing.submitted", "payload": far_filing}),
        encode_event({**like, "event_id": "year-0", "event_time": "0001-01-01T00:00:00+14:00"}),
    ]
    want = reference_alerts(good, dedup_window=64)
    assert want

    s = stack.settings
    worker = stack.start_worker()
    routed = list(route(good, s))
    half = len(routed) // 2
    first, second = routed[:half], routed[half:]
    key = like["entity_id"].encode()
    topic = next(r.topic for r in routed if r.key == key)
    stack.produce([(r.topic, r.key, r.value) for r in first])
    stack.produce([(topic, key, v) for v in crashers])
    stack.produce([(r.topic, r.key, r.value) for r in second])

    dead = [msgspec.json.decode(v) for v in stack.consume(s.topic_deadletter, min_count=3, timeout=120)]
    assert sorted(d["reason"] for d in dead) == ["invalid_date", "invalid_date", "too_deep"]
    alerts = alerts_by_id(stack.consume(s.topic_alerts, min_count=len(want), timeout=120))
    assert alerts.keys() == want.keys()
    assert worker.proc.poll() is None, "the worker exited"
    assert "Traceback" not in worker.log.read_text(errors="replace")
