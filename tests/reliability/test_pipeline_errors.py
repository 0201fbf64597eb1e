"""No exception stops a batch: a message whose processing raises is dead-lettered as
``processing_error``, its entity's state is left as it was before it, the batch goes on.

The faults are injected through the product's own extension points (a Detector subclass in
an Engine, a RiskScorer subclass), each raising only on crafted input and after it has changed
some state in place, so the test also proves the state is put back. The reference is always
the same messages processed without the faulty ones (same offsets): the states must be equal
byte for byte (``encode_state``), the alerts equal but for the wall-clock ``detected_at``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import pytest

from detectors.base import Describe, Detector, Signal
from detectors.engine import EntityState, StepFailed, encode_state
from detectors.factory import build_processor
from detectors.pipeline import PROCESSING_ERROR, BatchProcessor, BatchResult, RawMessage
from detectors.risk import RiskScorer, load_risk_config
from detectors.risk.contagion import LinkMessage, encode_link
from detectors.rules import load_pack
from riskflow.core.metrics import DEAD_LETTER_REASONS
from riskflow.core.schema import Event
from streams.handler import process_batch
from tests.support.reliability_tools import Boom

DAY = 86400.0


def raw(event_id: str, entity: str, day: float, kind: str = "private_fund_manager", **body: Any) -> bytes:
    event_type, payload = body.get("event_type", "opinion.published"), body.get("payload", {"sentiment": 0.1})
    return json.dumps(
        {
            "schema": "riskflow.event/v1",
            "event_id": event_id,
            "event_type": event_type,
            "entity_id": entity,
            "entity_kind": kind,
            "region": "330100",
            "event_time": f"2025-03-{1 + int(day):02d}T{10 + int(day % 1 * 10):02d}:00:00+08:00",
            "source": "test",
            "payload": payload,
        }
    ).encode()


def notice(event_id: str, entity: str, day: float, what: str = "lost_contact") -> bytes:
    return raw(event_id, entity, day, event_type="amac.notice", payload={"notice": what})


def history() -> list[bytes]:
    """Three managers with alerts and level changes, quiet events between, and ``boom-*``
    events: in the middle of A's history, first of N's (which goes on), the only one of Z's."""
    out = []
    for d in range(12):
        out.append(raw(f"q{d}", "PFM-A", d))
        out.append(raw(f"r{d}", "PFM-B", d + 0.5))
        if d == 3:
            out.append(notice("n1", "PFM-A", d + 0.2, "abnormal_operation"))
            out.append(raw("boom-a1", "PFM-A", d + 0.3))
        if d == 4:
            out.append(raw("boom-n", "PFM-N", d))
            out.append(notice("nB", "PFM-B", d + 0.6, "false_filing"))
        if d == 5:
            out.append(raw("q-n", "PFM-N", d))
            out.append(raw("boom-z", "PFM-Z", d))
        if d == 7:
            out.append(notice("n2", "PFM-A", d + 0.2))
            out.append(raw("boom-a2", "PFM-A", d + 0.4))
            out.append(notice("n3", "PFM-N", d + 0.1))
    return out


def messages(values: Sequence[bytes], topic: str = "events") -> list[RawMessage]:
    return [RawMessage(v, topic, 0, i, b"k") for i, v in enumerate(values)]


def is_boom(m: RawMessage) -> bool:
    return b'"boom' in m.value


def processor(*extra: Detector, scorer: RiskScorer | None = None) -> BatchProcessor:
    bp = build_processor(load_pack(), anomaly=False)
    bp.engine.detectors = [*bp.engine.detectors, *extra]
    if scorer is not None:
        bp.engine.risk = scorer
    return bp


def run(bp: BatchProcessor, msgs: Sequence[RawMessage], batch: int) -> tuple[BatchResult, dict[str, EntityState]]:
    """``msgs`` in batches over a store of state objects (as the live cache holds them); the
    results merged."""
    store: dict[str, EntityState] = {}
    total = BatchResult()
    for i in range(0, len(msgs), batch):
        res = bp.process(msgs[i : i + batch], store.get, now=2e9)
        store.update({k: st for k, (st, _) in res.states.items()})
        total.alerts += res.alerts
        total.dead_letters += res.dead_letters
        total.counted += res.counted
    return total, store


def plain(alerts: Sequence[Any]) -> list[Any]:
    return [msgspec.structs.replace(a, detected_at="") for a in alerts]


def encoded(store: dict[str, EntityState]) -> dict[str, bytes]:
    return {k: encode_state(v) for k, v in store.items()}


