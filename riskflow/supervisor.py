"""``riskflow worker --processes N``: N worker processes of one consumer group on one machine.

Each child is a whole ``riskflow worker``, exactly as one started by hand on another
machine: Faust shares the input partitions among the group's members, so N processes
use N cores with no other coordination. What the children must not share, the
supervisor gives each its own: the ``/metrics`` port (``RISKFLOW_METRICS_PORT + i``),
Faust's web port (``RISKFLOW_WEB_PORT + i``; 0 stays off for all) and the Faust data
directory (``RISKFLOW_DATA_DIR/worker-i``).

The supervisor forwards SIGTERM and SIGINT to every child and waits for them (children
also get SIGTERM from the kernel if the supervisor itself dies, however it dies). A child
that exits on its own is restarted after a back-off that doubles with each failure in a
row; a failure is "quick" when the child lived less than ``quick`` seconds, and after
``max_failures`` quick ones in a row the supervisor stops every child and exits with one
line naming that child's last error: a fault that kills every start (a broken broker
address, a bad setting) is reported, not retried forever.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import IO

from riskflow.broker import bind_error, child_setup
from riskflow.core.errors import CommandError
from riskflow.core.settings import Settings
from riskflow.core.textsafe import printable

log = logging.getLogger(__name__)

#: Log lines that say why a worker stopped, preferred over its last line when naming its error.
ERROR_MARKS = ("riskflow worker:", "Error", "Exception", "CRITICAL", "ERROR")


def resolve_processes(value: str) -> int:
    """The number of worker processes for ``--processes``: a count, or ``0``/``auto`` for the
    cores this process may run on.

    >>> resolve_processes("3"), resolve_processes("auto") == resolve_processes("0") >= 1
    (3, True)
    """
    if value.strip().lower() in ("auto", "0"):
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    try:
        n = int(value)
    except ValueError:
        n = -1
    if n < 0:
        raise CommandError(f"--processes: expected a number of processes, 0 or auto, got {value!r}")
    return n


@dataclass
class Child:
    """One worker process slot: restarted in place, keeping its ports and data directory."""

    index: int
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    failures: int = 0  # quick failures in a row
    restart_at: float | None = None
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=200))
    reader: threading.Thread | None = None

    def last_error(self) -> str:
        """The last line of the child's output that names an error ("" if none does: the last
        line of a killed worker is whatever it was logging, often a box of Faust's start-up table)."""
        marked = [x for x in self.tail if any(m in x for m in ERROR_MARKS)]
        return printable(marked[-1][:300]) if marked else ""

    def how_it_ended(self) -> str:
        code = self.proc.returncode if self.proc is not None else None
        if code is not None and code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exited with code {code}"


