"""Worker crash on the real broker: ``kill -9`` mid-replay and after a commit.

Every expected alert must be present (by ``alert_id``), re-emitted copies must
be the same finding, and per-entity state must resume from the changelog: the
final state of every entity equals the offline reference of the whole history.
A table rebuilt short (Tansu reports end offsets short) shows up as entities
whose ``events`` count or windows fell behind.

After the restart, the worker must resume from the offsets committed before the
kill (it re-reads exactly the uncommitted tail, no full re-read) and go on
committing (no stall). The alert sink (``riskflow alerts sink``) then fills a
PostgreSQL store: one row per expected ``alert_id``, at its highest revision.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time

from detectors.factory import build_processor
from detectors.rules import load_pack
from riskflow.core.schema import encode_event
from riskflow.replay import route
from riskflow.simulate import simulate
from riskflow.store import open_store
from tests.support.kafka_fixtures import Stack
from tests.support.reliability_tools import (
    BackgroundProducer,
    assert_alerts_exactly,
    assert_same_contents,
    busy_fund_events,
    changelog_states,
    committed,
    latest_revisions,
    merge_ends,
    metric_sum,
    produce,
    reference,
    reference_alerts,
    routed_messages,
    scrape,
    touch_every_entity,
    wait_committed,
    wait_read,
    wait_states,
    worker_injection,
)

DEDUP = 1000


def test_kill_dash_nine_mid_replay_and_after_commit_loses_nothing(stack: Stack, postgres_url: str) -> None:
    events, _ = simulate(entities=60, days=60, seed=11)
    lines = [encode_event(e) for e in events] + touch_every_entity(events)
    cut = len(lines) * 2 // 3
    want_ids, want_states = reference(lines, dedup_window=DEDUP)
    ids_a, _ = reference(lines[:cut], dedup_window=DEDUP)
    assert len(ids_a) >= 3 and len(want_ids) > len(ids_a)

    stack.env["RISKFLOW_DEDUP_WINDOW"] = str(DEDUP)
    stack.env["RISKFLOW_BATCH_SIZE"] = "40"  # many small batches: many changelog writes and commits
    # Small fetches: table recovery then needs many, and stops at the (short)
    # end offset Tansu reports instead of happening to read past it.
    stack.env["RISKFLOW_MAX_FETCH_BYTES"] = "4096"
    s = stack.settings
    recs = [(r.topic, r.key, r.value) for r in route(lines, s)]
    msgs = routed_messages(recs, s.partitions)
    want_ids, want_states = reference(msgs, dedup_window=DEDUP)

    # 1. kill -9 while the replay is still being produced and processed.
    w0 = stack.start_worker()
    ends_0 = produce(stack.bootstrap, recs[:50])
    wait_committed(stack.bootstrap, s.app_id, ends_0)  # the worker is up and consuming
    bg = BackgroundProducer(stack.bootstrap, recs[50:cut], chunk=20, pause=0.25).start()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        have = committed(stack.bootstrap, s.app_id, list(ends_0))
        if any(n > ends_0[tp] for tp, n in have.items()):
            break  # it has committed part of the background replay
        assert w0.proc.poll() is None, w0.log_text()[-3000:]
        time.sleep(0.2)
    w0.kill()
    assert bg.sent < cut - 50, "the kill must land mid-replay"
    ends_a = merge_ends(ends_0, bg.join())
    at_kill = committed(stack.bootstrap, s.app_id, list(ends_a))

    # 2. restart: it resumes from the committed offsets and the changelog.
    want_a = reference(msgs[:cut], dedup_window=DEDUP)[1]
    w1 = stack.start_worker()
    diff = wait_states(stack.bootstrap, s.app_id, want_a)
    assert not diff, "\n".join(diff[:20]) + w1.log_text()[-2000:]
    # Commits advance after the restart (batch tap): up to everything produced so far ...
    wait_committed(stack.bootstrap, s.app_id, ends_a, timeout=120)
    # ... and the restarted worker read only what was not committed before the kill.
    tail = sum(n - at_kill.get(tp, 0) for tp, n in ends_a.items())
    m1 = scrape(w1.metrics_port)
    read = (
        metric_sum(m1, "riskflow_events_total")
        + metric_sum(m1, "riskflow_invalid_events_total", reason="duplicate_event")
        + metric_sum(m1, "riskflow_already_applied_total")
    )
    assert read == tail, f"restarted worker read {read} records; uncommitted at the kill: {tail} ({at_kill})"

    # 3. kill -9 again once (preferably) everything so far is committed: nothing
    #    is re-processed, so the state must come back whole from the changelog.
    w1.kill()
    w2 = stack.start_worker()
    produce(stack.bootstrap, recs[cut:])
    diff = wait_states(stack.bootstrap, s.app_id, want_states)
    assert not diff, "\n".join(diff[:20])
    want_alerts = reference_alerts(msgs, dedup_window=DEDUP)
    assert_alerts_exactly(stack.consume(s.topic_alerts, min_count=len(want_ids), timeout=120), want_alerts)
    assert w2.proc.poll() is None

    # The alert sink into PostgreSQL: every expected alert once, at its highest revision.
    env = dict(os.environ, **stack.env, RISKFLOW_STORE_URL=postgres_url)
    log = stack.tmp / "sink.log"
    with open(log, "wb") as out:
        sink = subprocess.Popen([sys.executable, "-m", "riskflow", "alerts", "sink"], env=env, stdout=out, stderr=out)
    want_rev = latest_revisions(want_alerts)
    try:
        deadline = time.monotonic() + 120
        with open_store(postgres_url) as store:
            while time.monotonic() < deadline and store.count() < len(want_ids):
                time.sleep(0.5)
            time.sleep(2.0)  # not a timing assertion: lets any extra row show up
            rows = store.list_alerts(limit=10 * len(want_ids))
        assert sorted(r.alert.alert_id for r in rows) == sorted(want_ids), log.read_text(errors="replace")[-2000:]
        assert {r.alert.alert_id: r.alert.revision for r in rows} == want_rev
    finally:
        sink.send_signal(signal.SIGTERM)
        sink.wait(60)


BUSY = "PF-330100-BUSY"


def test_kill_dash_nine_rereads_a_busy_entitys_long_span_exactly_once(stack: Stack) -> None:
    """The states are flushed every batch but no offset is ever committed (Faust's commit
    interval made an hour, test-only): after a kill -9 the next worker reads everything
    again over states that already hold it — more than 1,000 events of one fund, with the
    default dedup window of 64. Killed once mid-replay and once after all is flushed: no alert
    lost, none extra, the same ids, highest revisions and contents, and the same states as
    the offline reference; the second restart applies nothing twice."""
    events, _ = simulate(entities=20, days=40, seed=17)
    start = min(dt.datetime.fromisoformat(e["event_time"]) for e in events)
    merged = sorted(
        events + busy_fund_events(start, 40, 1_300, BUSY), key=lambda e: dt.datetime.fromisoformat(e["event_time"])
    )
    lines = [encode_event(e) for e in merged]
    stack.env["RISKFLOW_STATE_FLUSH_INTERVAL"] = "0"  # every batch's states written ...
    stack.env["RISKFLOW_BATCH_SIZE"] = "100"
    inject = worker_injection(stack.tmp / "inject", commit_interval=3600.0)  # ... and no offset committed
    s = stack.settings
    recs = [(r.topic, r.key, r.value) for r in route(lines, s)]
    msgs = routed_messages(recs, s.partitions)
    want_ids, want_states = reference(msgs, dedup_window=64)
    want_alerts = reference_alerts(msgs, dedup_window=64)
    applied = len(build_processor(load_pack()).process(msgs, {}.get).counted)

    # 1. kill -9 mid-replay, once the changelog holds more than 1,000 of the fund's events.
    cut = [i for i, r in enumerate(recs) if r[1] == BUSY.encode()][1_050]
    w0 = stack.start_worker(extra_env=inject)
    ends_a = produce(stack.bootstrap, recs[:cut])
    deadline = time.monotonic() + 90
    while True:
        busy = changelog_states(stack.bootstrap, s.app_id, settle=0.5).get(BUSY)
        if busy is not None and busy.events >= 1_050:
            break
        assert time.monotonic() < deadline and w0.proc.poll() is None, w0.log_text()[-3000:]
    w0.kill()
    assert not committed(stack.bootstrap, s.app_id, list(ends_a)), "nothing may be committed: the span is everything"
    produce(stack.bootstrap, recs[cut:])

    # 2. restart: everything is read again; what the flushed states hold is skipped, the rest applied.
    w1 = stack.start_worker(extra_env=inject)
    m1 = wait_read(w1, len(recs))
    diff = wait_states(stack.bootstrap, s.app_id, want_states)
    assert not diff, "\n".join(diff[:20]) + w1.log_text()[-2000:]
    assert metric_sum(m1, "riskflow_already_applied_total") > 1_000 and metric_sum(m1, "riskflow_events_total") > 0

    # 3. kill -9 once everything is flushed, still nothing committed: all of it read again, none applied.
    w1.kill()
    w2 = stack.start_worker(extra_env=inject)
    m = wait_read(w2, len(recs))
    assert metric_sum(m, "riskflow_events_total") == 0 and metric_sum(m, "riskflow_already_applied_total") >= applied
    assert not wait_states(stack.bootstrap, s.app_id, want_states)
    got = assert_alerts_exactly(stack.consume(s.topic_alerts, min_count=len(want_ids), timeout=120), want_alerts)
    assert_same_contents(got, want_alerts)
