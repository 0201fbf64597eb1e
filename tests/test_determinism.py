"""Backtest = live: the same history gives the same alert ids and levels offline, through a live
worker fed by ``riskflow replay --speed max``, and through ``riskflow replay --speed 3600``."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest

from riskflow.backtest import backtest
from riskflow.schema import encode_event
from riskflow.sim import DEFAULT_START, simulate
from riskflow.sim.emit import format_cst
from tests.kafka_fixtures import Stack

COMPRESS = 120  # 40 simulated days -> 8 hours of event time: 8 s of wall time at --speed 3600


def short_history() -> list[bytes]:
    """A simulated history squeezed into a few hours of event time, still in event-time order."""
    events, labels = simulate(entities=30, days=40, seed=3)
    assert labels
    t0 = DEFAULT_START.timestamp()
    out = []
    for e in events:
        t = dt.datetime.fromisoformat(e["event_time"]).timestamp()
        out.append(encode_event({**e, "event_time": format_cst(int(t0 + (t - t0) / COMPRESS))}))
    return out


def levels(alerts: list[dict]) -> dict[str, tuple[str, str]]:
    """alert id -> (severity, risk level) of its highest revision, as an upserting sink keeps it."""
    best: dict[str, dict] = {}
    for a in alerts:
        if a["alert_id"] not in best or a.get("revision", 1) >= best[a["alert_id"]].get("revision", 1):
            best[a["alert_id"]] = a
    return {k: (a["severity"], a.get("risk_level", "")) for k, a in best.items()}


@pytest.mark.parametrize("speed", ["max", "3600"])
def test_backtest_equals_live_worker(stack: Stack, tmp_path: Path, speed: str) -> None:
    lines = short_history()
    path = tmp_path / "history.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    emitted: list[dict] = []
    backtest(lines, [], settings=stack.settings, on_alert=lambda a: emitted.append(msgspec.to_builtins(a)))
    expected = levels(emitted)
    assert len(expected) >= 10

    worker = stack.start_worker()
    env = dict(os.environ, **stack.env)
    rp = subprocess.run(
        [sys.executable, "-m", "riskflow", "replay", str(path), "--speed", speed, "--no-progress"],
        env=env,
        capture_output=True,
        timeout=180,
    )
    assert rp.returncode == 0, rp.stderr.decode()[-2000:]
    # A loaded machine can pause the worker longer than the consumer's quiet period: read again
    # (from the start) until the alerts match or the worker has had ample time.
    deadline = time.monotonic() + 240
    while True:
        raw = stack.consume(stack.settings.topic_alerts, min_count=len(expected), timeout=120, settle=5)
        got = levels([msgspec.json.decode(v) for v in raw])
        if got == expected or time.monotonic() > deadline:
            break
    assert got == expected, worker.log_text()[-3000:]
