from __future__ import annotations

import datetime as dt
import json
import zoneinfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riskflow.core.schema import CATALOGUE, REASONS, InvalidEvent, encode_event, parse_event, posix_seconds

BASE = {
    "schema": "riskflow.event/v1",
    "event_id": "e-1",
    "entity_id": "PF-1",
    "entity_kind": "private_fund",
    "region": "330100",
    "event_time": "2025-04-01T10:00:00+08:00",
    "source": "amac",
}


def msg(event_type: str, payload: object, **over: object) -> bytes:
    return json.dumps({**BASE, "event_type": event_type, "payload": payload, **over}).encode()


def test_every_catalogue_type_has_a_valid_example(valid_example_lines: list[bytes]) -> None:
    types = {parse_event(line).event_type for line in valid_example_lines}
    assert types == set(CATALOGUE)


def test_valid_examples_round_trip(valid_example_lines: list[bytes]) -> None:
    for line in valid_example_lines:
        ev = parse_event(line)
        again = parse_event(encode_event(ev))
        assert again == ev


@pytest.mark.parametrize(
    ("why", "reason"),
    [
        ("not json", "malformed_json"),
        ("unknown event_type", "unknown_event_type"),
        ("amount not a number", "invalid_payload"),
        ("event_time without offset", "invalid_time"),
        ("unknown region", "unknown_region"),
        ("missing payload field", "invalid_payload"),
        ("wrong schema id", "unsupported_schema"),
    ],
)
def test_contract_invalid_examples(invalid_examples: list[tuple[str, bytes]], why: str, reason: str) -> None:
    line = dict(invalid_examples)[why]
    with pytest.raises(InvalidEvent) as exc:
        parse_event(line)
    assert exc.value.reason == reason
    assert exc.value.detail


def test_all_invalid_examples_are_covered(invalid_examples: list[tuple[str, bytes]]) -> None:
    assert len(invalid_examples) == 7
    for _, line in invalid_examples:
        with pytest.raises(InvalidEvent):
            parse_event(line)


# One minimal valid payload per type, and one way to break each.
MINIMAL: dict[str, tuple[dict, dict]] = {
    "entity.registered": (
        {"name": "A", "registered_capital": 1e7, "legal_rep": "Z", "address": "X"},
        {"registered_capital": -1},
    ),
    "entity.changed": ({"field": "legal_rep"}, {"field": "shoe_size"}),
    "report.prudential": ({"period_end": "2025-03-31"}, {"period_end": "yesterday"}),
    "fund.registered": (
        {"fund_id": "F", "manager_id": "M", "fund_type": "equity", "structure": "contractual"},
        {"structure": "pyramid"},
    ),
    "fund.subscription": (
        {"fund_id": "F", "investor_id": "I", "investor_type": "individual", "amount": 1},
        {"investor_type": "alien"},
    ),
    "fund.redemption_requested": (
        {"fund_id": "F", "request_id": "R", "investor_id": "I", "amount": 5},
        {"amount": True},
    ),
    "fund.redemption_paid": ({"fund_id": "F", "request_id": "R", "amount": 5}, {"request_id": ""}),
    "fund.nav_reported": ({"fund_id": "F", "nav": 1.01, "period_end": "2025-03-31"}, {"nav": "1.0"}),
    "filing.submitted": ({"filing": "monthly", "period_end": "2025-03-31"}, {"filing": "weekly"}),
    "advertisement.published": ({"channel": "wechat"}, {"guaranteed": "yes"}),
    "complaint.filed": ({"channel": "12345", "category": "fraud"}, {"category": "boredom"}),
    "lawsuit.filed": ({"role": "defendant", "cause": "loan"}, {"role": "judge"}),
    "opinion.published": ({"sentiment": -0.5}, {"sentiment": 2}),
    "flow.transfer": ({"direction": "out", "amount": 10}, {"direction": "sideways"}),
    "amac.notice": ({"notice": "lost_contact"}, {"notice": "found"}),
    "enforcement.action": ({"action": "fine"}, {"action": "hug"}),
    "grid.report": ({"observation": "office_closed"}, {"observation": 3}),
}


