"""Fuzzing the worker's whole per-batch path (issue 22): arbitrary bytes, hostile mutations of
valid events, and contract-valid events at the contract's limits, through the processor the
worker and the backtest run (``detectors.factory.build_processor`` with every detector, the
risk index and contagion).

The property: nothing escapes ``BatchProcessor.process``; every message is either processed
(counted once) or dead-lettered once with a known reason and a detail; no contract-valid event
needs the processing-error backstop (a detector that raises on one is a bug to fix); every dead
letter fits a Kafka broker's default message limit; states read back from their encoding encode the same.

``RISKFLOW_FUZZ_EXAMPLES`` sets how many histories are drawn (default 300, each of up to 40
messages in up to three batches); CI runs the default.
"""

from __future__ import annotations

import itertools
import os
import random

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors.engine import decode_state, encode_state
from detectors.factory import build_processor
from detectors.pipeline import RawMessage
from detectors.rules import load_pack
from riskflow.core.deadletter import encode_dead_letter
from riskflow.core.schema import REASONS
from tests.support.strategies import NOW, valid_events

EXAMPLES = int(os.environ.get("RISKFLOW_FUZZ_EXAMPLES", "300"))
KAFKA_DEFAULT_MAX_MESSAGE = 1_048_588
_CONTROL = ["\x00", "\x1b[2J", "\x07", "\u202e", "\u0085", "\x7f", "\u2066"]


def _mutate(raw: bytes, how: int, seed: int) -> bytes:
    """A hostile variant of a valid event: a control character in a string, nesting in an
    unknown field, a cut, a flipped byte, a huge field, a non-object, or dates at the parser's
    limits (years 1 and 9999)."""
    rng = random.Random(seed)
    obj = msgspec.json.decode(raw)
    if how == 0:
        field = rng.choice(["entity_id", "event_id", "source"])
        obj[field] = obj[field][:10] + rng.choice(_CONTROL)
    elif how == 1:
        depth = rng.choice([40, 65, 1000, 3000])
        return raw[:-1] + b', "x": ' + b"[" * depth + b"]" * depth + b"}"
    elif how == 2:
        return raw[: rng.randrange(len(raw))]
    elif how == 3:
        b = bytearray(raw)
        b[rng.randrange(len(b))] = rng.randrange(256)
        return bytes(b)
    elif how == 4:
        obj["payload"]["note"] = "长" * rng.choice([9000, 40_000])
    elif how == 5:
        return msgspec.json.encode([obj])
    elif how == 6:  # the parser's own limits, beyond the contract's dates
        obj["event_time"] = rng.choice(["0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00-23:59"])
    elif how == 7:
        obj["payload"]["period_end"] = rng.choice(["9999-12-31", "0001-01-01"])
    return msgspec.json.encode(obj)


_hostile = st.builds(_mutate, valid_events(extreme=True), st.integers(0, 7), st.integers(0, 2**16))
_message = st.one_of(
    valid_events(extreme=True),
    valid_events(entity_id="PF-9", extreme=True),
    _hostile,
    st.binary(max_size=200),
)


@settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(history=st.lists(_message, min_size=1, max_size=40), cuts=st.lists(st.integers(1, 39), max_size=2))
def test_any_history_is_processed_or_dead_lettered_once_with_a_reason(history: list[bytes], cuts: list[int]) -> None:
    bp = build_processor(load_pack(), peer=True)
    store: dict[str, bytes] = {}

    def get_state(eid: str):  # type: ignore[no-untyped-def]
        raw = store.get(eid)
        return decode_state(raw) if raw is not None else None

    msgs = [RawMessage(v, "t", i % 2, i, None) for i, v in enumerate(history)]
    bounds = [0, *sorted({c for c in cuts if c < len(msgs)}), len(msgs)]
    counted = dead = 0
    for lo, hi in itertools.pairwise(bounds):
        res = bp.process(msgs[lo:hi], get_state, now=NOW)
        counted += len(res.counted)
        dead += len(res.dead_letters)
        for d in res.dead_letters:
            assert d["reason"] in REASONS and d["detail"], d["reason"]
            assert len(encode_dead_letter(d)) < KAFKA_DEFAULT_MAX_MESSAGE
        for eid, (state, _) in res.states.items():
            store[eid] = encode_state(state)
            # what the changelog holds reads back to the same state (a detector's state may come
            # back in its stored form, e.g. a list for an array-like struct: compare encodings)
            assert encode_state(decode_state(store[eid])) == store[eid]
    assert counted + dead == len(history)
