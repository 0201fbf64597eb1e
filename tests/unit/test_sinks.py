"""The sink contract, for every registered alert sink (riskflow/sinks/): found, not listed.

A sink takes a batch as the shared loop hands it over: alerts, a later revision of one
of them, and messages that are no alert (bad bytes, no value). It handles the batch
without raising, and handles it again when the batch is re-delivered (a commit lost to a
rebalance). What each sink then does with it has its own tests (test_store_sink.py,
test_store_rejects.py, test_cli_alerts.py, test_demo.py).
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest

from riskflow.core.alerts import Alert
from riskflow.sinks.base import SINKS, Sink, decode_message
from riskflow.sinks.store import StoreSink
from riskflow.sinks.terminal import TerminalSink
from riskflow.store.base import Incoming


def _alert(revision: int, level: str) -> Alert:
    fields = dict(alert_id="A-contract-1", entity_id="PF-330100-0001", entity_kind="private_fund", region="330100")
    fields |= dict(
        rule_id="pf.guaranteed_return", severity="high", title_zh="承诺保本保收益", title_en="Guaranteed return"
    )
    fields |= dict(dimension="marketing", event_time="2025-04-01T10:00:00+08:00", detected_at="2026-11-27T10:00:00Z")
    return Alert(**fields, evidence={"guaranteed": True}, risk_level=level, revision=revision)


def _batch() -> list[Incoming]:
    first, later = _alert(1, "orange"), _alert(2, "red")
    return [
        decode_message(first.to_json(), "riskflow.alerts/0@0"),
        decode_message(b"\xff{not an alert\x1b[2J", "riskflow.alerts/0@1"),
        decode_message(later.to_json(), "riskflow.alerts/0@2"),
        decode_message(None, "riskflow.alerts/0@3"),
    ]


def test_every_shipped_sink_is_registered() -> None:
    assert SINKS["store"] is StoreSink and SINKS["terminal"] is TerminalSink


@pytest.mark.parametrize("name", sorted(SINKS))
def test_sink_contract(name: str, tmp_path: Path) -> None:
    cls = SINKS[name]
    assert issubclass(cls, Sink) and cls.name == name
    sink = cls.example(tmp_path)
    assert isinstance(sink, cls)
    batch = _batch()
    assert [it.alert is None for it in batch] == [False, True, False, True]

    async def run() -> None:
        try:
            assert await sink.handle(batch) is True
            assert await sink.handle(batch) is True  # re-delivered after a lost commit
            await sink.tick()
        finally:
            await sink.close()

    asyncio.run(run())


def test_the_store_sink_keeps_the_latest_revision_and_ledgers_the_rest(tmp_path: Path) -> None:
    sink = StoreSink.example(tmp_path)
    assert asyncio.run(sink.handle(_batch()))
    row = sink.store.get("A-contract-1")
    assert (row.alert.revision, row.alert.risk_level) == (2, "red")
    assert [r.reason for r in sink.store.rejects()] == ["undecodable", "undecodable"]
    sink.store.close()


def test_the_terminal_sink_prints_each_revision_once_and_skips_junk() -> None:
    out, err = io.StringIO(), io.StringIO()
    sink = TerminalSink(out=out, err=err)
    assert asyncio.run(sink.handle(_batch())) and asyncio.run(sink.handle(_batch()))
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "↑ revision 2 (level orange→red 升级)" in lines[1]
    skipped = err.getvalue().splitlines()
    assert len(skipped) == 4 and "\x1b" not in err.getvalue()
    assert skipped[0].startswith("skipped a message that is not an alert at riskflow.alerts/0@1: DecodeError")
    assert skipped[1] == "skipped a message that is not an alert at riskflow.alerts/0@3: a message without a value"
