"""``riskflow demo``, the README's first command, run as a user runs it (its own embedded
Tansu, a fresh directory): the banner, then alerts that fit the terminal and no client log
line; a taken metrics port, a dead child and a SIGTERM handled with a clear outcome."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import unicodedata
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.procs import _pids, _ppid, alive, listening, wait_until

ALERT_LINE = re.compile(r"^(?:[↑↓↻] revision \d+(?: \([^)]*\))?  )?\d{4}-\d\d-\d\d \d\d:\d\d  (?:LOW |MED |HIGH|CRIT) ")
COLUMNS = 100


def cells(line: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in line)


class Demo:
    """A running ``riskflow demo`` and what its banner announced."""

    def __init__(self, cwd: Path, *args: str, env: dict[str, str] | None = None) -> None:
        base = {k: v for k, v in os.environ.items() if not k.startswith("RISKFLOW_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "riskflow", "demo", *args],
            cwd=cwd,
            env={**base, "COLUMNS": str(COLUMNS), "RISKFLOW_FEED_PORT": "0", **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        self.banner: list[str] = []
        while not self.banner or not self.banner[-1].startswith("Alerts"):
            line = self.proc.stderr.readline()
            assert line, f"the demo ended before its banner: {self.banner}"
            self.banner.append(line.rstrip("\n"))
        text = "\n".join(self.banner)
        self.worker = int(re.search(r"worker   pid (\d+)", text)[1])  # type: ignore[index]
        self.broker_port = int(re.search(r"Tansu on 127\.0\.0\.1:(\d+)", text)[1])  # type: ignore[index]
        tansu = [p for p in _pids() if _ppid(p) == self.proc.pid and p != self.worker]
        assert len(tansu) == 1, tansu
        self.tansu = tansu[0]

    def field(self, name: str) -> str:
        return next(line for line in self.banner if line.startswith(f"  {name} ")).split(None, 1)[1]

    def finish(self, timeout: float = 180) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, err

    def kill(self) -> None:
        for pid in (self.proc.pid, self.worker, self.tansu):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(10)


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another process listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_first_run_shows_the_banner_then_alerts_and_no_client_logs(tmp_path: Path, taken_port: int) -> None:
    """The README's first command, with RISKFLOW_METRICS_PORT taken by another process (issue 20:
    the worker died on it and the demo printed 0 alerts and exited 0)."""
    demo = Demo(tmp_path, "--duration", "40", env={"RISKFLOW_METRICS_PORT": str(taken_port)})
    try:
        assert demo.banner[0].startswith("RiskFlow demo 风险监测演示: 300 simulated entities (seed 7)")
        assert [line.split()[0] for line in demo.banner[1:-1]] == [
            "broker",
            "worker",
            "feed",
            "metrics",
            "store",
            "logs",
        ]
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/#token=\S+  \(admin token for this run\)", demo.field("feed"))
        metrics = demo.field("metrics")
        m = re.fullmatch(
            rf"(http://127\.0\.0\.1:(\d+)/metrics) \(port {taken_port} is taken: RISKFLOW_METRICS_PORT\)", metrics
        )
        assert m and int(m[2]) != taken_port, metrics
        assert demo.field("logs").startswith(".riskflow/demo.log, .riskflow/demo-worker.log")
        assert wait_until(lambda: _get(m[1]) is not None, timeout=60), "the worker's metrics endpoint never answered"
        assert "riskflow_events_total" in (_get(m[1]) or "")
        code, out, err = demo.finish()
    finally:
        if demo.proc.poll() is None:
            demo.kill()
    assert code == 0, err
    rest = [line for line in err.splitlines() if line.strip()]
    assert len(rest) == 1 and re.fullmatch(r"riskflow demo: stopped after \d+ s; \d+ alerts shown; .*", rest[0]), err
    lines = out.splitlines()
    assert lines, "no alert within 40 s"
    for line in lines:
        assert ALERT_LINE.match(line), line
        assert cells(line) <= COLUMNS, line
        assert "\x1b" not in line and "aiokafka" not in line and " INFO " not in line
    assert "[^Worker]" in (tmp_path / ".riskflow" / "demo-worker.log").read_text()
    assert not alive(demo.worker) and not listening(demo.broker_port)


def _get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.read().decode()
    except OSError:
        return None


@pytest.mark.parametrize("child", ["worker", "broker"])
def test_a_child_that_dies_ends_the_demo_with_a_reason(tmp_path: Path, child: str) -> None:
    demo = Demo(tmp_path)
    try:
        os.kill(demo.worker if child == "worker" else demo.tansu, signal.SIGKILL)
        code, _, err = demo.finish()
    finally:
        if demo.proc.poll() is None:
            demo.kill()
    assert code == 2 and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    if child == "worker":
        assert last.startswith("riskflow demo: the worker was killed by SIGKILL"), err
        assert wait_until(lambda: not listening(demo.broker_port))
    else:
        assert last.startswith("riskflow demo: the embedded broker was killed by SIGKILL"), err
        assert wait_until(lambda: not alive(demo.worker))


def test_sigterm_stops_everything_the_demo_started(tmp_path: Path) -> None:
    demo = Demo(tmp_path)
    try:
        demo.proc.send_signal(signal.SIGTERM)
        code, _, err = demo.finish()
    finally:
        if demo.proc.poll() is None:
            demo.kill()
    assert code == 0 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("riskflow demo: stopped after")
    assert not alive(demo.worker) and not alive(demo.tansu) and not listening(demo.broker_port)
