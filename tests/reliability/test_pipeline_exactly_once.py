"""Exactly-once effects on state after a crash, for any entity size, modelled offline.

A worker processes batches, flushes every entity's state at some batch (the changelog), goes
on for a while (its alerts are out, its states not written) and is killed; the offsets it had
committed stand at or before the flush. The restarted worker reads from the committed offsets
again, over the flushed states. Whatever the three points, the alerts (deduplicated by id and
revision, as the sinks keep them) and the final states must be exactly those of one pass —
also when one entity has more than 1,000 events in the span read again, far more than the
dedup window (64) remembers: each state records the offset of the last message applied per
partition, and a message at or below it is skipped.
"""

from __future__ import annotations

import datetime as dt
import functools
import zlib

import msgspec
from hypothesis import example, given, settings
from hypothesis import strategies as st

from detectors.engine import EntityState, decode_state, encode_state
from detectors.factory import build_processor
from detectors.pipeline import RawMessage
from detectors.rules import load_pack
from riskflow.core.alerts import Alert
from riskflow.core.schema import encode_event
from riskflow.sim import simulate

BUSY = "PF-330100-BUSY"
BUSY_EVENTS = 1_400
BATCH = 100


def busy_events(start: dt.datetime, days: int) -> list[dict]:
    """One fund with 1,400 subscriptions (many investors, some unqualified): rules fire and
    episodes grow revisions all along."""
    step = days * 86400 / BUSY_EVENTS
    out = []
    for i in range(BUSY_EVENTS):
        at = start + dt.timedelta(seconds=i * step)
        out.append(
            {
                "schema": "riskflow.event/v1",
                "event_id": f"busy-{i}",
                "event_type": "fund.subscription",
                "entity_id": BUSY,
                "entity_kind": "private_fund",
                "region": "330100",
                "event_time": at.isoformat(),
                "source": "test",
                "payload": {
                    "fund_id": BUSY,
                    "investor_id": f"INV-{i % 700}",
                    "investor_type": "individual",
                    "amount": 300_000.0 if i % 9 == 0 else 1_500_000.0,
                },
            }
        )
    return out


@functools.cache
def history() -> list[RawMessage]:
    """A simulated history of 25 entities and the busy fund, in event-time order, on two
    partitions of one input topic (offsets counted per partition, as a broker gives them)."""
    events, _ = simulate(entities=25, days=40, seed=5)
    start = min(dt.datetime.fromisoformat(e["event_time"]) for e in events)
    merged = sorted(events + busy_events(start, 40), key=lambda e: dt.datetime.fromisoformat(e["event_time"]))
    offsets = [0, 0]
    out = []
    for e in merged:
        part = 0 if e["entity_id"] == BUSY else zlib.crc32(e["entity_id"].encode()) % 2
        out.append(RawMessage(encode_event(e), "events", part, offsets[part], e["entity_id"].encode()))
        offsets[part] += 1
    return out


def processor():  # the product's processor; contagion links delivered in process after each batch
    return build_processor(load_pack(), dedup_window=64)


def batches(msgs: list[RawMessage]) -> list[list[RawMessage]]:
    return [msgs[i : i + BATCH] for i in range(0, len(msgs), BATCH)]


def plain(a: Alert) -> Alert:
    return msgspec.structs.replace(a, detected_at="")


def by_revision(alerts: list[Alert]) -> dict[tuple[str, int], Alert]:
    """What the sinks keep: one alert per (id, revision); re-emitted copies must be identical."""
    out: dict[tuple[str, int], Alert] = {}
    for a in map(plain, alerts):
        seen = out.setdefault((a.alert_id, a.revision), a)
        assert seen == a, (a.alert_id, a.revision)
    return out


@functools.cache
def one_pass() -> tuple[dict[tuple[str, int], Alert], dict[str, bytes]]:
    bp = processor()
    states: dict[str, EntityState] = {}
    alerts: list[Alert] = []
    for b in batches(history()):
        res = bp.process(b, states.get, now=2e9)
        states.update({k: s for k, (s, _) in res.states.items()})
        alerts += res.alerts
    return by_revision(alerts), {k: encode_state(s) for k, s in states.items()}


