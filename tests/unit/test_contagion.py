"""Linked-entity contagion: a source's level reaches its dependents through the links topic."""

from __future__ import annotations

import datetime as dt
import json
import random
from typing import Any

import msgspec
import pytest

from detectors.engine import EntityState, decode_state, encode_state
from detectors.factory import build_processor
from detectors.pipeline import BatchProcessor, RawMessage
from detectors.risk import RiskConfig, RiskScorer
from detectors.risk.contagion import CONTAGION_RULE, LinkMessage, encode_link, shown_index
from detectors.risk.state import RiskState
from detectors.rules import load_pack
from riskflow.core.alerts import alert_id
from riskflow.core.schema import parse_event
from tests.support.contagion_events import (
    fund_registered,
    lost_contact,
    offline,
    quiet_day,
    raw,
    tick,
    ticks,
)

LINKS = "links"


def contagion(alerts):
    return [a for a in alerts if a.rule_id == CONTAGION_RULE]


def test_manager_red_raises_its_fund_bounded_and_explained() -> None:
    res = offline([fund_registered("PF-9", "PFM-1"), lost_contact("PFM-1")])
    (a,) = contagion(res.alerts)
    mgr_level = next(x for x in res.alerts if x.rule_id == "risk.level")
    assert mgr_level.entity_id == "PFM-1" and mgr_level.risk_level == "red"
    assert a.alert_id == alert_id(CONTAGION_RULE, "PF-9", "PFM-1")
    assert (a.entity_id, a.entity_kind, a.region) == ("PF-9", "private_fund", "330200")
    assert a.risk_index == round(0.75 * mgr_level.risk_index, 1) and a.risk_level == "orange"
    assert a.evidence["explanation_en"] == "raised by manager PFM-1's red level"
    assert a.evidence["explanation_zh"] == "受管理人PFM-1红色等级传导"
    assert a.revision == 1 and a.title_zh == "关联风险传导（管理人）" and a.risk_tags == [CONTAGION_RULE]
    assert (a.evidence["from"], a.evidence["to"]) == ("green", "orange") and a.severity == "high"
    assert a.event_time == mgr_level.event_time.replace("+08:00", "+00:00").replace("T10", "T02")
    # Contagion feeds the fund's shown index and level; its own index stays apart (one hop).
    r = res.states["PF-9"][0].risk
    assert (r.index, r.level) == (a.risk_index, "orange")
    assert (r.own_level, r.own_seq, r.rules) == ("green", 0, {})
    assert res.states["PFM-1"][0].risk.dependents == ["manager|PF-9"]


def test_contagion_shows_in_the_dependents_own_alerts_and_level_change() -> None:
    """A fund raised to yellow by its manager and at yellow on its own is orange: its own
    alerts carry the raised index, its level alert says why, its tags name the contagion."""
    cfg = {"contagion_factors": {"manager": 0.5}}
    bp = build_processor(load_pack(), anomaly=False, risk=RiskConfig(**cfg))  # type: ignore[arg-type]
    store: dict[str, EntityState] = {}
    got = []
    ad = raw("advertisement.published", {"channel": "w", "guaranteed": True}, "PF-9", "private_fund", 3, "ad")
    for i, v in enumerate([fund_registered("PF-9", "PFM-1"), lost_contact("PFM-1"), ad]):
        res = bp.process([RawMessage(v, "f", 0, i, None)], store.get)
        store.update({k: st for k, (st, _) in res.states.items()})
        got += res.alerts
    (push,) = contagion(got)
    assert push.risk_level == "yellow" and push.risk_index == round(0.5 * 86.5, 1)
    own = next(a for a in got if a.entity_id == "PF-9" and a.rule_id not in (CONTAGION_RULE, "risk.level"))
    level = next(a for a in got if a.entity_id == "PF-9" and a.rule_id == "risk.level")
    r = store["PF-9"].risk
    assert r.own_level == "yellow" and r.level == "orange"
    assert own.risk_level == "orange" and own.risk_index == r.index
    assert own.risk_tags[:2] == [own.rule_id, CONTAGION_RULE]
    assert level.alert_id == alert_id("risk.level", "PF-9", "1:yellow>orange")
    assert level.evidence["raised_by"] == "PFM-1" and level.evidence["own_index"] < 60 <= level.risk_index
    assert level.evidence["explanation_en"] == "raised by manager PFM-1's red level"
    assert level.risk_tags[0] == CONTAGION_RULE
    # Bounded: however strong the source, contagion alone stops below red.
    assert r.index < 80


