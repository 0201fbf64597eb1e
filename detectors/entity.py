"""The engine's msgspec records: an entity's state and what one event did to it.

They live apart from :mod:`detectors.engine` so that the engine can be compiled with
mypyc (the optional compiled build, ``detectors.MYPYC_MODULES``): a compiled module
cannot define msgspec Structs (their ``msgspec.field`` defaults fail at import).
:mod:`detectors.engine` re-exports every name, so imports from there keep working.

>>> decode_state(encode_state(EntityState(entity_id="PF-1", events=2))).events
2
"""

from __future__ import annotations

from typing import Any

import msgspec

from detectors import lateness as _lateness
from detectors.risk.contagion import LinkMessage
from detectors.risk.state import RiskState
from riskflow.core.alerts import Alert


class EntityState(msgspec.Struct, kw_only=True):
    """Everything RiskFlow remembers about one entity; msgpack-serialisable."""

    entity_id: str
    entity_kind: str = ""
    region: str = ""
    watermark: float = 0.0  # latest event time seen for this entity (POSIX seconds)
    events: int = 0
    recent_ids: bytes = b""  # ring of 8-byte digests of recent event ids, newest last
    detectors: dict[str, Any] = msgspec.field(default_factory=dict)
    risk: RiskState | None = None  # risk index, level, episodes (detectors/risk)
    # Timed detectors (rules of kind absence): earliest pending deadline (0: none), and the
    # input partition ("topic#partition") whose watermark moves this entity's time on.
    due: float = 0.0
    lane: str = ""
    #: the lane's trusted event time when this entity last changed (detectors/pipeline.Lane): a
    #: restart rebuilds each lane's watermark from these, never from an entity's own time,
    #: which an event running ahead of its partition may have moved
    lane_watermark: float = 0.0
    # Per input lane ("topic#partition", the links topic's too): the offset of the last message
    # applied to this entity. Flushed with the state, so a message at or below it, read again
    # after a crash or a rebalance, is skipped whatever the dedup window (detectors/pipeline.py).
    offsets: dict[str, int] = msgspec.field(default_factory=dict)
    #: Contagion pushes received but not yet applied, in the order they apply (``at``, source,
    #: seq): each waits until the entity's lane passes its ``at``, or an own event later than it
    #: comes (detectors/pipeline.py), so it lands at the same place among the entity's own events
    #: however it travelled. Bounded by ``_PENDING_PUSHES`` in the pipeline.
    pushes: list[LinkMessage] = msgspec.field(default_factory=list)


class StepFailed(Exception):
    """An exception raised in one step of processing an event (a detector, the risk scorer,
    ...), with the step named, so that the dead letter can say where it happened.

    >>> err = StepFailed("detector pf.demo", ValueError("year 10000 is out of range"))
    >>> err.step, type(err.error).__name__
    ('detector pf.demo', 'ValueError')
    """

    def __init__(self, step: str, error: BaseException) -> None:
        try:
            text = str(error)
        except Exception:  # an exception that cannot even say what it is
            text = "(its text could not be read)"
        super().__init__(f"{step}: {type(error).__name__}: {text}")
        self.step = step
        self.error = error


_state_encoder = msgspec.msgpack.Encoder()
_state_decoder = msgspec.msgpack.Decoder(EntityState)


def encode_state(state: EntityState) -> bytes:
    return _state_encoder.encode(state)


def decode_state(data: bytes) -> EntityState:
    return _state_decoder.decode(data)


class Outcome(msgspec.Struct):
    """What one event did to its entity (a Struct: one is made per event, C-fast to build)."""

    state: EntityState
    alerts: list[Alert]
    duplicate: bool = False
    links: list[LinkMessage] = msgspec.field(default_factory=list)  # for the links topic (risk contagion)
    late: _lateness.LateRecord | None = None  # set when the event was late (detectors/lateness.py)