def crash_and_restart(committed: int, flushed: int, killed: int) -> tuple[list[Alert], dict[str, bytes], int, int]:
    """Batches up to ``killed`` processed, states flushed after batch ``flushed``, offsets
    committed up to batch ``committed``; then a new processor over the flushed states reads
    from there. Returns every alert emitted, the final states, how many messages the restart
    skipped as already applied and how many of the messages read again had been applied."""
    todo = batches(history())
    bp = processor()
    cache: dict[str, EntityState] = {}
    changelog: dict[str, bytes] = {}
    alerts: list[Alert] = []
    applied = 0
    for i, b in enumerate(todo[:killed]):
        res = bp.process(b, cache.get, now=2e9)
        cache.update({k: s for k, (s, _) in res.states.items()})
        alerts += res.alerts
        if committed <= i < flushed:
            applied += len(res.counted)
        if i + 1 == flushed:
            changelog = {k: encode_state(s) for k, s in cache.items()}
    # kill -9: the cache and the processor are gone; restart from the changelog
    restored = {k: decode_state(v) for k, v in changelog.items()}
    bp = processor()
    bp.rebuild(restored.values())
    skipped = 0
    for b in todo[committed:]:
        res = bp.process(b, restored.get, now=2e9)
        restored.update({k: s for k, (s, _) in res.states.items()})
        alerts += res.alerts
        skipped += res.already_applied
    return alerts, {k: encode_state(s) for k, s in restored.items()}, skipped, applied


N = -(-len(history()) // BATCH)


@settings(max_examples=12, deadline=None, derandomize=True)
@given(points=st.tuples(st.integers(0, N), st.integers(0, N), st.integers(0, N)).map(sorted))
@example(points=[0, N - 1, N])  # all but the last batch read again over the flushed states
def test_any_reread_span_over_the_flushed_states_gives_one_pass(points: list[int]) -> None:
    committed, flushed, killed = points
    want_alerts, want_states = one_pass()
    alerts, states, skipped, applied = crash_and_restart(committed, flushed, killed)
    got = by_revision(alerts)
    assert sorted(got.keys() - want_alerts.keys())[:5] == [] and sorted(want_alerts.keys() - got.keys())[:5] == []
    assert got == want_alerts
    assert states.keys() == want_states.keys()
    assert [k for k in states if states[k] != want_states[k]] == []
    assert skipped == applied


def test_the_longest_span_holds_more_than_a_thousand_events_of_one_entity() -> None:
    """The span of the explicit example: the busy fund's events read again exceed 1,000."""
    reread = [m for b in batches(history())[0 : N - 1] for m in b]
    assert sum(1 for m in reread if m.key == BUSY.encode()) > 1_000
    alerts, states, skipped, _ = crash_and_restart(0, N - 1, N)
    want_alerts, want_states = one_pass()
    assert states[BUSY] == want_states[BUSY] and by_revision(alerts) == want_alerts
    assert skipped >= 1_000


def test_a_links_topic_message_read_again_is_skipped_by_its_offset() -> None:
    """Contagion messages are exactly-once too: the dependent records the links partition's
    offset it applied, and the same message read again (a crash before the commit) is skipped."""
    from detectors.risk.contagion import LinkMessage, encode_link

    bp = build_processor(load_pack(), links_topic="links")
    push = LinkMessage(kind="push", to="PF-9", other="PFM-1", relation="manager", level="red", index=90.0, seq=1)
    msg = RawMessage(encode_link(push), "links", 3, 17, b"PF-9")
    store: dict[str, EntityState] = {}
    first = bp.process([msg], store.get, now=2e9)
    store.update({k: s for k, (s, _) in first.states.items()})
    assert [a.rule_id for a in first.alerts] == ["risk.contagion"] and store["PF-9"].offsets == {"links#3": 17}
    before = encode_state(store["PF-9"])
    again = bp.process([msg], store.get, now=2e9)
    assert again.already_applied == 1 and not again.alerts and not again.dead_letters and not again.states
    assert encode_state(store["PF-9"]) == before