@pytest.mark.parametrize("batch", [1, 4, 1000])
def test_a_raising_detector_dead_letters_its_event_and_leaves_the_state_as_before(batch: int) -> None:
    msgs = messages(history())
    got, store = run(processor(Boom()), msgs, batch)
    want, ref = run(processor(Boom()), [m for m in msgs if not is_boom(m)], batch)
    assert encoded(store) == encoded(ref)
    assert "PFM-Z" not in store  # its only event failed: no state was made
    assert store["PFM-A"].detectors["test.boom"] == ref["PFM-A"].events
    assert plain(got.alerts) == plain(want.alerts) and len(want.alerts) >= 4
    assert got.counted == want.counted
    failed = [d for d in got.dead_letters if d["reason"] == PROCESSING_ERROR]
    assert [d["offset"] for d in failed] == [m.offset for m in msgs if is_boom(m)]
    assert all(d["detail"] == "ValueError in detector test.boom: boom on purpose" for d in failed)
    assert [d for d in got.dead_letters if d["reason"] != PROCESSING_ERROR] == want.dead_letters


class BoomScorer(RiskScorer):
    """The shipped risk scorer, raising half-way through an event whose id starts with ``boom``
    (after it changed the entity's risk state) and in a push to ``PF-9``."""

    def apply(self, state: Any, event: Event, hits: Any, make: Any, clock: Callable[[], str]) -> Any:
        out = super().apply(state, event, hits, make, clock)
        if event.event_id.startswith("boom"):
            state.risk.raised += 1e9
            raise ZeroDivisionError("scorer fault")
        return out

    def on_push(self, state: Any, msg: LinkMessage, clock: Callable[[], str]) -> list[Any]:
        out = super().on_push(state, msg, clock)
        if msg.to == "PF-9":
            raise KeyError("push fault")
        return out


class NoPushToPF9(RiskScorer):
    """The reference for a failed push: a push to ``PF-9`` changes nothing."""

    def on_push(self, state: Any, msg: LinkMessage, clock: Callable[[], str]) -> list[Any]:
        return [] if msg.to == "PF-9" else super().on_push(state, msg, clock)


def test_a_raising_risk_scorer_dead_letters_its_event_and_leaves_the_state_as_before() -> None:
    msgs = messages(history())
    got, store = run(processor(scorer=BoomScorer(load_risk_config())), msgs, 7)
    want, ref = run(processor(scorer=BoomScorer(load_risk_config())), [m for m in msgs if not is_boom(m)], 7)
    assert encoded(store) == encoded(ref)
    assert plain(got.alerts) == plain(want.alerts)
    failed = [d for d in got.dead_letters if d["reason"] == PROCESSING_ERROR]
    assert len(failed) == 4 and all(d["detail"].startswith("ZeroDivisionError in risk scorer") for d in failed)


def fund_registered(fund: str, manager: str, event_id: str, day: float) -> bytes:
    payload = {"fund_id": fund, "manager_id": manager, "fund_type": "equity", "structure": "contractual"}
    return raw(event_id, fund, day, kind="private_fund", event_type="fund.registered", payload=payload)


def contagion_history() -> list[bytes]:
    return [
        fund_registered("PF-9", "PFM-1", "f9", 0),
        fund_registered("PF-8", "PFM-1", "f8", 0.5),
        raw("q9", "PF-9", 1, kind="private_fund"),
        notice("m1", "PFM-1", 2),
        raw("q9b", "PF-9", 3, kind="private_fund"),
    ]


def test_a_raising_contagion_push_leaves_the_dependent_as_before_offline_and_live() -> None:
    msgs = messages(contagion_history())
    got, store = run(processor(scorer=BoomScorer(load_risk_config())), msgs, 1000)
    want, ref = run(processor(scorer=NoPushToPF9(load_risk_config())), msgs, 1000)
    assert encoded(store) == encoded(ref)
    assert plain(got.alerts) == plain(want.alerts)
    assert any(a.entity_id == "PF-8" and a.rule_id == "risk.contagion" for a in got.alerts)  # the other push landed
    (failed,) = [d for d in got.dead_letters if d["reason"] == PROCESSING_ERROR]
    assert failed["detail"] == "KeyError in contagion: 'push fault'" and failed["key"] == "PF-9"
    assert msgspec.json.decode(failed["original"])["to"] == "PF-9"

    # Live: the pushes arrive on the links topic, among the events; it is the message dead-lettered.
    bp = build_processor(load_pack(), anomaly=False, links_topic="links")
    bp.engine.risk = BoomScorer(load_risk_config())
    res = bp.process(msgs, {}.get, now=2e9)
    live = {k: st for k, (st, _) in res.states.items()}
    offset = 40
    while not any(m.kind == "push" for m in res.links):  # the links reach the manager, which pushes
        assert res.links
        batch = [RawMessage(encode_link(m), "links", 2, offset + i, m.to.encode()) for i, m in enumerate(res.links)]
        offset += len(batch)
        res = bp.process(batch, live.get, now=2e9)
        live.update({k: st for k, (st, _) in res.states.items()})
    before = encode_state(live["PF-9"])
    pushes = [RawMessage(encode_link(m), "links", 2, offset + i, m.to.encode()) for i, m in enumerate(res.links)]
    res = bp.process(pushes, live.get, now=2e9)
    (failed,) = res.dead_letters
    assert (failed["reason"], failed["topic"], failed["partition"]) == (PROCESSING_ERROR, "links", 2)
    assert failed["offset"] == next(p.offset for p in pushes if p.key == b"PF-9")
    assert encode_state(live["PF-9"]) == before
    assert any(a.entity_id == "PF-8" for a in res.alerts)


