"""Linked-entity contagion 关联风险传导: a manager's, parent's or related party's level reaches its dependents.

Links come from the events themselves:

- ``fund.registered`` on a fund names its ``manager_id``: the manager's risk reaches the fund;
- ``entity.registered`` with ``parent_id``: the parent's risk reaches the subsidiary;
- ``flow.transfer`` with ``related_party`` and a ``counterparty_id``: the two are affiliates,
  each one's risk reaches the other.

Entities live on different partitions, so the effects travel as small messages
on an internal topic keyed by the entity they are for (``riskflow.risk-links``):
a ``link`` tells a source that a dependent exists, a ``push`` tells a dependent
the source's level. The source sends a push on each transition of its *own*
level once that has ever reached ``contagion_from`` (orange), and on each new
link if it has.

Contagion feeds the dependent's index. The dependent keeps the latest push of
each source (highest ``seq``; at most ``max_sources`` sources, those with the
smallest id hash, so the bound does not depend on arrival order). At the
dependent's event time ``T`` (its latest own event, or a later push time) a
source at or above ``contagion_from`` contributes

    ``c = min(contagion_cap, factor[relation] x source index) x 0.5 ** ((T - ts) / half_life)``

(``ts``: the source's transition; a source below ``contagion_from`` gives 0), the
strongest source counts (``C = max c``; several sources do not add up), and the
shown index is ``max(own, min(contagion_cap, own (+) C))`` where ``(+)`` is the
index's own noisy-or. So contagion alone never makes a dependent red (the cap,
79.9 by default), and the shown level is the higher of the own level (with its
hysteresis) and the level of the shown index. It is visible in the dependent's
``risk_index``/``risk_level`` on every alert, in its ``risk.level`` alerts (with an
explanation in the evidence) and in ``risk_tags`` (``risk.contagion``).

Bounded, one hop, no amplification: a push carries the source's own index and
own level, never its contagion-raised one, and only own transitions send pushes.
So A raising B never comes back to A (affiliates A <-> B settle after one
push each way), and a manager's parent does not reach the manager's funds.

A push is answered by the dependent's ``risk.contagion`` alert:

- id ``alert_id("risk.contagion", dependent, source)`` -- one alert per (dependent, source),
- ``revision`` = the source's own transition count, so sinks keep the latest,
- ``risk_index``/``risk_level``: the dependent's index and level with this source's
  contribution as of its transition (event time; not decayed by how far the
  dependent's clock ran before the push landed, and not mixed with other sources'
  pushes that happened to land first), with the move in ``evidence`` (``from``: the
  level shown before it landed, ``to``) and the explanation
  ("raised by manager PFM-1's red level"). It is the level-change alert of a
  change a push makes; ``risk.level`` alerts (transition counter) come only from
  the entity's own events, so pushes landing at different times do not renumber them.

Timing: in event time. A push carries ``at``, the event time of its cause (the source's
transition, or the link it answers) plus ``contagion_delay_hours``; the dependent holds it
(``hold``, in ``EntityState.pushes``) and applies it before its first own event later than
``at`` or once its partition's watermark passes ``at`` (``detectors/pipeline.py``), so its
place among the dependent's own events depends on event times, not on arrival -- as long as
it arrives before ``at`` (live: the links topic keeps up within the delay; offline: the
backtest delivers links within stretches shorter than the delay). One arriving later lands
at once, as does one for an entity without events of its own.

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
from detectors.risk.state import Raise, RiskState
from riskflow.core.alerts import Alert, build_alert, iso
from riskflow.core.schema import Event

CONTAGION_RULE = "risk.contagion"
RELATIONS: dict[str, tuple[str, str]] = {
    # relation: (English noun of the source, Chinese noun of the source)
    "manager": ("manager", "管理人"),
    "parent": ("parent company", "母公司"),
    "related_party": ("related party", "关联方"),
}


class LinkMessage(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A message on the internal links topic, keyed by ``to``.

    ``kind="link"``: entity ``other`` depends on ``to`` through ``relation``, announced by
    its event at event time ``at``.
    ``kind="push"``: source ``other`` (of kind ``source_kind``) moved to ``level``
    with ``index`` at event time ``ts``, its ``seq``-th level transition; the dependent
    applies it once its own partition's time passes ``at`` (the event time of what caused
    the push plus ``contagion_delay_hours``; 0: at once, as a message from before).
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
    at: float = 0.0


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


def own_level(r: RiskState) -> str:
    """The level of the entity's own index (states from before contagion fed the index: the level)."""
    return r.own_level or r.level


