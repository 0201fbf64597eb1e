"""Property tests: valid events never make a detector raise; any bytes are either
an event or a rejection with a known reason.

Valid events are generated from the payload types themselves (``msgspec.inspect``),
so a new event type or field is covered without editing this file. Detectors
are discovered: every rule of the built-in pack, everything the shared factory
wires into the engine, and every concrete :class:`~detectors.base.Detector`
subclass found under ``detectors/`` that can be built with its defaults.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import detectors
from detectors.base import Detector
from detectors.engine import Engine, decode_state, encode_state
from detectors.factory import build_processor
from detectors.pipeline import RawMessage
from detectors.rules import load_pack
from detectors.rules.base import Rule
from riskflow.core.schema import CATALOGUE, REASONS, Event, InvalidEvent, parse_event
from tests.support.strategies import valid_events

# ---- detector discovery ----------------------------------------------------------


def _discovered_classes() -> list[type[Detector]]:
    for mod in pkgutil.walk_packages(detectors.__path__, "detectors."):
        importlib.import_module(mod.name)
    seen: list[type[Detector]] = []
    todo = [Detector]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if not inspect.isabstract(sub) and sub.__module__.startswith("detectors.") and sub not in seen:
                seen.append(sub)
    return seen


def all_detectors() -> list[Detector]:
    """Every detector the worker runs plus every other discoverable one."""
    found: list[Detector] = list(load_pack().detectors) + list(build_processor(load_pack()).engine.detectors)
    covered = {type(d) for d in found}
    missing = []
    for cls in _discovered_classes():
        if cls in covered or issubclass(cls, Rule):
            continue  # rules are built from the pack (a kind without a pack rule is checked below)
        try:
            found.append(cls())
        except TypeError:
            missing.append(cls.__qualname__)
    assert not missing, f"detectors not reachable for the property test (give them defaults): {missing}"
    return found


DETECTORS = all_detectors()


def test_discovery_finds_the_pack_and_every_rule_kind_in_use() -> None:
    ids = {d.id for d in DETECTORS}
    assert {"pf.guaranteed_return", "pf.unqualified_investor", "pf.amac_lost_contact"} <= ids
    assert len(DETECTORS) >= len(load_pack().detectors)


# ---- the properties --------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_events())
def test_generated_events_are_valid(raw: bytes) -> None:
    ev = parse_event(raw, now=2e9)
    assert isinstance(ev, Event) and ev.event_type in CATALOGUE


@pytest.mark.parametrize("det", DETECTORS, ids=lambda d: d.id or type(d).__name__)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=st.lists(valid_events(entity_id="E-1"), min_size=1, max_size=15))
def test_valid_events_never_make_a_detector_raise(det: Detector, history: list[bytes]) -> None:
    state = det.init_state()
    for raw in history:
        ev = parse_event(raw, now=2e9)
        if not det.applies_to(ev):
            continue
        state, signals = det.process(state, ev)
        for s in signals:
            assert s.detector_id == det.id and 0.0 <= s.score <= 1.0 and s.severity
        # state stays plain, serialisable data (it lives in a changelog-backed table)
        msgspec.msgpack.decode(msgspec.msgpack.encode(state))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=st.lists(st.one_of(valid_events(), st.binary(max_size=300)), min_size=1, max_size=20))
def test_engine_batch_never_raises_and_accounts_for_every_message(history: list[bytes]) -> None:
    """The worker's whole path over a mix of valid events and junk: every message
    is either counted or dead-lettered with a known reason; states round-trip."""
    bp = build_processor(load_pack())
    res = bp.process([RawMessage(v, "t", 0, i, None) for i, v in enumerate(history)], {}.get, now=2e9)
    assert len(res.counted) + len(res.dead_letters) == len(history)
    assert all(d["reason"] in REASONS and d["detail"] for d in res.dead_letters)
    for st_, _ in res.states.values():
        raw = encode_state(st_)
        assert encode_state(decode_state(raw)) == raw  # reads back to what it was (in stored form)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=st.lists(valid_events(entity_id="E-2"), min_size=1, max_size=20))
def test_engine_over_every_detector_at_once(history: list[bytes]) -> None:
    """Every discovered detector inside one engine, as the worker runs them."""
    eng = Engine(DETECTORS, dedup_window=0)
    state = None
    for raw in history:
        state = eng.process(state, parse_event(raw, now=2e9)).state
    assert state is not None and state.events == len(history)


@given(st.binary(max_size=600))
def test_any_bytes_are_an_event_or_a_reasoned_rejection(data: bytes) -> None:
    try:
        ev = parse_event(data, now=2e9)
    except InvalidEvent as exc:
        assert exc.reason in REASONS and exc.detail
    else:
        assert ev.event_type in CATALOGUE


_TEMPLATE = (
    b'{"schema": "riskflow.event/v1", "event_id": "@1", "event_type": "amac.notice", "entity_id": "@2",'
    b' "entity_kind": "private_fund_manager", "region": "330100", "event_time": "2025-04-01T10:00:00+08:00",'
    b' "source": "@3", "payload": {"notice": "lost_contact", "extra": "@4"}}'
)


@given(st.sampled_from([b"@1", b"@2", b"@3", b"@4"]), st.binary(min_size=1, max_size=40))
def test_raw_bytes_inside_json_strings_are_a_reasoned_rejection_or_an_event(slot: bytes, junk: bytes) -> None:
    """Bad UTF-8 inside a string made msgspec raise UnicodeDecodeError, which
    escaped parse_event and would have crashed the worker's batch."""
    data = _TEMPLATE.replace(slot, junk.replace(b'"', b"").replace(b"\\", b"") or b"x")
    for other in (b"@1", b"@2", b"@3", b"@4"):
        data = data.replace(other, b"ok")
    try:
        parse_event(data, now=2e9)
    except InvalidEvent as exc:
        assert exc.reason in REASONS


def test_bad_utf8_inside_a_string_is_not_utf8() -> None:
    with pytest.raises(InvalidEvent) as e1:
        parse_event(b'{"schema": "\xff\xfe"}')
    with pytest.raises(InvalidEvent) as e2:
        parse_event(_TEMPLATE.replace(b"@2", b"\xc3\x28").replace(b"@", b"x"), now=2e9)
    assert e1.value.reason == e2.value.reason == "not_utf8"
