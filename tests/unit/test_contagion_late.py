"""A contagion push that arrives after its dependent's own events passed its time (its source's
partition or the links topic lagging more than ``contagion_delay_hours``) is re-placed in event
time: the dependent ends as if the push had come in time, and the alerts it changed are
corrected (docs/risk.md, "Timing")."""

from __future__ import annotations

from typing import Any

import msgspec

from detectors.engine import EntityState, decode_state, encode_state
from detectors.factory import build_processor
from detectors.lateness import decode_late, encode_late
from detectors.pipeline import BEYOND_BOUND, CONTAGION_LATE_OUTCOMES, LATE_PUSH, REPLACED, BatchProcessor, RawMessage
from detectors.risk import RiskConfig
from detectors.risk.contagion import CONTAGION_RULE, LinkMessage, encode_link
from detectors.rules import load_pack
from riskflow.core import metrics
from riskflow.core.schema import parse_event
from tests.support.contagion_events import LINKS, _ad, _at, _fall, _plain, _Store, fund_registered, lost_contact, raw
from tests.support.reliability_tools import Boom

#: The fund's events: two before the push's time (the manager's fall plus an hour), two after it.
FUND = [_ad("ad1", 20), _ad("ad2", 40), _ad("ad3", 80), _ad("ad4", 120)]
#: Bookkeeping of arrival (offsets, lane) and of the way back: not part of the evaluated state.
_ARRIVAL = ("offsets", "lane", "lane_watermark", "rewind", "revised", "pushes")


def digest(st: EntityState) -> bytes:
    """The entity's evaluated state (detectors, risk, dedup ring, watermark, timers)."""
    d = msgspec.structs.asdict(decode_state(encode_state(st)))
    return msgspec.msgpack.encode({k: v for k, v in d.items() if k not in _ARRIVAL})


def last_revisions(alerts: list[Any]) -> dict[str, dict[str, Any]]:
    """Per alert id, its last revision as a sink keeps it, without the revision number, the wall
    clock and the note of a correction."""
    best: dict[str, Any] = {}
    for a in alerts:
        if a.alert_id not in best or a.revision > best[a.alert_id].revision:
            best[a.alert_id] = a
    out = {}
    for aid, a in best.items():
        if a.evidence.get("withdrawn"):
            continue  # the re-placed history does not give it
        d = msgspec.to_builtins(a)
        d.pop("detected_at")
        d.pop("revision")
        d["evidence"].pop("replaced", None)
        out[aid] = d
    return out


def run(push_pos: int, **cfg: Any) -> tuple[list[Any], _Store, list[Any], BatchProcessor]:
    """The fund's events, one per batch, with its manager's push read at ``push_pos``."""
    store = _Store()
    push: LinkMessage = _fall(store)
    bp = build_processor(load_pack(), anomaly=False, links_topic=LINKS, risk=RiskConfig(**cfg))
    bp.rebuild(store.values())
    msgs = [RawMessage(v, "events", 0, 1 + i, None) for i, v in enumerate(FUND)]
    msgs.insert(push_pos, RawMessage(encode_link(push), LINKS, 0, 1, b"PF-9"))
    alerts, results = [], []
    for m in msgs:
        res = store.run(bp, [m])
        alerts += res.alerts
        results.append(res)
    return alerts, store, results, bp


def test_a_late_push_is_replaced_the_end_equals_the_push_in_time() -> None:
    in_time, store_in, _, _ = run(2)  # read before ad3, the fund's first event after its time
    late, store_late, results, _ = run(4)  # read after ad4: the fund's own time passed it
    assert results[-1].contagion_late == {REPLACED: 1} and not results[-1].late
    assert digest(store_late["PF-9"]) == digest(store_in["PF-9"])
    assert last_revisions(late) == last_revisions(in_time)
    # What the fund sent for ad3 before the push came lacked the contagion: corrected; its own
    # level change at ad3 (yellow -> orange), which the push makes in time, withdrawn.
    corrected = [a for a in results[-1].alerts if "replaced" in a.evidence]
    assert all(a.evidence["replaced"]["source"] == "PFM-1" for a in corrected)
    withdrawn = [a for a in corrected if a.evidence.get("withdrawn")]
    assert [(a.rule_id, a.evidence["before"]["to"]) for a in withdrawn] == [("risk.level", "orange")]
    revised = [a for a in corrected if not a.evidence.get("withdrawn")]
    assert revised and all(CONTAGION_RULE in a.risk_tags for a in revised)
    first = {a.alert_id: a.revision for a in late[: -len(results[-1].alerts)]}
    assert all(a.revision > first[a.alert_id] for a in corrected)
    # The push's own alert is the one sent in time.
    assert [a for a in late if a.rule_id == CONTAGION_RULE] == [
        a for a in results[-1].alerts if a.rule_id == CONTAGION_RULE
    ]