def own_seq(r: RiskState) -> int:
    return r.seq if r.own_seq < 0 else r.own_seq


def push_for(r: RiskState, source: str, source_kind: str, entry: str, at: float) -> LinkMessage:
    """The push of ``r``'s own level to the dependent ``entry``, applied there from event time ``at``."""
    relation, _, dep = entry.partition("|")
    return LinkMessage(
        kind="push",
        to=dep,
        other=source,
        relation=relation,
        source_kind=source_kind,
        level=own_level(r),
        index=r.trans_index,
        seq=own_seq(r),
        ts=r.trans_ts,
        at=at,
    )


def seen_push(r: RiskState, msg: LinkMessage) -> bool:
    """True if ``r`` already holds this source's push ``msg.seq`` or a later one."""
    return any(old.source == msg.other and old.seq >= msg.seq for old in r.raised_by)


def absorb(r: RiskState, msg: LinkMessage, cfg: RiskConfig) -> bool:
    """Keep ``msg`` as its source's latest push unless a later one is kept. True if it is (now) kept."""
    for i, old in enumerate(r.raised_by):
        if old.source == msg.other:
            if msg.seq < old.seq:
                return False
            r.raised_by[i] = Raise(msg.other, msg.relation, msg.level, msg.index, msg.ts, msg.seq)
            return True
    entry = Raise(msg.other, msg.relation, msg.level, msg.index, msg.ts, msg.seq)
    kept = sorted([*r.raised_by, entry], key=lambda e: _rank_key(e.source))[: cfg.max_sources]
    r.raised_by = kept
    return entry in kept


def contribution(relation: str, level: str, index: float, cfg: RiskConfig) -> float:
    """What a source at ``level`` with own ``index`` gives a dependent at the time of its transition."""
    if LEVEL_RANK.get(level, 0) < LEVEL_RANK[cfg.contagion_from]:
        return 0.0
    return min(cfg.contagion_cap, cfg.contagion_factors.get(relation, 0.5) * index)


def strongest(r: RiskState, cfg: RiskConfig) -> tuple[float, Raise | None]:
    """``(C, source)``: the strongest contribution, decayed to the entity's contagion time (its
    latest own event or push), and its source."""
    if not r.raised_by:
        return 0.0, None
    t = max(r.t, max(e.ts for e in r.raised_by))
    best, src = 0.0, None
    for e in r.raised_by:
        c = contribution(e.relation, e.level, e.index, cfg)
        if c <= 0.0:
            continue
        c *= 0.5 ** (max(0.0, t - e.ts) / cfg.half_life)
        if c > best or (c == best and src is not None and e.source < src.source):
            best, src = c, e
    return best, src


def shown_index(own: float, c: float, cfg: RiskConfig) -> float:
    """The index shown for an entity with own index ``own`` and contagion ``c`` (both 0-100)."""
    if c <= 0.0:
        return own
    raised = 100.0 * (1.0 - (1.0 - own / 100.0) * (1.0 - c / 100.0))
    return round(max(own, min(cfg.contagion_cap, raised)), 1)


def explain(relation: str, source: str, level: str, cfg: RiskConfig) -> tuple[str, str]:
    """(English, Chinese) explanation of a source's effect at ``level``."""
    noun_en, noun_zh = RELATIONS.get(relation, (relation, relation))
    src_zh = LEVEL_NAMES[level][0]
    if LEVEL_RANK[level] >= LEVEL_RANK[cfg.contagion_from]:
        return f"raised by {noun_en} {source}'s {level} level", f"受{noun_zh}{source}{src_zh}色等级传导"
    return f"{noun_en} {source} is back at {level} level", f"{noun_zh}{source}已回落至{src_zh}色等级"


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
    out = [LinkMessage(kind="link", to=target, other=me, relation=relation, at=event.ts)]
    if relation == "related_party" and add_dependent(r, relation, target, cfg.max_dependents) and r.hot:
        # affiliates: my risk reaches them too
        out.append(push_for(r, me, event.entity_kind, key, event.ts + cfg.contagion_delay))
    return out


