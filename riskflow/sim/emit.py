"""The per-entity event builder of the simulator: fast, deterministic, v1 envelopes.

Times are offsets in days from the history start; an event at ``t`` days gets
``event_time`` ``start + t`` in China Standard Time (UTC+8), to the second.

>>> import datetime as dt, random
>>> from riskflow.sim.population import Entity
>>> start = dt.datetime(2025, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=8)))
>>> em = Emitter(Entity(0, "PF-330100-00000", "private_fund", "330100"), random.Random(1), 1, start)
>>> em.ev(1.5, "amac.notice", "amac", {"notice": "cancelled"})
>>> em.out[0][1]["event_time"], em.out[0][1]["event_id"]
('2025-01-02T12:00:00+08:00', 'sim1-0-0')
"""

from __future__ import annotations

import datetime as _dt
import random
from typing import Any

from riskflow.sim.population import Entity

_CST_OFFSET = 8 * 3600
_date_cache: dict[int, str] = {}
_TOD: list[str] = []


def format_cst(ts: int) -> str:
    """RFC 3339 in UTC+8 for POSIX seconds ``ts`` (table-driven: the hot path of the simulator)."""
    if not _TOD:
        _TOD.extend(f"T{h:02d}:{m:02d}:{s:02d}+08:00" for h in range(24) for m in range(60) for s in range(60))
    local = ts + _CST_OFFSET
    day = local // 86400
    d = _date_cache.get(day)
    if d is None:
        d = _date_cache[day] = (_dt.date(1970, 1, 1) + _dt.timedelta(days=day)).isoformat()
    return d + _TOD[local - day * 86400]


class Emitter:
    """Collects one entity's events as ``(sort_key, event_dict)``.

    ``sort_key`` orders by event time, then entity index, then emission order,
    so the merged history is the same for a seed whatever the platform.
    """

    __slots__ = ("_n", "_prefix", "_start_ts", "days", "ent", "out", "rng")

    def __init__(self, ent: Entity, rng: random.Random, seed: int, start: _dt.datetime, days: float = 1e9) -> None:
        self.ent = ent
        self.rng = rng
        self._start_ts = int(start.timestamp())
        self._prefix = f"sim{seed}-{ent.index}-"
        self._n = 0
        self.days = days
        self.out: list[tuple[int, dict[str, Any]]] = []
        format_cst(self._start_ts)  # fills the time-of-day table

    def ev(self, t: float, event_type: str, source: str, payload: dict[str, Any]) -> None:
        """Emit ``event_type`` at ``t`` days; events outside ``[0, days)`` are dropped."""
        if t < 0 or t >= self.days:
            return
        ts = self._start_ts + int(t * 86400)
        n = self._n
        self._n = n + 1
        ent = self.ent
        local = ts + _CST_OFFSET
        day = local // 86400
        d = _date_cache.get(day)
        when = (d + _TOD[local - day * 86400]) if d is not None else format_cst(ts)
        self.out.append(
            (
                (ts << 40) | (ent.index << 20) | n,
                {
                    "schema": "riskflow.event/v1",
                    "event_id": self._prefix + str(n),
                    "event_type": event_type,
                    "entity_id": ent.entity_id,
                    "entity_kind": ent.kind,
                    "region": ent.region,
                    "event_time": when,
                    "source": source,
                    "payload": payload,
                },
            )
        )

    def date(self, t: float) -> str:
        """The calendar date (UTC+8) ``t`` days after the start, ISO format."""
        return format_cst(self._start_ts + int(t * 86400))[:10]

    def office_time(self, day: float) -> float:
        """A time during office hours (09:00-18:00 CST, if the start is midnight) on ``int(day)``."""
        return int(day) + 0.375 + self.rng.random() * 0.375

    def poisson(self, rate_per_day: float, t0: float, t1: float) -> list[float]:
        """Times of a Poisson process of ``rate_per_day`` on ``[t0, t1)``."""
        out: list[float] = []
        if rate_per_day <= 0:
            return out
        rng = self.rng
        t = t0 + rng.expovariate(rate_per_day)
        while t < t1:
            out.append(t)
            t += rng.expovariate(rate_per_day)
        return out