def test_affiliates_raise_each_other_once_without_amplification() -> None:
    """A <-> B related parties, both orange on their own: each is raised by the other's OWN index
    (pushes never carry a raised index), the message exchange ends, and no seed changes the end."""

    def flow(a: str, b: str) -> bytes:
        payload = {"direction": "out", "amount": 1e6, "counterparty_id": b, "related_party": True}
        return raw("flow.transfer", payload, a, "enterprise", 0, f"t{a}")

    flows = [flow("A", "B"), flow("B", "A")]
    notices = [raw("amac.notice", {"notice": n}, e, "private_fund_manager", 1, f"{n}{e}")
               for e in ("A", "B") for n in ("abnormal_operation", "false_filing")]  # fmt: skip
    finals = []
    for seed in range(6):
        _, store = live([*flows, *notices], seed, with_states=True)
        finals.append({k: (s.risk.index, s.risk.level, s.risk.own_level) for k, s in store.items()})
    assert all(f == finals[0] for f in finals)
    for me, other in (("A", "B"), ("B", "A")):
        r, o = store[me].risk, store[other].risk
        own = RiskScorer(RiskConfig()).index_of(r.rules)
        c = min(79.9, 0.5 * o.trans_index)
        assert r.own_level == "orange" and r.index == shown_index(own, c, RiskConfig()) and r.index > own
        assert [x.source for x in r.raised_by] == [other] and r.raised_by[0].index == o.trans_index


def test_cap_keeps_contagion_below_red() -> None:
    res = offline([fund_registered("PF-9", "PFM-1"), lost_contact("PFM-1")], contagion_factors={"manager": 1.0})
    (a,) = contagion(res.alerts)
    assert a.risk_index == 79.9 and a.risk_level == "orange"


def test_below_the_contagion_level_nothing_spreads() -> None:
    ad = raw("advertisement.published", {"channel": "w", "guaranteed": True}, "PFM-1", "private_fund_manager", 1, "a")
    res = offline([fund_registered("PF-9", "PFM-1"), ad])
    assert any(a.rule_id == "risk.level" and a.risk_level == "yellow" for a in res.alerts)
    assert contagion(res.alerts) == []


def test_source_falling_back_updates_the_same_alert() -> None:
    history = [fund_registered("PF-9", "PFM-1"), lost_contact("PFM-1")]
    history.append(quiet_day("PFM-1", "private_fund_manager", "q", 27))
    res = offline(history, half_life_days=3)
    # Offline, the fund's link reaches the manager before the next event: both transitions show.
    a = contagion(res.alerts)[-1]
    assert a.revision == 2 and a.risk_level == "green"
    assert a.evidence["explanation_en"] == "manager PFM-1 is back at green level"
    # The same, one message per batch: the fund sees both transitions under one alert id.
    bp = build_processor(load_pack(), anomaly=False, risk=RiskConfig(half_life_days=3))
    store: dict[str, EntityState] = {}
    got = []
    for i, v in enumerate([*history, *ticks(history)]):
        r = bp.process([RawMessage(v, "f", 0, i, None)], store.get)
        store.update({k: st for k, (st, _) in r.states.items()})
        got += contagion(r.alerts)
    assert [(x.revision, x.risk_level) for x in got] == [(1, "orange"), (2, "green")]
    assert {x.alert_id for x in got} == {a.alert_id}
    assert [(x.revision, x.risk_level) for x in contagion(res.alerts)] == [(1, "orange"), (2, "green")]


