"""Per-entity risk state: small, plain, msgpack-serialisable (kept in ``EntityState.risk``).

Structs are ``array_like`` (encoded as msgpack arrays, no field names) so that
an entity with a few active rules stays within a few hundred bytes; fields
added later must have defaults and go last, so older states still decode.
"""

from __future__ import annotations

import math

import msgspec

#: Dimension codes kept in state (append-only: a stored code must keep its meaning).
DIMENSION_CODES: tuple[str, ...] = (
    "compliance_deviation",
    "inducement",
    "social_spread",
    "complaints",
    "keyword_hits",
    "financial_soundness",
    "operational_anomaly",
    "anomaly",
    "contagion",
)
_CODE = {name: i for i, name in enumerate(DIMENSION_CODES)}


def dim_code(name: str) -> int | str:
    """A dimension as stored: its code, or the name itself for one not in the table."""
    return _CODE.get(name, name)


def dim_name(code: int | str) -> str:
    return DIMENSION_CODES[code] if isinstance(code, int) else code


def second(ts: float) -> int:
    """Event time kept to the second in episode bounds (5 msgpack bytes instead of 9)."""
    return math.floor(ts)


class RuleTrack(msgspec.Struct, array_like=True):
    """One rule's (or detector's) footprint on an entity.

    ``acc`` is its decayed mass at the entity's reference time ``RiskState.t``;
    ``key`` .. ``emitted_level`` describe the rule's current episode: the key of
    its opening signal (the alert id derives from it), event times of its first
    and last hit, hit count, and the level rank it last carried when emitted.
    """

    dim: int | str  # see dim_code()
    acc: float = 0.0
    key: str = ""
    first: int = 0  # event time, whole seconds
    last: int = 0
    count: int = 0
    emitted_level: int = -1


class Raise(msgspec.Struct, array_like=True):
    """The latest level a linked source pushed to this entity (``detectors/risk/contagion.py``)."""

    source: str
    relation: str
    level: str  # the source's own level after its ``seq``-th own transition
    index: float  # the source's own index at that transition
    ts: float  # event time of that transition
    seq: int


class RiskState(msgspec.Struct, array_like=True):
    """Everything the risk index remembers about one entity."""

    t: float = 0.0  # event time the ``acc`` values refer to (latest event time seen)
    rules: dict[str, RuleTrack] = msgspec.field(default_factory=dict)
    level: str = "green"
    seq: int = 0  # level transitions so far
    index: float = 0.0
    people: bytes = b""  # KMV sketch of distinct investors and complainants
    raised: float = 0.0  # CNY subscribed minus redemptions paid
    claimed: float = 0.0  # CNY in complaints and lawsuits against the entity
    # Contagion (see detectors/risk/contagion.py)
    hot: bool = False  # ever at or above the contagion level
    trans_index: float = 0.0  # index at the latest level transition
    trans_ts: float = 0.0  # event time of the latest level transition
    dependents: list[str] = msgspec.field(default_factory=list)  # "relation|entity id"
    announced: bytes = b""  # 8-byte digests of the "relation|entity id" links this entity announced
    # Contagion into the index: ``level``/``seq``/``index`` above are the entity's level as shown
    # (own index raised by its sources); its own index's level and transitions are kept apart,
    # because only they are pushed on (one hop). "" / -1: a state from before, own == shown.
    own_level: str = ""
    own_seq: int = -1
    raised_by: list[Raise] = msgspec.field(default_factory=list)  # by source, bounded
    #: per dependent ("relation|entity id"), the event time of the link that announced it: a
    #: transition earlier in event time that is processed after the link (the source's partition
    #: lagging) reaches it from then, as it would had the link come after the transition
    linked_at: dict[str, float] = msgspec.field(default_factory=dict)
