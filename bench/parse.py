"""Parsing + validation of the v1 contract: msgspec vs orjson vs stdlib json, same lines, same run.

``riskflow/core/schema.py`` decodes with msgspec typed structs (decode and validate
in one C pass). The alternatives decode to dicts with ``orjson.loads`` or
``json.loads`` and then validate with plain Python checks compiled from the
very same schema (``msgspec.inspect`` of the v1 structs: required fields,
types, string lengths, numeric bounds, literals, dates, time zone), so all
three accept and reject the same messages. Each round times the three over
the same simulated history; the headline is how many times faster the
product's ``parse_event`` is than the best dict-based alternative (orjson).

    python bench/parse.py [--events 100000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import time
from collections.abc import Callable
from typing import Any

if __package__ in (None, ""):
    import _path  # noqa: F401

import msgspec
import orjson
from msgspec import inspect as mi

from bench.common import headline, history, median
from riskflow.core.schema import CATALOGUE, ENTITY_KINDS, REGIONS, SCHEMA_ID, InvalidEvent, _Envelope, parse_event

Check = Callable[[Any], bool]


def _checker(t: mi.Type) -> Check:
    """A plain-Python validator for one msgspec type (the subset the v1 schema uses)."""
    if isinstance(t, mi.StrType):
        lo, hi = t.min_length or 0, t.max_length
        return lambda v: isinstance(v, str) and lo <= len(v) and (hi is None or len(v) <= hi)
    if isinstance(t, mi.FloatType | mi.IntType):
        ge, le = t.ge, t.le
        kinds: tuple[type, ...] = (int, float) if isinstance(t, mi.FloatType) else (int,)
        return lambda v: (
            isinstance(v, kinds) and not isinstance(v, bool) and (ge is None or v >= ge) and (le is None or v <= le)
        )
    if isinstance(t, mi.BoolType):
        return lambda v: isinstance(v, bool)
    if isinstance(t, mi.LiteralType):
        allowed = frozenset(t.values)
        return lambda v: isinstance(v, str) and v in allowed
    if isinstance(t, mi.DateType):
        return _is_date
    if isinstance(t, mi.DateTimeType):
        return _is_aware_datetime
    if isinstance(t, mi.ListType):
        item, hi = _checker(t.item_type), t.max_length
        return lambda v: isinstance(v, list) and (hi is None or len(v) <= hi) and all(item(x) for x in v)
    if isinstance(t, mi.UnionType):
        parts = [_checker(x) for x in t.types]
        return lambda v: any(p(v) for p in parts)
    if isinstance(t, mi.NoneType):
        return lambda v: v is None
    if isinstance(t, mi.AnyType | mi.RawType):
        return lambda v: True
    raise TypeError(f"no checker for {t!r}")


def _is_date(v: Any) -> bool:
    try:
        _dt.date.fromisoformat(v)
    except (TypeError, ValueError):
        return False
    return True


def _is_aware_datetime(v: Any) -> bool:
    try:
        return _dt.datetime.fromisoformat(v).tzinfo is not None
    except (TypeError, ValueError):
        return False


def _struct_checker(cls: type) -> list[tuple[str, bool, Check]]:
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    return [(f.encode_name, f.required, _checker(f.type)) for f in info.fields]


_ENVELOPE = _struct_checker(_Envelope)
_PAYLOADS = {k: _struct_checker(v) for k, v in CATALOGUE.items()}
_KINDS = frozenset(ENTITY_KINDS)


def _fields_ok(obj: Any, spec: list[tuple[str, bool, Check]]) -> bool:
    if not isinstance(obj, dict):
        return False
    for name, required, check in spec:
        v = obj.get(name)
        if v is None:
            if required or (name in obj and not check(None)):
                return False
            continue
        if not check(v):
            return False
    return True


def validate_dict(obj: Any) -> float:
    """The v1 contract on a decoded dict: returns event time (POSIX s) or raises ValueError."""
    if not _fields_ok(obj, _ENVELOPE) or obj["schema"] != SCHEMA_ID:
        raise ValueError("invalid envelope")
    spec = _PAYLOADS.get(obj["event_type"])
    if spec is None or obj["entity_kind"] not in _KINDS or obj["region"] not in REGIONS:
        raise ValueError("unknown type, kind or region")
    if not _fields_ok(obj["payload"], spec):
        raise ValueError("invalid payload")
    return _dt.datetime.fromisoformat(obj["event_time"]).timestamp()


def run_msgspec(lines: list[bytes]) -> int:
    ok = 0
    for v in lines:
        try:
            parse_event(v)
            ok += 1
        except InvalidEvent:
            pass
    return ok


def _run_dict(loads: Callable[[bytes], Any], lines: list[bytes]) -> int:
    ok = 0
    for v in lines:
        try:
            validate_dict(loads(v))
            ok += 1
        except ValueError:
            pass
    return ok


def run_orjson(lines: list[bytes]) -> int:
    return _run_dict(orjson.loads, lines)


def run_json(lines: list[bytes]) -> int:
    return _run_dict(json.loads, lines)


def run_msgspec_untyped(lines: list[bytes]) -> int:
    return _run_dict(msgspec.json.decode, lines)


CONTENDERS: dict[str, Callable[[list[bytes]], int]] = {
    "msgspec typed (product)": run_msgspec,
    "orjson + checks": run_orjson,
    "msgspec untyped + checks": run_msgspec_untyped,
    "stdlib json + checks": run_json,
}


def main(argv: list[str] | None = None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)

    lines = history(args.events)
    accepted = {name: fn(lines[:2000]) for name, fn in CONTENDERS.items()}
    if len(set(accepted.values())) != 1:
        raise SystemExit(f"the contenders disagree on what is valid: {accepted}")
    rates: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    for _ in range(args.rounds):
        for name, fn in CONTENDERS.items():
            t0 = time.perf_counter()
            fn(lines)
            rates[name].append(len(lines) / (time.perf_counter() - t0))
    base = median(rates["msgspec typed (product)"])
    for name, rs in rates.items():
        print(f"{name:28s} {median(rs):>12,.0f} events/s   product is {base / median(rs):.2f}x", flush=True)
    value = base / median(rates["orjson + checks"])
    headline("msgspec_vs_orjson_speedup", value, 2)
    return value


if __name__ == "__main__":
    main()