def test_a_late_push_redelivered_changes_nothing() -> None:
    _, store, _, bp = run(4)
    before = digest(store["PF-9"])
    again = store["PF-9"].rewind
    assert again is not None
    push = next(s.msg for s in again.steps if s.msg is not None and s.msg.kind == "push")
    res = store.run(bp, [RawMessage(encode_link(push), LINKS, 0, 9, b"PF-9")])
    assert res.alerts == [] and not res.contagion_late and digest(store["PF-9"]) == before


def test_a_correction_is_superseded_by_the_next_natural_revision() -> None:
    """A later revision of a corrected alert still supersedes the correction at the sinks."""
    _, store, results, bp = run(4)
    corrected = {a.alert_id: a.revision for a in results[-1].alerts if "replaced" in a.evidence}
    ad5 = _at(
        raw("advertisement.published", {"channel": "w", "guaranteed": True}, "PF-9", "private_fund", 1, "ad5"), 150
    )
    res = store.run(bp, [RawMessage(ad5, "events", 0, 9, None)])
    again = [a for a in res.alerts if a.alert_id in corrected]
    assert again and all(a.revision > corrected[a.alert_id] for a in again)


def test_beyond_the_bound_a_late_push_lands_at_once_and_is_ledgered() -> None:
    """With fewer steps kept than the fund took since the push's time (or none), the push lands
    at once: counted as beyond the bound and written to the late-event ledger."""
    for cfg in ({"contagion_replace_steps": 0}, {"contagion_replace_hours": 0.5}):
        *_, results, _ = run(4, **cfg)
        res = results[-1]
        assert res.contagion_late == {BEYOND_BOUND: 1}, cfg
        (rec,) = res.late
        rec = decode_late(encode_late(rec))
        assert (rec.event_type, rec.entity_id, rec.beyond_lateness) == (LATE_PUSH, "PF-9", True)
        assert rec.late_by_seconds == 3600.0  # ad4 (12:00) - the push's time (11:00)
        assert [a.alert_id for a in res.alerts] == rec.alerts and res.alerts[0].rule_id == CONTAGION_RULE
        assert not any("replaced" in a.evidence for a in res.alerts)


def test_the_outcomes_are_the_metrics_labels() -> None:
    assert metrics.CONTAGION_LATE_OUTCOMES == CONTAGION_LATE_OUTCOMES


def test_a_failure_after_a_replacement_in_the_batch_keeps_the_replacement() -> None:
    """The undo journal applies the re-placement again when a later message of the batch fails."""
    outcomes = []
    for boom in (False, True):
        store = _Store()
        push = _fall(store)
        bp = build_processor(load_pack(), anomaly=False, links_topic=LINKS)
        bp.engine.detectors = [*bp.engine.detectors, Boom()]  # raises on an event "boom-..."
        bp.rebuild(store.values())
        for i, v in enumerate(FUND):
            store.run(bp, [RawMessage(v, "events", 0, 1 + i, None)])
        batch = [RawMessage(encode_link(push), LINKS, 0, 1, b"PF-9")]
        if boom:
            batch.append(RawMessage(_ad("boom-1", 150), "events", 0, 9, None))
        res = store.run(bp, batch)
        assert [d["reason"] for d in res.dead_letters] == (["processing_error"] if boom else [])
        assert res.contagion_late == {REPLACED: 1}
        outcomes.append((encode_state(store["PF-9"]), _plain(res.alerts)))
    assert outcomes[1] == outcomes[0]


def test_a_link_read_before_an_earlier_fall_gets_the_push_the_backtest_gives() -> None:
    """A fund registered an hour after its manager's fall, whose link reaches the manager before
    the fall does (the manager's partition lagging): the fall's push applies from the link plus
    the delay, as offline (where the link, later in event time, is answered by the push)."""
    fall = lost_contact("PFM-1", "m1", 1)
    reg = _at(fund_registered("PF-9", "PFM-1", "f1", 1), 60)
    off = build_processor(load_pack(), anomaly=False).process(
        [RawMessage(fall, "i", 0, 0, None), RawMessage(reg, "f", 0, 0, None)], {}.get
    )
    (want,) = off.states["PF-9"][0].pushes
    assert want.at == parse_event(reg).ts + 3600
    store = _Store()
    bp = build_processor(load_pack(), anomaly=False, links_topic=LINKS)
    links = store.run(bp, [RawMessage(reg, "f", 0, 0, None)]).links
    store.run(bp, [RawMessage(encode_link(m), LINKS, 1, i, m.to.encode()) for i, m in enumerate(links)])
    (push,) = store.run(bp, [RawMessage(fall, "i", 1, 0, None)]).links
    assert push == want
