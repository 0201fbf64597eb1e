"""Hypothesis strategies for events, derived from the payload types themselves
(``msgspec.inspect``), so a new event type or field is covered without editing them.

``valid_events()`` draws ordinary valid events; ``valid_events(extreme=True)`` draws events
at the contract's limits: the first and last dates it accepts, the largest and smallest
numbers each field allows, strings at their maximum length in any script, full lists.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

import msgspec
import msgspec.inspect as mi
from hypothesis import strategies as st

from riskflow.core.schema import CATALOGUE, ENTITY_KINDS, MAX_DATE, MIN_DATE, REGIONS, SCHEMA_ID

#: The characters the event contract allows in strings: no surrogates, no control characters,
#: no bidirectional overrides or isolates (riskflow.core.schema's text rule).
CHARS = st.characters(
    blacklist_categories=("Cs", "Cc"), blacklist_characters="\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
_TEXT = st.text(alphabet=CHARS, max_size=40)
#: The wall clock the strategies' events are checked against (``parse_event(..., now=NOW)``).
NOW = 2e9


def _floats(lo: float, hi: float, extreme: bool) -> st.SearchStrategy[float]:
    plain = st.floats(lo, hi, allow_nan=False, allow_infinity=False)
    if not extreme:
        return plain
    edges = [lo, hi, 0.0, 5e-324, 1e-300, hi / 3, max(lo, -5e-324)]
    return st.one_of(st.sampled_from([x for x in edges if lo <= x <= hi]), plain)


def for_type(t: mi.Type, extreme: bool = False) -> st.SearchStrategy[Any]:
    if isinstance(t, mi.UnionType):
        return st.one_of([for_type(x, extreme) for x in t.types])
    if isinstance(t, mi.NoneType):
        return st.none()
    if isinstance(t, mi.BoolType):
        return st.booleans()
    if isinstance(t, mi.IntType):
        lo = t.ge if t.ge is not None else -(2**40)
        hi = t.le if t.le is not None else 2**40
        ints = st.integers(lo, hi)
        return st.one_of(st.sampled_from([lo, hi, 0 if lo <= 0 <= hi else lo]), ints) if extreme else ints
    if isinstance(t, mi.FloatType):
        lo = t.ge if t.ge is not None else -1e15
        hi = t.le if t.le is not None else 1e15
        return _floats(lo, hi, extreme)
    if isinstance(t, mi.StrType):
        lo, hi = t.min_length or 0, t.max_length or 40
        text = st.text(alphabet=CHARS, min_size=lo, max_size=min(hi, 40))
        if not extreme:
            return text
        longest = st.sampled_from(["x", "风", "\U0001f600", "\u00e9"]).map(lambda c: c * hi)
        return st.one_of(text, longest, st.just("é" * max(lo, 1)))
    if isinstance(t, mi.LiteralType):
        return st.sampled_from(t.values)
    if isinstance(t, mi.DateType):
        if extreme:
            return st.sampled_from([MIN_DATE, MAX_DATE, _dt.date(2000, 2, 29), _dt.date(2025, 12, 31)]).map(
                lambda d: d.isoformat()
            )
        return st.dates(_dt.date(1990, 1, 1), _dt.date(2030, 12, 31)).map(lambda d: d.isoformat())
    if isinstance(t, mi.ListType):
        size = min(t.max_length or 5, 5)
        if extreme and t.max_length:
            return st.lists(for_type(t.item_type, extreme), min_size=t.max_length, max_size=t.max_length)
        return st.lists(for_type(t.item_type, extreme), max_size=size)
    if isinstance(t, mi.AnyType):
        return st.one_of(st.none(), st.integers(), _TEXT, st.floats(allow_nan=False, allow_infinity=False))
    raise NotImplementedError(f"no strategy for {t!r}: extend for_type")


def payload(cls: type, extreme: bool = False) -> st.SearchStrategy[dict[str, Any]]:
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    required = {f.encode_name: for_type(f.type, extreme) for f in info.fields if f.required}
    optional = {f.encode_name: for_type(f.type, extreme) for f in info.fields if not f.required}
    return st.fixed_dictionaries(required, optional=optional)


_TIMES = st.datetimes(_dt.datetime(2020, 1, 1), _dt.datetime(2026, 1, 1), timezones=st.just(_dt.UTC))
#: event times at the contract's limits: its first instant (UTC), the last one the wall clock
#: allows, and offsets from -23:59 to +23:59 around them
_EXTREME_TIMES = st.one_of(
    st.just(_dt.datetime(MIN_DATE.year, 1, 1, tzinfo=_dt.UTC)),
    st.just(_dt.datetime.fromtimestamp(NOW + 86_399, _dt.UTC)),
    st.builds(
        lambda base, minutes: base.astimezone(_dt.timezone(_dt.timedelta(minutes=minutes))),
        st.sampled_from([_dt.datetime(1900, 1, 2, tzinfo=_dt.UTC), _dt.datetime.fromtimestamp(NOW + 3600, _dt.UTC)]),
        st.integers(-23 * 60 - 59, 23 * 60 + 59),
    ),
    _TIMES,
)


@st.composite
def valid_events(draw: st.DrawFn, entity_id: str | None = None, extreme: bool = False) -> bytes:
    etype = draw(st.sampled_from(sorted(CATALOGUE)))
    obj = {
        "schema": SCHEMA_ID,
        "event_id": draw(st.text(alphabet="abcdef0123456789-", min_size=1, max_size=128 if extreme else 20)),
        "event_type": etype,
        "entity_id": entity_id or draw(st.sampled_from(["PF-1", "PFM-2", "BNK-3"])),
        "entity_kind": draw(st.sampled_from(ENTITY_KINDS)),
        "region": draw(st.sampled_from(sorted(REGIONS))),
        "event_time": draw(_EXTREME_TIMES if extreme else _TIMES).isoformat(),
        "source": draw(st.sampled_from(["amac", "grid", "bank-feed"])),
        "payload": draw(payload(CATALOGUE[etype], extreme)),
    }
    return msgspec.json.encode(obj)
