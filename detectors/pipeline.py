"""One batch of raw messages in, alerts + dead letters + changed entity states out.

This is everything between the broker and the sinks, with no I/O: the Faust
agent feeds it batches taken from the input topics, the backtest feeds it
lines of a file. Both therefore produce the same alerts for the same history.

>>> from detectors.engine import Engine
>>> from detectors.rules import load_pack
>>> bp = BatchProcessor(Engine(load_pack().detectors))
>>> res = bp.process([RawMessage(b"not json", "t", 0, 1, None)], {}.get)
>>> [d["reason"] for d in res.dead_letters]
['malformed_json']
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from detectors.engine import Engine, EntityState
from riskflow.alerts import Alert
from riskflow.deadletter import dead_letter
from riskflow.schema import DEFAULT_MAX_BYTES, DEFAULT_MAX_FUTURE_SECONDS, InvalidEvent, parse_event


class RawMessage(NamedTuple):
    value: bytes
    topic: str
    partition: int
    offset: int
    key: bytes | None


@dataclass
class BatchResult:
    alerts: list[Alert] = field(default_factory=list)
    dead_letters: list[dict] = field(default_factory=list)
    #: entity id -> (new state, input partition): what to write back to the table
    states: dict[str, tuple[EntityState, int]] = field(default_factory=dict)
    #: (event_type, entity_kind, region) of each valid, non-duplicate event: metric tallies
    counted: list[tuple[str, str, str]] = field(default_factory=list)
    max_event_ts: float = 0.0


class BatchProcessor:
    def __init__(
        self,
        engine: Engine,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_future_seconds: float = DEFAULT_MAX_FUTURE_SECONDS,
    ) -> None:
        self.engine = engine
        self.max_bytes = max_bytes
        self.max_future_seconds = max_future_seconds

    def process(
        self,
        messages: Sequence[RawMessage],
        get_state: Callable[[str], EntityState | None],
        now: float | None = None,
    ) -> BatchResult:
        """Process messages in order. ``get_state`` reads an entity's stored state.

        Within the batch, an entity's state is carried from one event to the
        next in memory; only its final state is returned for writing back.
        """
        now = time.time() if now is None else now
        res = BatchResult()
        states = res.states
        engine = self.engine
        for msg in messages:
            try:
                event = parse_event(
                    msg.value, max_bytes=self.max_bytes, max_future_seconds=self.max_future_seconds, now=now
                )
            except InvalidEvent as exc:
                res.dead_letters.append(
                    dead_letter(msg.value, exc.reason, exc.detail, msg.topic, msg.partition, msg.offset, msg.key)
                )
                continue
            eid = event.entity_id
            held = states.get(eid)
            state = held[0] if held is not None else get_state(eid)
            out = engine.process(state, event)
            if out.duplicate:
                res.dead_letters.append(
                    dead_letter(
                        msg.value,
                        "duplicate_event",
                        f"event_id {event.event_id!r} was already processed for {eid}",
                        msg.topic,
                        msg.partition,
                        msg.offset,
                        msg.key,
                    )
                )
                continue
            states[eid] = (out.state, msg.partition)
            res.alerts.extend(out.alerts)
            res.counted.append((event.event_type, event.entity_kind, event.region))
            if event.ts > res.max_event_ts:
                res.max_event_ts = event.ts
        return res
