"""Worker crash on the real broker: ``kill -9`` mid-replay and after a commit.

Every expected alert must be present (by ``alert_id``), re-emitted copies must
be the same finding, and per-entity state must resume from the changelog: the
final state of every entity equals the offline reference of the whole history.
A table rebuilt short (Tansu reports end offsets short) shows up as entities
whose ``events`` count or windows fell behind.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from riskflow.replay import route
from riskflow.schema import encode_event
from riskflow.simulate import simulate
from tests.kafka_fixtures import Stack
from tests.reliability_tools import (
    BackgroundProducer,
    alerts_by_id,
    assert_copies_identical,
    committed,
    latest_revisions,
    merge_ends,
    produce,
    reference,
    reference_alerts,
    routed_messages,
    try_wait_committed,
    wait_committed,
    wait_states,
)

DEDUP = 1000


def touch_every_entity(events: list[dict[str, Any]]) -> list[bytes]:
    """One more quiet event per entity, after everything else, so that every
    entity's state is read back from the table (recovered) and written again:
    a state lost in recovery then shows in the final changelog."""
    last = max(e["event_time"] for e in events)
    end = (dt.datetime.fromisoformat(last) + dt.timedelta(days=1)).isoformat()
    heads = {e["entity_id"]: e for e in events}
    return [
        encode_event(
            {
                **{k: h[k] for k in ("schema", "entity_id", "entity_kind", "region")},
                "event_id": f"touch-{eid}",
                "event_type": "grid.report",
                "event_time": end,
                "source": "grid",
                "payload": {"observation": "normal"},
            }
        )
        for eid, h in sorted(heads.items())
    ]


def test_kill_dash_nine_mid_replay_and_after_commit_loses_nothing(stack: Stack) -> None:
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

    # 2. restart: it resumes from the committed offsets and the changelog.
    want_a = reference(msgs[:cut], dedup_window=DEDUP)[1]
    w1 = stack.start_worker()
    diff = wait_states(stack.bootstrap, s.app_id, want_a)
    assert not diff, "\n".join(diff[:20]) + w1.log_text()[-2000:]
    committed_all = try_wait_committed(stack.bootstrap, s.app_id, ends_a)

    # 3. kill -9 again once (preferably) everything so far is committed: nothing
    #    is re-processed, so the state must come back whole from the changelog.
    w1.kill()
    w2 = stack.start_worker()
    produce(stack.bootstrap, recs[cut:])
    diff = wait_states(stack.bootstrap, s.app_id, want_states)
    assert not diff, f"committed before kill: {committed_all}\n" + "\n".join(diff[:20])
    got = alerts_by_id(stack.consume(s.topic_alerts, min_count=len(want_ids), timeout=120))
    missing, extra = want_ids - got.keys(), got.keys() - want_ids
    assert not missing and not extra, f"missing {sorted(missing)[:5]} extra {sorted(extra)[:5]}"
    assert latest_revisions(got) == latest_revisions(reference_alerts(msgs, dedup_window=DEDUP))
    assert_copies_identical(got)
    assert w2.proc.poll() is None