class Timer(Detector):
    """A timed test detector: an ``arm`` event sets a deadline a day later; when the watermark
    passes it, it fires, except for ``PFM-X``, where it raises (after changing its state)."""

    id = "test.timer"
    describe = Describe("测试计时", "test timer")
    timed = True

    def learn_one(self, state: Any, event: Event) -> Any:
        if event.event_id.startswith("arm"):
            return {"due": event.ts + DAY, "fired": 0, "who": event.entity_id}
        return state

    def score_one(self, state: Any, event: Event) -> list[Signal]:
        return []

    def next_deadline(self, state: Any) -> float | None:
        return state["due"] if state and state.get("due") else None

    def on_time(self, state: Any, watermark: float) -> tuple[Any, list[Signal]]:
        state["fired"] += 1
        if state["who"] == "PFM-X":
            raise OverflowError("timer fault")
        due = dt.datetime.fromtimestamp(state["due"], dt.UTC).isoformat()
        state["due"] = None
        return state, [Signal(self.id, due, "high", 1.0, {"due": due})]


def test_a_raising_timed_advance_leaves_that_entity_as_before_and_other_timers_fire() -> None:
    values = [
        raw("arm-x", "PFM-X", 0),
        raw("arm-y", "PFM-Y", 0.1),
        raw("q1", "PFM-W", 0.5),
        raw("q2", "PFM-W", 2),  # moves the watermark past both deadlines
        raw("q3", "PFM-W", 3),
    ]
    msgs = messages(values)
    got, store = run(processor(Timer()), msgs, 1000)
    _, ref = run(processor(Timer()), msgs[:3], 1000)
    assert encode_state(store["PFM-X"]) == encode_state(ref["PFM-X"])  # its deadline still pending
    assert store["PFM-X"].detectors["test.timer"]["fired"] == 0
    fired = [a for a in got.alerts if a.rule_id == "test.timer"]
    assert [a.entity_id for a in fired] == ["PFM-Y"] and store["PFM-Y"].detectors["test.timer"]["due"] is None
    (failed,) = [d for d in got.dead_letters if d["reason"] == PROCESSING_ERROR]
    assert failed["offset"] == 3  # the event that moved the watermark; it is itself applied
    assert failed["detail"] == "timed advance of PFM-X: OverflowError in detector test.timer (timed): timer fault"
    assert store["PFM-W"].events == 3


def test_a_parser_that_raises_beyond_invalid_event_is_contained(monkeypatch: pytest.MonkeyPatch) -> None:
    """Anything the parser raises that is not InvalidEvent (a RecursionError, a date out of
    range, a future bug) is the message's processing error, not the batch's."""
    import detectors.pipeline as pipeline

    real = pipeline.parse_event

    def parse(value: bytes, **kw: Any) -> Event:
        if b"boom" in value:
            raise RecursionError("maximum recursion depth exceeded")
        return real(value, **kw)

    monkeypatch.setattr(pipeline, "parse_event", parse)
    msgs = messages(history())
    got, store = run(processor(), msgs, 10)
    want, ref = run(processor(), [m for m in msgs if not is_boom(m)], 10)
    assert encoded(store) == encoded(ref) and plain(got.alerts) == plain(want.alerts)
    failed = [d for d in got.dead_letters if d["reason"] == PROCESSING_ERROR]
    assert len(failed) == 4 and failed[0]["detail"].startswith("RecursionError in parsing")


class Escape(BaseException):
    """Not an Exception: gets past the per-message containment (stands for a pipeline bug)."""


class Fragile(Detector):
    id = "test.fragile"
    describe = Describe("测试", "test")

    def learn_one(self, state: Any, event: Event) -> Any:
        if event.event_id == "escape":
            raise Escape()
        return state

    def score_one(self, state: Any, event: Event) -> list[Signal]:
        return []


