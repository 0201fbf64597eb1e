"""What ``anomaly.daily`` remembers about one entity: named fields, a compact encoding.

The state lives in the entity's changelog record, so every Struct here is
``array_like`` (a msgpack array, no field names): a fund with every metric
active stays within a few hundred bytes. Fields added later must have defaults
and go last, so that older states still decode. The Structs live apart from
:mod:`detectors.anomaly.daily` because that module can be compiled with mypyc,
and a compiled module cannot define msgspec Structs (``detectors.MYPYC_MODULES``).

A state read back from msgpack arrives as plain lists (the entity record holds
every detector's state untyped); :func:`restore` turns it into a
:class:`DailyState` again, and also migrates the dict layout that earlier releases
stored (detector versions 1 and 2; the version in alerts did not change with the layout):

>>> st = DailyState(day=20100, counts={"cmp": CountBaseline(rate=0.25)})
>>> again = restore(msgspec.msgpack.decode(msgspec.msgpack.encode(st)))
>>> again == st, again.counts["cmp"].recent
(True, [0, 0, 0, 0, 0, 0])
>>> old = {"day": 20100, "days": 3, "acc": {}, "inv": [], "fired": [], "nav": 0.0,
...        "c": {"cmp": [0.25, 0.3, 0, 0, 0, 0, 0, 0, 1]}, "l": {"nav": [2, 0.01, 0.002, 0]}}
>>> new = restore(old)
>>> new.counts["cmp"].recent, new.levels["nav"].centre, new.hits
([0, 0, 0, 0, 0, 1], 0.01, {})
"""

from __future__ import annotations

from typing import Any

import msgspec

#: Days before the open one whose counts a count metric keeps (with the open day: a 7-day window).
RECENT_DAYS = 6


def _no_recent_days() -> list[int]:
    return [0] * RECENT_DAYS


class CountBaseline(msgspec.Struct, array_like=True):
    """One count metric's baseline: an EWMA rate and variance of its daily count."""

    rate: float = 0.0  # EWMA of the daily count
    var: float = 0.0  # EWMA of the squared deviation from the rate
    run: int = 0  # flagged days on balance: +1 per flagged day, -1 per other day, at least 0
    recent: list[int] = msgspec.field(default_factory=_no_recent_days)  # the last 6 days' counts, oldest first


class LevelBaseline(msgspec.Struct, array_like=True):
    """One level metric's baseline: an EWMA centre and mean absolute deviation, weekday offsets."""

    n: int = 1  # observed days learned (the first one set the centre)
    centre: float = 0.0  # EWMA of the value (log1p of the amount for money flows)
    mad: float = 0.0  # EWMA of the absolute deviation from the expectation (Huber-clipped)
    run: int = 0  # as CountBaseline.run; held while a persistence window still alarms
    offsets: list[float] = []  # per weekday, Monday first (money flows only; empty otherwise)


class DailyState(msgspec.Struct, array_like=True):
    """Everything ``anomaly.daily`` keeps for one entity (``detectors/anomaly/daily.py``)."""

    day: int = -1  # the open day, in days since 1970-01-01 (China Standard Time); -1: no event yet
    days: int = 0  # days of the entity's history before the open one, silent days included
    #: The open day so far, by metric code: counts, money in and out, the NAV change, and the
    #: sentiment's sum (``ss``) and number (``sn``) of opinions.
    sums: dict[str, Any] = {}
    investors: list[int] = []  # 16-bit hashes of the open day's distinct retail investors
    flagged: list[str] = []  # count metrics already flagged on the open day
    counts: dict[str, CountBaseline] = {}
    levels: dict[str, LevelBaseline] = {}
    #: Money flows: bit mask of the hits among the last ``persist_n`` observed days, newest lowest.
    hits: dict[str, int] = {}
    nav: float = 0.0  # the last NAV reported (0: none yet)


def restore(stored: Any) -> DailyState:
    """A state as :class:`DailyState`, whatever form it was read in: itself, the msgpack array
    of a :class:`DailyState`, or the dict that releases before this module stored (migrated)."""
    if isinstance(stored, DailyState):
        return stored
    if isinstance(stored, dict):
        return _from_v2(stored)
    return msgspec.convert(stored, DailyState)


def _from_v2(old: dict[str, Any]) -> DailyState:
    """The dict layout of earlier releases: ``{"day", "days", "acc", "inv", "fired", "c":
    {metric: [rate, var, run, 6 past days]}, "l": {metric: [n, centre, mad, run, offsets...]},
    "h" (absent before version 2), "nav"}``."""
    counts = {m: [c[0], c[1], c[2], c[3:]] for m, c in old["c"].items()}
    levels = {m: [lv[0], lv[1], lv[2], lv[3], lv[4:]] for m, lv in old["l"].items()}
    fields = [
        old["day"],
        old["days"],
        old["acc"],
        old["inv"],
        old["fired"],
        counts,
        levels,
        old.get("h", {}),
        old["nav"],
    ]
    return msgspec.convert(fields, DailyState)  # validated as a stored DailyState is