def test_parent_and_related_party_links() -> None:
    sub = raw("entity.registered", {"name": "S", "registered_capital": 1e6, "legal_rep": "L", "address": "A",
                                    "parent_id": "PFM-1"}, "ENT-2", "enterprise", 0, "r1")  # fmt: skip
    flow = raw("flow.transfer", {"direction": "out", "amount": 5e6, "counterparty_id": "ENT-3", "related_party": True},
               "PFM-1", "private_fund_manager", 0, "t1")  # fmt: skip
    res = offline([sub, flow, lost_contact("PFM-1")])
    by_target = {a.entity_id: a for a in contagion(res.alerts)}
    assert set(by_target) == {"ENT-2", "ENT-3"}
    assert by_target["ENT-2"].evidence["relation"] == "parent" and by_target["ENT-2"].risk_level == "yellow"
    # ENT-3 has no event of its own: kind and region are unknown, the alert still names it.
    assert by_target["ENT-3"].evidence["explanation_en"] == "raised by related party PFM-1's red level"
    assert by_target["ENT-3"].region == ""
    # Affiliates both ways: ENT-3's risk would reach PFM-1 too (PFM-1 announced itself to ENT-3).
    assert res.states["ENT-3"][0].risk.dependents == ["related_party|PFM-1"]


def live(values: list[bytes], order_seed: int, with_states: bool = False) -> Any:
    """The live path: links go out in ``BatchResult.links`` and come back, in a shuffled order,
    interleaved with the remaining events (per entity, events keep their order), each before
    the partition's time passes the time it applies at (``at``; a link: ``at`` plus the delay,
    when the push answering it applies) -- in time, as a links topic that keeps up delivers."""
    delay = RiskConfig().contagion_delay
    bp = build_processor(load_pack(), anomaly=False, links_topic=LINKS)
    rng = random.Random(order_seed)
    store: dict[str, EntityState] = {}
    queue = [RawMessage(v, "events", 0, i, None) for i, v in enumerate([*values, *ticks(values)])]
    alerts = []
    read = 0  # links read so far: their offsets, in the order they are read (one partition)
    while queue:
        take = rng.randint(1, len(queue))
        # a batch spans less event time than the delay (as the backtest's windows): the links it
        # makes can still come back in time
        times = [parse_event(q.value).ts for q in queue[:take] if q.topic != LINKS]
        take = next((i for i, q in enumerate(queue[:take]) if q.topic != LINKS
                     and parse_event(q.value).ts >= times[0] + delay), take) if times else take  # fmt: skip
        batch, queue = queue[:take], queue[take:]
        for i, m in enumerate(batch):
            if m.topic == LINKS:
                batch[i], read = m._replace(offset=read), read + 1
        res = bp.process(batch, store.get)
        store.update({k: s for k, (s, _) in res.states.items()})
        alerts += res.alerts
        for m in res.links:
            due = m.at + (delay if m.kind == "link" else 0.0)
            late = (i for i, q in enumerate(queue) if q.topic != LINKS and parse_event(q.value).ts > due)
            pos = rng.randint(0, next(late, len(queue)))
            queue.insert(pos, RawMessage(encode_link(m), LINKS, 0, 0, m.to.encode()))
    return (alerts, store) if with_states else alerts


def summary(alerts) -> dict[str, tuple[int, str, float]]:
    best: dict[str, tuple[int, str, float]] = {}
    for a in alerts:
        if a.alert_id not in best or a.revision > best[a.alert_id][0]:
            best[a.alert_id] = (a.revision, a.risk_level, a.risk_index)
    return best


