"""Linked-entity contagion 关联风险传导: a manager's, parent's or related party's level reaches its dependents.

Links come from the events themselves:

- ``fund.registered`` on a fund names its ``manager_id``: the manager's risk reaches the fund;
- ``entity.registered`` with ``parent_id``: the parent's risk reaches the subsidiary;
- ``flow.transfer`` with ``related_party`` and a ``counterparty_id``: the two are affiliates,
  each one's risk reaches the other.

Entities live on different partitions, so the effects travel as small messages
on an internal topic keyed by the entity they are for (``riskflow.risk-links``):
a ``link`` tells a source that a dependent exists, a ``push`` tells a dependent
the source's level. The source sends a push on each of its level transitions
once it has ever reached ``contagion_from`` (orange), and on each new link if
it has; the dependent turns it into a ``risk.contagion`` alert:

- id ``alert_id("risk.contagion", dependent, source)`` -- one alert per (dependent, source),
- ``revision`` = the source's transition count, so sinks keep the latest,
- ``risk_index`` = ``min(contagion_cap, factor[relation] x source index at the transition)``
  and ``risk_level`` its level: bounded (one hop, never red by default) and explained
  ("raised by manager PFM-1's red level").

Contagion does not feed the dependent's own index, so it cannot cascade and the
dependent's own alerts stay independent of message timing. Live, a push may
arrive before or after the dependent's own events and a link may arrive after
several transitions of its source; the offline path (``BatchProcessor`` without a
links topic) delivers them after each batch. Both therefore give the same
contagion alert ids and the same highest revision and level of each; live may
show more intermediate revisions, and ``affected_people``/``affected_amount``
(the dependent's own, at the time the push arrives) may differ.

>>> msg = LinkMessage(kind="push", to="PF-1", other="PFM-1", relation="manager", level="red", index=90.0, seq=2)
>>> decode_link(encode_link(msg)) == msg
True
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import msgspec

from detectors.risk.config import LEVEL_NAMES, LEVEL_RANK, LEVEL_SEVERITY, RiskConfig
from detectors.risk.state import RiskState
from riskflow.alerts import Alert, alert_id
from riskflow.schema import Event

CONTAGION_RULE = "risk.contagion"
RELATIONS: dict[str, tuple[str, str]] = {
    # relation: (English noun of the source, Chinese noun of the source)
    "manager": ("manager", "管理人"),
    "parent": ("parent company", "母公司"),
    "related_party": ("related party", "关联方"),
}


class LinkMessage(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A message on the internal links topic, keyed by ``to``.

    ``kind="link"``: entity ``other`` depends on ``to`` through ``relation``.
    ``kind="push"``: source ``other`` (of kind ``source_kind``) moved to ``level``
    with ``index`` at event time ``ts``, its ``seq``-th level transition.
    """

    kind: str
    to: str
    other: str
    relation: str
    source_kind: str = ""
    level: str = ""
    index: float = 0.0
    seq: int = 0
    ts: float = 0.0


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(LinkMessage)


def encode_link(msg: LinkMessage) -> bytes:
    return _encoder.encode(msg)


def decode_link(data: bytes) -> LinkMessage:
    """Decode a links-topic message (raises ``msgspec.DecodeError`` / ``ValidationError``)."""
    msg = _decoder.decode(data)
    if msg.kind not in ("link", "push") or msg.relation not in RELATIONS or not msg.to or not msg.other:
        raise msgspec.ValidationError(f"not a RiskFlow link message: {msg.kind!r} {msg.relation!r}")
    return msg


def _rank_key(entry: str) -> bytes:
    return hashlib.blake2b(entry.encode(), digest_size=8).digest()


def add_dependent(r: RiskState, relation: str, entity_id: str, limit: int) -> bool:
    """Remember a dependent; beyond ``limit`` keep those with the smallest hash (order-independent).
    True if it is (now) remembered."""
    entry = f"{relation}|{entity_id}"
    if entry in r.dependents:
        return True
    deps = sorted([*r.dependents, entry], key=_rank_key)[:limit]
    r.dependents = deps
    return entry in deps