def test_minimal_table_covers_catalogue() -> None:
    assert set(MINIMAL) == set(CATALOGUE)


@pytest.mark.parametrize("etype", sorted(MINIMAL))
def test_minimal_payload_accepted_and_null_optional_equals_omitted(etype: str) -> None:
    good, _ = MINIMAL[etype]
    ev = parse_event(msg(etype, good))
    assert ev.event_type == etype
    # An explicit null for every optional field means the same as leaving it out.
    optional = [f for f in CATALOGUE[etype].__struct_fields__ if f not in good]
    with_nulls = parse_event(msg(etype, {**good, **{f: None for f in optional}}))
    assert with_nulls.payload == ev.payload


@pytest.mark.parametrize("etype", sorted(MINIMAL))
def test_broken_payload_rejected_with_field_in_detail(etype: str) -> None:
    good, bad = MINIMAL[etype]
    with pytest.raises(InvalidEvent) as exc:
        parse_event(msg(etype, {**good, **bad}))
    assert exc.value.reason == "invalid_payload"
    assert etype in exc.value.detail


def test_unknown_payload_fields_are_ignored_for_forward_compatibility() -> None:
    ev = parse_event(msg("amac.notice", {"notice": "cancelled", "new_field_v1_1": 3}))
    assert ev.payload.notice == "cancelled"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff\xfe\x00", "not_utf8"),
        (b"[1, 2]", "not_an_object"),
        (b"x" * 70000, "oversized"),
        (msg("amac.notice", {"notice": "cancelled"}, entity_kind="casino"), "unknown_entity_kind"),
        (msg("amac.notice", {"notice": "cancelled"}, event_id=""), "invalid_envelope"),
        (msg("amac.notice", {"notice": "cancelled"}, event_time="2999-01-01T00:00:00+08:00"), "future_time"),
        (msg("amac.notice", {"notice": "cancelled"}, event_time="2025-13-01T00:00:00+08:00"), "invalid_time"),
        (msg("amac.notice", "lost_contact"), "invalid_payload"),
    ],
)
def test_rejection_reasons(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidEvent) as exc:
        parse_event(data)
    assert exc.value.reason == reason


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_parse_or_are_rejected_with_a_known_reason(data: bytes) -> None:
    try:
        parse_event(data)
    except InvalidEvent as exc:
        assert exc.reason in REASONS


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(CATALOGUE)), st.dictionaries(st.text(max_size=25), json_values, max_size=6))
def test_random_payloads_parse_or_are_rejected(etype: str, payload: dict) -> None:
    try:
        ev = parse_event(msg(etype, payload))
    except InvalidEvent as exc:
        assert exc.reason in REASONS
    else:
        assert ev.event_type == etype


@settings(max_examples=3000, deadline=None)
@given(
    st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30)),
    st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1),
)
def test_posix_seconds_is_timestamp_bit_for_bit(naive: dt.datetime, minutes: int) -> None:
    """The event path's ``ts`` equals ``datetime.timestamp()`` exactly, for every fixed offset
    (msgspec decodes RFC 3339 offsets to ``datetime.timezone``), microseconds included."""
    t = naive.replace(tzinfo=dt.timezone(dt.timedelta(minutes=minutes)))
    assert posix_seconds(t) == t.timestamp()


def test_posix_seconds_falls_back_for_other_zones() -> None:
    t = dt.datetime(2025, 3, 30, 1, 30, tzinfo=zoneinfo.ZoneInfo("Europe/Berlin"))  # offset varies by date
    assert posix_seconds(t) == t.timestamp()
    naive = dt.datetime(2025, 4, 1, 10, 0, 0, 123)
    assert posix_seconds(naive) == naive.timestamp()


