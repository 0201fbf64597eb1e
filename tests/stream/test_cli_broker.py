"""``riskflow broker``: it says so when it cannot listen, and no signal leaves Tansu behind."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.procs import _pids, _ppid, alive, listening, wait_until


class Running:
    """A ``riskflow broker --port 0`` process and the Tansu child it announced."""

    def __init__(self, tmp: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "riskflow", "broker", "--port", "0"],
            cwd=tmp,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        m = re.search(r"Tansu broker on 127\.0\.0\.1:(\d+) ", line)
        assert m, line
        self.port = int(m[1])
        children = [pid for pid in _pids() if _ppid(pid) == self.proc.pid]
        assert len(children) == 1, children
        self.tansu = children[0]

    def finish(self) -> tuple[int, str]:
        _, err = self.proc.communicate(timeout=60)
        return self.proc.returncode, err


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    r = Running(tmp_path)
    yield r
    if r.proc.poll() is None:
        r.proc.kill()
        r.proc.wait(10)
    if alive(r.tansu):
        os.kill(r.tansu, signal.SIGKILL)


def test_a_taken_port_is_refused_in_one_line(tmp_path: Path) -> None:
    """Issue 20: it said "listening on 127.0.0.1:39517 (pid 24945)" while 24945 was <defunct>."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        r = subprocess.run(
            [sys.executable, "-m", "riskflow", "broker", "--port", str(port)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert r.returncode == 2 and r.stdout == "" and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines() == [
        f"riskflow broker: 127.0.0.1:{port} is already in use by another process; "
        "pick another with --port (0: any free port)"
    ]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_tansu_too(running: Running, sig: int) -> None:
    """Issue 20: ``kill -TERM`` of ``riskflow broker`` left Tansu running with parent 1."""
    assert alive(running.tansu) and listening(running.port)
    running.proc.send_signal(sig)
    code, err = running.finish()
    assert code == 0 and "Traceback" not in err
    assert not alive(running.tansu)
    assert not listening(running.port)


def test_kill_9_of_the_command_takes_tansu_down(running: Running) -> None:
    """No handler runs on SIGKILL: the child is tied to its parent's life (PR_SET_PDEATHSIG)."""
    running.proc.kill()
    running.proc.wait(10)
    assert wait_until(lambda: not alive(running.tansu)), "Tansu outlived the command that started it"
    assert wait_until(lambda: not listening(running.port))


def test_a_broker_that_dies_is_reported(running: Running) -> None:
    os.kill(running.tansu, signal.SIGKILL)
    code, err = running.finish()
    assert code == 2 and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"riskflow broker: the broker on 127.0.0.1:{running.port} was killed by SIGKILL"), err