def test_live_and_offline_agree_whatever_the_message_timing() -> None:
    history = [
        lost_contact("PFM-1", "m1", 1),  # the manager turns red before its fund announces itself
        fund_registered("PF-9", "PFM-1", "f1", 2),
        fund_registered("PF-8", "PFM-1", "f2", 2),
        quiet_day("PFM-1", "private_fund_manager", "q1", 20),
        quiet_day("PFM-1", "private_fund_manager", "q2", 27),
        quiet_day("PF-9", "private_fund", "q3", 28),
    ]
    off = offline(history)
    want = summary(off.alerts)
    assert len(contagion(off.alerts)) >= 2
    shown = {k: (s.risk.index, s.risk.level) for k, (s, _) in off.states.items()}
    assert shown["PF-8"][0] > 0  # raised by the manager's orange level (decayed)
    for seed in range(8):
        alerts, store = live(history, seed, with_states=True)
        assert summary(alerts) == want, seed
        # Once every message is in, each entity shows the same index and level.
        assert {k: (s.risk.index, s.risk.level) for k, s in store.items()} == shown, seed


def test_two_sources_the_strongest_counts_whatever_the_order() -> None:
    """ENT-2 hangs off a parent and an affiliate that both turn red: the stronger contribution
    (parent 0.6 > related party 0.5) sets its level; each source's alert is the same in any order."""
    sub = raw("entity.registered", {"name": "S", "registered_capital": 1e6, "legal_rep": "L", "address": "A",
                                    "parent_id": "P-1"}, "ENT-2", "enterprise", 0, "r1")  # fmt: skip
    flow = raw("flow.transfer", {"direction": "out", "amount": 5e6, "counterparty_id": "ENT-2", "related_party": True},
               "P-2", "private_fund_manager", 0, "t1")  # fmt: skip
    history = [sub, flow, lost_contact("P-1", "m1", 1), lost_contact("P-2", "m2", 2)]
    off = offline(history)
    want = summary(off.alerts)
    r = off.states["ENT-2"][0].risk
    assert {e.source for e in r.raised_by} == {"P-1", "P-2"}
    parent = next(a for a in contagion(off.alerts) if a.evidence["source"] == "P-1")
    # The parent's share, decayed from its transition (day 1) to the latest push (day 2).
    assert r.index == pytest.approx(parent.risk_index * 0.5 ** (1 / 30), abs=0.1)
    assert r.level == parent.risk_level == "yellow"
    for seed in range(8):
        alerts, store = live(history, seed, with_states=True)
        assert summary(alerts) == want, seed
        assert (store["ENT-2"].risk.index, store["ENT-2"].risk.level) == (r.index, r.level), seed


def test_dependents_are_bounded_independently_of_arrival_order() -> None:
    cfg = RiskConfig(max_dependents=3)
    funds = [fund_registered(f"PF-{i}", "PFM-1", f"f{i}") for i in range(8)]
    a = offline([*funds, lost_contact("PFM-1")], max_dependents=3)
    b = offline([*reversed(funds), lost_contact("PFM-1")], max_dependents=3)
    kept = a.states["PFM-1"][0].risk.dependents
    assert kept == b.states["PFM-1"][0].risk.dependents and len(kept) == cfg.max_dependents
    # Every kept dependent hears of the red level, whatever the order. (A dependent pushed to and
    # then evicted keeps its alert: beyond the bound, which extra ones get one depends on order.)
    for res in (a, b):
        targets = {x.entity_id for x in contagion(res.alerts)}
        assert {k.partition("|")[2] for k in kept} <= targets


def test_link_announced_once_per_target() -> None:
    bp = build_processor(load_pack(), anomaly=False, links_topic=LINKS)
    res = bp.process([RawMessage(fund_registered("PF-9", "PFM-1", f"f{i}", i), "e", 0, i, None) for i in range(3)],
                     {}.get)  # fmt: skip
    at = parse_event(fund_registered("PF-9", "PFM-1")).ts
    assert res.links == [LinkMessage(kind="link", to="PFM-1", other="PF-9", relation="manager", at=at)]
    assert isinstance(res.states["PF-9"][0].risk, RiskState)


