"""Reporting periods of a simulated history: month ends, quarter ends, year ends.

>>> import datetime as dt
>>> cal = Calendar(dt.date(2025, 1, 1), 100)
>>> [(p.day, p.period_end, p.quarter) for p in cal.periods]
[(31, '2025-01-31', False), (59, '2025-02-28', False), (90, '2025-03-31', True)]
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass


@dataclass(frozen=True)
class Period:
    day: int  # day offset of the day after the period end (the first day a filing is due)
    period_end: str
    quarter: bool
    year: bool


class Calendar:
    """Month ends that fall inside ``[start, start + days)``."""

    def __init__(self, start: _dt.date, days: float) -> None:
        self.start = start
        self.periods: list[Period] = []
        y, m = start.year, start.month
        while True:
            y, m = (y + 1, 1) if m == 12 else (y, m + 1)
            first = _dt.date(y, m, 1)
            day = (first - start).days
            if day >= days:
                break
            last = first - _dt.timedelta(days=1)
            self.periods.append(Period(day, last.isoformat(), last.month % 3 == 0, last.month == 12))