def test_event_ts_is_its_event_time(valid_example_lines: list[bytes]) -> None:
    for line in valid_example_lines:
        ev = parse_event(line)
        assert ev.ts == ev.event_time.timestamp()
    ev = parse_event(msg("amac.notice", {"notice": "lost_contact"}, event_time="2025-04-01T10:00:00.000123-03:30"))
    assert ev.ts == dt.datetime(2025, 4, 1, 13, 30, 0, 123, tzinfo=dt.UTC).timestamp()


# ---- the text, depth and date rules of the contract (issue 22) ----------------------------

_BASE = {
    "schema": "riskflow.event/v1",
    "event_id": "e-1",
    "event_type": "grid.report",
    "entity_id": "PFM-1",
    "entity_kind": "private_fund_manager",
    "region": "330100",
    "event_time": "2025-04-01T10:00:00+08:00",
    "source": "grid_report",
    "payload": {"observation": "office_closed", "note": "看到 closed"},
}


def _with(path: tuple[str, ...], value: object) -> bytes:
    obj = json.loads(json.dumps(_BASE))
    target = obj
    for k in path[:-1]:
        target = target[k]
    target[path[-1]] = value
    return json.dumps(obj).encode()


@pytest.mark.parametrize(
    ("path", "value", "reason"),
    [
        (("entity_id",), "PFM\u00001", "control_character"),
        (("entity_id",), "PFM\x1b]0;pwned\x07", "control_character"),
        (("event_id",), "e\u202e1", "control_character"),
        (("source",), "grid\u0085", "control_character"),
        (("payload", "note"), "bell\x07", "control_character"),
        (("payload", "note"), "isolate\u2066", "control_character"),
        (("event_time",), "0001-01-01T00:00:00+14:00", "invalid_date"),
        (("event_time",), "1899-12-31T23:59:59+00:00", "invalid_date"),
        (("payload", "junk"), json.loads("[" * 65 + "]" * 65), "too_deep"),
    ],
)
def test_contract_refuses_control_characters_deep_nesting_and_dates_out_of_range(
    path: tuple[str, ...], value: object, reason: str
) -> None:
    with pytest.raises(InvalidEvent) as exc:
        parse_event(_with(path, value), now=2e9)
    assert exc.value.reason == reason and exc.value.detail


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("payload", "note"), "line one\nline two\tTAB\r"),  # free text keeps tab and line breaks
        (("entity_id",), "杭州-PFM-1"),
        (("payload", "note"), "“quoted” — dash, 不 normal"),  # U+201C/U+2014 share a lead byte with the overrides
        (("payload", "junk"), json.loads("[" * 62 + "]" * 62)),  # envelope + payload + 62 = the limit
        (("payload", "note"), "[{" * 200),  # brackets inside a string do not nest
        (("event_time",), "1900-01-01T00:00:00+00:00"),
    ],
)
def test_contract_accepts_text_and_nesting_at_its_limits(path: tuple[str, ...], value: object) -> None:
    assert parse_event(_with(path, value), now=2e9).entity_id


def test_a_deep_message_is_refused_before_decoding_whatever_the_stack() -> None:
    # 3,000 levels: a decoder's own recursion limit would raise RecursionError
    with pytest.raises(InvalidEvent) as exc:
        parse_event(b'{"a":' * 3000 + b"1" + b"}" * 3000, max_bytes=1 << 20)
    assert exc.value.reason == "too_deep"


@pytest.mark.parametrize("period_end", ["9999-12-31", "1899-12-31"])
def test_payload_dates_outside_the_contract_are_refused(period_end: str) -> None:
    raw = _with(("event_type",), "filing.submitted")
    obj = json.loads(raw)
    obj["payload"] = {"filing": "annual", "period_end": period_end}
    with pytest.raises(InvalidEvent) as exc:
        parse_event(json.dumps(obj).encode(), now=2e9)
    assert exc.value.reason == "invalid_date"