def test_a_batch_that_fails_as_a_whole_leaves_every_state_and_lane_as_at_its_start() -> None:
    bp = processor(Fragile())
    msgs = messages(history())
    first = bp.process(msgs[:20], {}.get, now=2e9)
    store = {k: st for k, (st, _) in first.states.items()}
    before = encoded(store)
    marks = {k: lane.watermark for k, lane in bp.lanes.items()}
    heaps = {k: sorted(lane.heap) for k, lane in bp.lanes.items()}
    tail = [*msgs[20:], RawMessage(raw("escape", "PFM-A", 11.9), "events", 0, 999, None)]
    with pytest.raises(Escape):
        bp.process(tail, store.get, now=2e9)
    assert encoded(store) == before
    assert {k: lane.watermark for k, lane in bp.lanes.items()} == marks
    for k, heap in heaps.items():  # entries it popped are back (entries it pushed are stale: skipped)
        assert set(heap) <= set(bp.lanes[k].heap)


class PoisonedBatches:
    """The real processor, with a bug tied to one message outside its per-message containment:
    a batch holding the message ``poison`` fails as a whole. (A wrapper, not a subclass: the
    compiled build's processor cannot be subclassed; the real processor's own undo of a failed
    batch is the test above.)"""

    def __init__(self, real: BatchProcessor) -> None:
        self.real = real

    def process(self, messages: Sequence[Any], get_state: Any, now: float | None = None) -> BatchResult:
        if any(b'"poison"' in m.value for m in messages):
            raise RuntimeError("a bug in the pipeline")
        return self.real.process(messages, get_state, now=2e9)


def test_the_worker_retries_a_failed_batch_one_message_at_a_time() -> None:
    msgs = messages(history())
    poison = RawMessage(raw("poison", "PFM-B", 6.1), "events", 0, 500, None)
    batch = [*msgs[:30], poison, *msgs[30:]]
    store: dict[str, EntityState] = {}
    res = process_batch(PoisonedBatches(processor()), batch, store.get)  # type: ignore[arg-type]
    want = processor().process(msgs, {}.get, now=2e9)
    assert {k: encode_state(s) for k, (s, _) in res.states.items()} == {
        k: encode_state(s) for k, (s, _) in want.states.items()
    }
    assert plain(res.alerts) == plain(want.alerts) and res.counted == want.counted
    (failed,) = res.dead_letters
    assert failed["reason"] == PROCESSING_ERROR and failed["offset"] == 500
    assert failed["detail"] == "RuntimeError in the batch processor: a bug in the pipeline"


def test_step_failed_names_the_step_and_the_reason_is_a_metric_label() -> None:
    err = StepFailed("detector x", ValueError("v"))
    assert str(err) == "detector x: ValueError: v"
    assert PROCESSING_ERROR in DEAD_LETTER_REASONS


def test_a_detector_switch_between_batches_restores_with_the_detectors_of_the_time() -> None:
    """The copies and journals kept across batches are dropped when the detectors change
    (a rule-pack switch, a new model): a failure after the switch is undone from a copy taken
    after it, not by applying earlier events again through detectors that did not see them."""
    msgs = messages(history())

    cut = len(msgs) // 3

    def switched(ms: Sequence[RawMessage]) -> tuple[BatchResult, dict[str, EntityState]]:
        bp = processor()
        store: dict[str, EntityState] = {}
        total = BatchResult()
        for part in ([m for m in ms if m.offset < cut], [m for m in ms if m.offset >= cut]):
            if part[0].offset >= cut:
                bp.engine.detectors = [*bp.engine.detectors, Boom()]  # counts from here on
            for i in range(0, len(part), 3):
                res = bp.process(part[i : i + 3], store.get, now=2e9)
                store.update({k: st for k, (st, _) in res.states.items()})
                total.alerts += res.alerts
                total.dead_letters += res.dead_letters
        return total, store

    late_booms = [m for m in msgs if not is_boom(m) or m.offset >= cut]
    got, store = switched(late_booms)
    want, ref = switched([m for m in late_booms if not is_boom(m)])
    assert encoded(store) == encoded(ref) and plain(got.alerts) == plain(want.alerts)
    assert len([d for d in got.dead_letters if d["reason"] == PROCESSING_ERROR]) >= 2


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text")


class RaisesUnprintable(Detector):
    id = "test.unprintable"
    describe = Describe("测试", "test")

    def learn_one(self, state: Any, event: Event) -> Any:
        if event.event_id.startswith("boom-"):
            raise Unprintable()
        return state

    def score_one(self, state: Any, event: Event) -> list[Signal]:
        return []


def test_an_exception_that_cannot_be_printed_is_still_a_dead_letter() -> None:
    got, _ = run(processor(RaisesUnprintable()), messages(history()), 1000)
    failed = [d for d in got.dead_letters if d["reason"] == PROCESSING_ERROR]
    assert len(failed) == 4
    assert failed[0]["detail"] == "Unprintable in detector test.unprintable: (its text could not be read)"
