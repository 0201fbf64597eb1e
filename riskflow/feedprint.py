"""Alerts printed for people or machines: the lines of ``riskflow alerts tail`` and the demo.

An alert id comes back with a higher ``revision`` when its episode grows or the
entity's level moves; ``tail`` prints each (id, revision) once, later revisions
marked (``↑ revision 3 (level orange→red 升级)``), and drops a revision at or below
one already printed (a re-delivered or superseded record); the terminal sink
(riskflow/sinks/terminal.py) does the reading. Every line is escaped
(``riskflow.core.textsafe.printable``): an alert's text cannot drive the terminal, and
on a terminal it is cut to the terminal's width. A message that is no alert is
skipped with one line on stderr.

>>> from riskflow.core.alerts import Alert
>>> t = Tracker()
>>> a = Alert(alert_id="x", entity_id="PF-1", entity_kind="private_fund", region="330100", rule_id="r",
...           severity="high", title_zh="z", title_en="e", dimension="", evidence={}, event_time="",
...           detected_at="", risk_level="orange")
>>> t.see(a)
(True, None)
>>> t.see(a)  # the same (id, revision) again: not printed
(False, (1, 'orange'))
>>> a.revision, a.risk_level = 3, "red"
>>> ok, prev = t.see(a); revision_mark(a, prev)
'↑ revision 3 (level orange→red 升级)'
>>> fit("杭州 Hangzhou PF-1 承诺保本", 16)
'杭州 Hangzhou P…'
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import unicodedata
from collections.abc import Callable
from typing import Any, TextIO

from riskflow.core.alerts import Alert
from riskflow.core.schema import REGIONS
from riskflow.core.textsafe import printable

_SEV = {"low": "LOW ", "medium": "MED ", "high": "HIGH", "critical": "CRIT"}


_RANK = {"green": 0, "yellow": 1, "orange": 2, "red": 3}


class Tracker:
    """The highest revision and its level printed so far, per alert id."""

    def __init__(self) -> None:
        self.printed: dict[str, tuple[int, str]] = {}

    def see(self, a: Alert) -> tuple[bool, tuple[int, str] | None]:
        """(print it?, the (revision, level) printed before for this id, if any)."""
        prev = self.printed.get(a.alert_id)
        if prev is not None and a.revision <= prev[0]:
            return False, prev
        self.printed[a.alert_id] = (a.revision, a.risk_level)
        return True, prev


def revision_mark(a: Alert, prev: tuple[int, str] | None) -> str:
    """How a later revision of an alert already printed is announced: a level move first,
    else the episode's count of hits."""
    if prev is None:
        return ""
    old, new = prev[1], a.risk_level
    if old and new and old != new:
        up = _RANK.get(new, 0) > _RANK.get(old, 0)
        return f"{'↑' if up else '↓'} revision {a.revision} (level {old}→{new} {'升级' if up else '降级'})"
    count = (a.episode or {}).get("count")
    return f"↻ revision {a.revision}" + (f" (episode now {count} hits 次)" if count else "")


def _region_code(entity_id: str) -> str:
    return next((p for p in entity_id.split("-") if p in REGIONS), "")


def region_names(a: Alert) -> tuple[str, str]:
    """The alert's region in English and Chinese. An alert without one takes the region code
    its entity id carries (``PF-330100-0001``); a contagion alert on a counterparty RiskFlow has
    no events of (so no region) names the region of the entity the risk came from, marked so."""
    code = a.region or _region_code(a.entity_id)
    if code:
        return REGIONS.get(code, (code, ""))
    source = a.evidence.get("source") if isinstance(a.evidence, dict) else None
    src = _region_code(source) if isinstance(source, str) else ""
    if src:
        en, zh = REGIONS[src]
        return f"via {en}", f"经{zh}"
    return "region unknown", "地区未知"


def format_alert(a: Alert) -> str:
    en, zh = region_names(a)
    ev = ", ".join(f"{k}={v}" for k, v in a.evidence.items())
    shadow = " [shadow]" if a.mode == "shadow" else ""
    level = a.risk_level or "-"
    return (
        f"{a.event_time[:16].replace('T', ' ')}  {_SEV.get(a.severity, a.severity)} {level:<6}  {en} {zh}  "
        f"{a.entity_id}  {a.title_zh} {a.title_en}{shadow}  ({ev})"
    )


def _cells(ch: str) -> int:
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def fit(line: str, width: int | None) -> str:
    """``line`` cut to ``width`` terminal cells (a CJK character takes two), ``…`` marking a cut."""
    if width is None or sum(map(_cells, line)) <= width:
        return line
    out, used = [], 0
    for ch in line:
        c = _cells(ch)
        if used + c > width - 1:
            break
        out.append(ch)
        used += c
    return "".join(out) + "…"


def terminal_width(out: TextIO) -> int | None:
    """Cells per line to fit: ``COLUMNS`` if set, else the terminal's; ``None`` (no cut) when
    ``out`` is a file or pipe, where a reader wants whole lines."""
    env = os.environ.get("COLUMNS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return os.get_terminal_size(out.fileno()).columns if out.isatty() else None
    except (OSError, ValueError, AttributeError):
        return None


async def tail_alerts(
    bootstrap: str | dict[str, Any],
    topic: str,
    *,
    as_json: bool = False,
    out: TextIO = sys.stdout,
    stop: asyncio.Event | None = None,
    keep: Callable[[Alert], bool] = lambda a: True,
    err: TextIO | None = None,
    width: int | None = None,
) -> int:
    """Print every alert on ``topic`` from the beginning, each (id, revision) once and only
    revisions above the one printed before, until ``stop``; returns the ids printed.
    With ``as_json`` each line is the alert's JSON (it has ``revision``) plus ``previous``
    (``{"revision", "risk_level"}`` printed before) on a revision; other lines are cut to
    ``width`` cells when given. The terminal sink (riskflow/sinks/terminal.py) in the
    shared consumer loop."""
    from riskflow.sinks.base import consume  # the sinks stand on this module's formatting
    from riskflow.sinks.terminal import TerminalSink

    sink = TerminalSink(as_json=as_json, out=out, err=err, keep=keep, width=width)
    await consume(sink, bootstrap, topic, stop=stop)
    return len(sink.tracker.printed)


def render(a: Alert, raw: bytes, prev: tuple[int, str] | None, as_json: bool, width: int | None = None) -> str:
    """One output line, escaped: ``raw`` re-serialised on one line (with ``previous`` on a
    revision), or the alert in words, cut to ``width`` cells."""
    if as_json:
        d = json.loads(raw)
        if prev is not None:
            d["previous"] = {"revision": prev[0], "risk_level": prev[1]}
        return printable(json.dumps(d, ensure_ascii=False), json=True)
    mark = revision_mark(a, prev)
    return fit(printable(f"{mark}  {format_alert(a)}" if mark else format_alert(a)), width)