class Supervisor:
    """Runs ``count`` children of ``riskflow worker`` until stopped; see the module doc."""

    def __init__(
        self,
        settings: Settings,
        count: int,
        rules: str | None = None,
        *,
        quick: float = 30.0,
        max_failures: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        stop_timeout: float = 60.0,
        out: IO[bytes] | None = None,
    ) -> None:
        self.settings, self.count, self.rules = settings, count, rules
        self.quick, self.max_failures = quick, max_failures
        self.backoff, self.max_backoff, self.stop_timeout = backoff, max_backoff, stop_timeout
        self.out = out if out is not None else sys.stderr.buffer
        self._out_lock = threading.Lock()
        self._stop = threading.Event()
        self.children = [Child(i, self.child_env(i)) for i in range(count)]

    def ports(self, i: int) -> tuple[int, int]:
        """(metrics port, web port) of child ``i``: the configured ones plus ``i``; 0 stays 0."""
        s = self.settings
        return (s.metrics_port + i if s.metrics_port else 0), (s.web_port + i if s.web_port else 0)

    def child_env(self, i: int) -> dict[str, str]:
        metrics, web = self.ports(i)
        level = logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower()
        return dict(
            os.environ,
            RISKFLOW_METRICS_PORT=str(metrics),
            RISKFLOW_WEB_PORT=str(web),
            RISKFLOW_DATA_DIR=str(self.settings.data_dir / f"worker-{i}"),
            RISKFLOW_LOG_LEVEL=level,
        )

    def check_ports(self) -> None:
        """Every child's ports are free, or one line naming the first taken one and its setting."""
        s = self.settings
        for i in range(self.count):
            metrics, web = self.ports(i)
            for host, port, setting in (
                (s.metrics_host, metrics, "RISKFLOW_METRICS_PORT"),
                (s.web_host, web, "RISKFLOW_WEB_PORT"),
            ):
                if not port:
                    continue
                if port > 65535:
                    raise CommandError(f"{setting} + {i} = {port} is not a port: lower {setting}")
                taken = bind_error(host, port)
                if taken is not None:
                    raise CommandError(
                        f"worker process {i} cannot serve on {host}:{port} ({taken.strerror}); "
                        f"{setting} gives process i the port {setting} + i: set it to a free range (0: off)"
                    )

    def say(self, text: str) -> None:
        with self._out_lock:
            try:
                self.out.write(f"riskflow worker: {text}\n".encode())
                self.out.flush()
            except (OSError, ValueError):  # nobody reads our output any more; the work goes on
                pass

    def _pump(self, child: Child, stream: IO[bytes]) -> None:
        """Forward a child's output line by line, prefixed with its number, keeping its tail."""
        prefix = f"[worker {child.index}] ".encode()
        for raw in iter(stream.readline, b""):
            child.tail.append(raw.decode(errors="replace").rstrip())
            with self._out_lock:
                try:
                    self.out.write(prefix + raw)
                    self.out.flush()
                except (OSError, ValueError):  # our output is gone: keep draining, or the child blocks on its pipe
                    pass
        stream.close()

    def start(self, child: Child) -> None:
        cmd = [sys.executable, "-m", "riskflow", "worker"] + (["--rules", self.rules] if self.rules else [])
        child.proc = subprocess.Popen(
            cmd,
            env=child.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a terminal's Ctrl-C reaches the supervisor only; it forwards one SIGTERM
            preexec_fn=child_setup,  # SIGTERM to the child if the supervisor dies
        )
        child.started, child.restart_at = time.monotonic(), None
        assert child.proc.stdout is not None
        child.reader = threading.Thread(target=self._pump, args=(child, child.proc.stdout), daemon=True)
        child.reader.start()
        metrics, web = self.ports(child.index)
        where = f"metrics http://{self.settings.metrics_host}:{metrics}/metrics" if metrics else "no metrics endpoint"
        self.say(
            f"worker process {child.index}: pid {child.proc.pid}, {where}, "
            f"web port {web or 'off'}, data dir {child.env['RISKFLOW_DATA_DIR']}"
        )

    def _on_signal(self, signum: int, frame: object) -> None:
        self._stop.set()

    def stop_all(self) -> bool:
        """SIGTERM to every live child, then wait; SIGKILL to any still running after ``stop_timeout``.
        Returns whether every child stopped by itself."""
        clean = True
        live = [c for c in self.children if c.proc is not None and c.proc.poll() is None]
        for c in live:
            assert c.proc is not None
            c.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for c in live:
            assert c.proc is not None
            try:
                c.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(
                    f"worker process {c.index} (pid {c.proc.pid}) did not stop in {self.stop_timeout:.0f}s: killed"
                )
                c.proc.kill()
                c.proc.wait(10)
                clean = False
        for c in self.children:
            if c.reader is not None:
                c.reader.join(5)
        return clean

    def _exited(self, child: Child, now: float) -> None:
        """A child ended on its own: schedule its restart, or give up after too many quick failures."""
        lived = now - child.started
        child.failures = child.failures + 1 if lived < self.quick else 1
        if child.reader is not None:
            child.reader.join(5)  # its last lines, for the error
        why = child.last_error()
        if child.failures >= self.max_failures:
            raise CommandError(
                f"worker process {child.index} failed {child.failures} times in a row, each within "
                f"{self.quick:.0f}s of its start; stopped all {self.count}. Last error: {why or child.how_it_ended()}"
            )
        wait = min(self.backoff * 2 ** (child.failures - 1), self.max_backoff)
        child.restart_at = now + wait
        self.say(
            f"worker process {child.index} {child.how_it_ended()} after {lived:.1f}s"
            + (f" ({why})" if why else "")
            + f"; restarting in {wait:.0f}s"
        )

    def run(self, poll: float = 0.2) -> int:
        """Start the children and keep them running until SIGTERM/SIGINT. Returns the exit code."""
        on_main = threading.current_thread() is threading.main_thread()
        previous = (
            {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)} if on_main else {}
        )
        try:
            try:
                for c in self.children:
                    self.start(c)
                while not self._stop.wait(poll):
                    now = time.monotonic()
                    for c in self.children:
                        if c.restart_at is not None:
                            if now >= c.restart_at:
                                self.start(c)
                        elif c.proc is not None and c.proc.poll() is not None:
                            self._exited(c, now)
            except BaseException:
                self.stop_all()
                raise
            self.say(f"stopping {self.count} worker processes")
            if self.stop_all():
                return 0
            raise CommandError("stopped, but not every worker process stopped by itself (see above)")
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def run_supervisor(settings: Settings, count: int, rules: str | None = None) -> int:
    """Check once what every child would fail on (settings, rule pack, ports, topics and their
    partition counts), then supervise ``count`` workers. Returns the exit code."""
    import asyncio

    from detectors.factory import pack_from_settings
    from riskflow.core.kafka import require_bootstrap
    from riskflow.worker import prepare_topics

    require_bootstrap(settings)
    pack_from_settings(settings, rules)
    sup = Supervisor(settings, count, rules)
    sup.check_ports()
    settled = asyncio.run(prepare_topics(settings))
    if count > settled.partitions:
        sup.say(
            f"{count} processes for {settled.partitions} partitions: {count - settled.partitions} will stand by idle"
        )
    return sup.run()