def test_bad_link_message_is_dead_lettered() -> None:
    bp: BatchProcessor = build_processor(load_pack(), anomaly=False, links_topic=LINKS)
    res = bp.process([RawMessage(b'{"kind": "nope"}', LINKS, 2, 7, b"X")], {}.get)
    (d,) = res.dead_letters
    assert d["reason"] == "malformed_json" and d["topic"] == LINKS and d["offset"] == 7
    assert parse_event(lost_contact("PFM-1")).entity_id == "PFM-1"


def test_a_redelivered_push_adds_nothing() -> None:
    """After a crash or a rebalance the links topic is read again from the committed offset:
    a push whose transition the dependent already holds must not come out again as a copy of
    its ``risk.contagion`` alert with the same id and revision but other content (it said
    "from orange" the second time: issue 8, seen in tests/reliability/test_reliability_rebalance.py)."""
    bp = build_processor(load_pack(), anomaly=False, links_topic=LINKS)
    store: dict[str, EntityState] = {}

    def run(batch: list[RawMessage]) -> Any:
        res = bp.process(batch, store.get)
        store.update({k: s for k, (s, _) in res.states.items()})
        return res

    pushes: list[LinkMessage] = []
    queue = [RawMessage(fund_registered("PF-9", "PFM-1"), "events", 0, 0, None)]
    queue.append(RawMessage(lost_contact("PFM-1"), "events", 0, 1, None))
    while queue:  # deliver every link message once, as the links topic would
        res = run([queue.pop(0)])
        pushes += [m for m in res.links if m.kind == "push"]
        queue += [RawMessage(encode_link(m), LINKS, 0, 0, m.to.encode()) for m in res.links if m.kind == "link"]
    (push,) = pushes
    wire = RawMessage(encode_link(push), LINKS, 0, 0, b"PF-9")
    first = run([wire, RawMessage(tick([lost_contact("PFM-1")]), "events", 0, 2, None)])
    (a,) = contagion(first.alerts)
    assert (a.evidence["from"], a.evidence["to"]) == ("green", "orange")
    held = store["PF-9"].risk
    again = run([wire])  # the same record, delivered again
    assert contagion(again.alerts) == []
    assert store["PF-9"].risk == held


def test_a_source_linked_twice_keeps_the_stronger_relation_whatever_the_order() -> None:
    """A fund whose manager is also its parent company hears of the manager's fall through both
    links, at the same transition: the stronger relation (manager, 0.75 > parent 0.6) counts,
    whichever push arrives first."""
    sub = raw("entity.registered", {"name": "F", "registered_capital": 1e6, "legal_rep": "L", "address": "A",
                                    "parent_id": "PFM-1"}, "PF-9", "private_fund", 0, "r1")  # fmt: skip
    history = [sub, fund_registered("PF-9", "PFM-1", "f1", 0), lost_contact("PFM-1", "m1", 1)]
    history.append(quiet_day("PF-9", "private_fund", "q1", 2))
    off = offline(history)
    (a,) = contagion(off.alerts)
    assert a.evidence["relation"] == "manager"
    want = summary(off.alerts)
    relations = set()
    for seed in range(12):
        alerts = live(history, seed)
        assert summary(alerts) == want, seed
        relations |= {x.evidence["relation"] for x in contagion(alerts)}
    assert relations == {"manager"}


def _at(value: bytes, minutes: float) -> bytes:
    """The event ``value`` moved ``minutes`` later."""
    d = json.loads(value)
    d["event_time"] = (dt.datetime.fromisoformat(d["event_time"]) + dt.timedelta(minutes=minutes)).isoformat()
    return json.dumps(d).encode()


def _plain(alerts: list[Any]) -> list[dict[str, Any]]:
    out = []
    for a in alerts:
        d = msgspec.to_builtins(a)
        d.pop("detected_at")
        out.append(d)
    return out


def _ad(n: str, minutes: float) -> bytes:
    payload = {"channel": "w", "guaranteed": n in ("ad2", "ad3")}
    ad = raw("advertisement.published", payload, "PF-9", "private_fund", 1, n)
    return _at(ad, minutes)