def pushes_on_transition(r: RiskState, source: str, source_kind: str, cfg: RiskConfig) -> list[LinkMessage]:
    at = r.trans_ts + cfg.contagion_delay
    return [push_for(r, source, source_kind, entry, at) for entry in r.dependents] if r.hot else []


def on_link(r: RiskState, source: str, source_kind: str, msg: LinkMessage, cfg: RiskConfig) -> list[LinkMessage]:
    """A dependent announced itself to ``source``: remember it, and tell it the current level if hot
    (applied there from the later of the transition and the announcement, plus the delay)."""
    entry = f"{msg.relation}|{msg.other}"
    if add_dependent(r, msg.relation, msg.other, cfg.max_dependents) and r.hot:
        return [push_for(r, source, source_kind, entry, max(r.trans_ts, msg.at) + cfg.contagion_delay)]
    return []


def hold(pending: list[LinkMessage], msg: LinkMessage, limit: int, cfg: RiskConfig) -> tuple[bool, LinkMessage | None]:
    """Keep push ``msg`` among a dependent's ``pending`` pushes, in the order they apply
    (``at``, source, ``seq``). ``(False, None)``: a push of this source at a later ``seq`` is
    pending, or one at this ``seq`` through a relation at least as strong (a redelivery, or a
    source linked twice, as a fund's manager that is also its parent: the stronger relation
    is kept, whichever arrived first). Beyond ``limit`` the earliest pending push comes out, to
    be applied at once: ``(True, that push)``."""
    for i, p in enumerate(pending):
        if p.other != msg.other or p.seq < msg.seq:
            continue
        if p.seq > msg.seq or _strength(p, cfg) >= _strength(msg, cfg):
            return False, None
        pending[i] = msg
        return True, None
    pending.append(msg)
    pending.sort(key=lambda p: (p.at, p.other, p.seq))
    return True, (pending.pop(0) if len(pending) > limit else None)


def _strength(msg: LinkMessage, cfg: RiskConfig) -> tuple[float, str]:
    return cfg.contagion_factors.get(msg.relation, 0.5), msg.relation


def due(pending: list[LinkMessage], upto: float) -> list[LinkMessage]:
    """Take out of ``pending`` (ordered) the pushes that apply before event time ``upto``."""
    n = 0
    while n < len(pending) and pending[n].at < upto:
        n += 1
    out = pending[:n]
    del pending[:n]
    return out


def contagion_alert(
    msg: LinkMessage,
    cfg: RiskConfig,
    *,
    entity_kind: str,
    region: str,
    people: int,
    amount: float,
    before: str,
    after: str,
    index: float,
    tags: list[str],
    clock: Callable[[], str],
) -> Alert:
    """The dependent's ``risk.contagion`` alert for a push: its level moved ``before`` -> ``after``
    (or not), its shown index is now ``index``."""
    factor = cfg.contagion_factors.get(msg.relation, 0.5)
    noun_en, noun_zh = RELATIONS[msg.relation]
    why_en, why_zh = explain(msg.relation, msg.other, msg.level, cfg)
    a = build_alert(
        CONTAGION_RULE,
        msg.to,
        msg.other,
        entity_kind=entity_kind,
        region=region,
        severity=LEVEL_SEVERITY[after],
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
            "contribution": round(contribution(msg.relation, msg.level, msg.index, cfg), 1),
            "from": before,
            "to": after,
            "explanation_en": why_en,
            "explanation_zh": why_zh,
        },
        event_time=iso(msg.ts),
        detected_at=clock(),
        revision=msg.seq,
    )
    a.risk_index, a.risk_level = index, after
    a.risk_tags = tags
    a.affected_people, a.affected_amount = people, amount
    return a