def push_for(r: RiskState, source: str, source_kind: str, entry: str) -> LinkMessage:
    relation, _, dep = entry.partition("|")
    return LinkMessage(
        kind="push",
        to=dep,
        other=source,
        relation=relation,
        source_kind=source_kind,
        level=r.level,
        index=r.trans_index,
        seq=r.seq,
        ts=r.trans_ts,
    )


def links_from_event(r: RiskState, event: Event, cfg: RiskConfig) -> list[LinkMessage]:
    """Links announced by this event (each target once), and pushes to a new affiliate."""
    et = event.event_type
    p: Any = event.payload
    me = event.entity_id
    target = relation = None
    if et == "fund.registered" and p.manager_id != me:
        target, relation = p.manager_id, "manager"
    elif et == "entity.registered" and p.parent_id and p.parent_id != me:
        target, relation = p.parent_id, "parent"
    elif et == "flow.transfer" and p.related_party and p.counterparty_id and p.counterparty_id != me:
        target, relation = p.counterparty_id, "related_party"
    if target is None or relation is None:
        return []
    key = f"{relation}|{target}"
    digest = _rank_key(key)
    seen = r.announced
    if len(seen) >= 8 * cfg.max_links or any(seen[i : i + 8] == digest for i in range(0, len(seen), 8)):
        return []
    r.announced = seen + digest
    out = [LinkMessage(kind="link", to=target, other=me, relation=relation)]
    if relation == "related_party" and add_dependent(r, relation, target, cfg.max_dependents) and r.hot:
        out.append(push_for(r, me, event.entity_kind, key))  # affiliates: my risk reaches them too
    return out


def pushes_on_transition(r: RiskState, source: str, source_kind: str) -> list[LinkMessage]:
    return [push_for(r, source, source_kind, entry) for entry in r.dependents] if r.hot else []


def on_link(r: RiskState, source: str, source_kind: str, msg: LinkMessage, cfg: RiskConfig) -> list[LinkMessage]:
    """A dependent announced itself to ``source``: remember it, and tell it the current level if hot."""
    entry = f"{msg.relation}|{msg.other}"
    if add_dependent(r, msg.relation, msg.other, cfg.max_dependents) and r.hot:
        return [push_for(r, source, source_kind, entry)]
    return []


def contagion_alert(
    msg: LinkMessage,
    cfg: RiskConfig,
    *,
    entity_kind: str,
    region: str,
    people: int,
    amount: float,
    clock: Callable[[], str],
) -> Alert:
    """The dependent's ``risk.contagion`` alert for a push."""
    from detectors.risk.scorer import iso  # the scorer imports this module

    factor = cfg.contagion_factors.get(msg.relation, 0.5)
    index = round(min(cfg.contagion_cap, factor * msg.index), 1)
    level = cfg.level_of(index)
    noun_en, noun_zh = RELATIONS[msg.relation]
    src_zh = LEVEL_NAMES[msg.level][0]
    raised = LEVEL_RANK[msg.level] >= LEVEL_RANK[cfg.contagion_from]
    why_en = (
        f"raised by {noun_en} {msg.other}'s {msg.level} level"
        if raised
        else f"{noun_en} {msg.other} is back at {msg.level} level"
    )
    why_zh = f"受{noun_zh}{msg.other}{src_zh}色等级传导" if raised else f"{noun_zh}{msg.other}已回落至{src_zh}色等级"
    a = Alert(
        alert_id=alert_id(CONTAGION_RULE, msg.to, msg.other),
        entity_id=msg.to,
        entity_kind=entity_kind,
        region=region,
        rule_id=CONTAGION_RULE,
        severity=LEVEL_SEVERITY[level],
        title_zh=f"关联风险传导（{noun_zh}）",
        title_en=f"Linked-entity contagion ({noun_en})",
        dimension="contagion",
        evidence={
            "source": msg.other,
            "source_kind": msg.source_kind,
            "relation": msg.relation,
            "source_level": msg.level,
            "source_index": msg.index,
            "factor": factor,
            "explanation_en": why_en,
            "explanation_zh": why_zh,
        },
        event_time=iso(msg.ts),
        detected_at=clock(),
        revision=msg.seq,
    )
    a.risk_index, a.risk_level = index, level
    a.risk_tags = [CONTAGION_RULE]
    a.affected_people, a.affected_amount = people, amount
    return a