class _Store(dict[str, EntityState]):
    """A worker's table: ``run`` processes a batch and writes its states back."""

    def run(self, bp: BatchProcessor, msgs: list[RawMessage]) -> Any:
        res = bp.process(msgs, self.get)
        self.update({k: s for k, (s, _) in res.states.items()})
        return res


def _fall(store: _Store) -> LinkMessage:
    """Fund PF-9 (partition 0) links to its manager PFM-1 (partition 1), which falls: its push."""
    bp = build_processor(load_pack(), anomaly=False, links_topic=LINKS)
    res = store.run(bp, [RawMessage(fund_registered("PF-9", "PFM-1", "f1", 1), "events", 0, 0, None)])
    store.run(bp, [RawMessage(encode_link(m), LINKS, 0, 0, m.to.encode()) for m in res.links])
    (push,) = store.run(bp, [RawMessage(lost_contact("PFM-1", "m1", 1), "events", 1, 0, None)]).links
    return push


def test_a_push_lands_at_the_same_place_among_the_dependents_events_whatever_its_arrival() -> None:
    """The fund advertises before and after its manager's fall: the push (applies from the fall
    plus an hour) lands right before the fund's first event after that, wherever it arrived
    before then -- the fund's alerts are identical, and the one after it carries the contagion."""
    store = _Store()
    run = store.run
    push = _fall(store)
    assert push.at == parse_event(lost_contact("PFM-1", "m1", 1)).ts + 3600
    fund_events = [_ad("ad1", 20), _ad("ad2", 40), _ad("ad3", 80), _ad("ad4", 120)]
    start = dict(store)
    outcomes = []
    for pos in range(3):  # before ad1, ad2 or ad3 (the first event after the push's time)
        store.clear()
        store.update({k: decode_state(encode_state(s)) for k, s in start.items()})
        bp = build_processor(load_pack(), anomaly=False, links_topic=LINKS)
        bp.rebuild(store.values())
        msgs = [RawMessage(v, "events", 0, 1 + i, None) for i, v in enumerate(fund_events)]
        msgs.insert(pos, RawMessage(encode_link(push), LINKS, 0, 1, b"PF-9"))
        alerts = []
        for m in msgs:  # one message per batch, as a live worker may take them
            alerts += run(bp, [m]).alerts
        outcomes.append(_plain(alerts))
    assert outcomes[1] == outcomes[0] and outcomes[2] == outcomes[0]
    order = [(a["rule_id"], a["event_time"][11:16]) for a in outcomes[0]]
    landed = order.index((CONTAGION_RULE, "02:00"))  # (the fall's event time, UTC)
    assert order[:landed] and all(t < "11:00" for _, t in order[:landed])  # ad1, ad2: before its time
    after = [a for a in outcomes[0][landed + 1 :] if a["rule_id"] != "risk.level"]
    assert after and all(CONTAGION_RULE in a["risk_tags"] for a in after)


def test_a_pending_push_lands_after_a_restart() -> None:
    """A push held in the state is indexed again by :meth:`BatchProcessor.rebuild`: after a
    restart, the partition's time passing it lands it (the fund has no further event)."""
    store = _Store()
    run = store.run
    push = _fall(store)
    bp = build_processor(load_pack(), anomaly=False, links_topic=LINKS)
    bp.rebuild(store.values())
    assert run(bp, [RawMessage(encode_link(push), LINKS, 0, 1, b"PF-9")]).alerts == []
    assert store["PF-9"].pushes == [push]
    restarted = build_processor(load_pack(), anomaly=False, links_topic=LINKS)
    restarted.rebuild([decode_state(encode_state(s)) for s in store.values()])
    other = _at(quiet_day("ENT-7", "enterprise", "q7", 1), 90)
    (a,) = run(restarted, [RawMessage(other, "events", 0, 1, None)]).alerts
    assert (a.rule_id, a.entity_id, a.risk_level) == (CONTAGION_RULE, "PF-9", "orange")
    assert store["PF-9"].pushes == []
