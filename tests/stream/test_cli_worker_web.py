"""Faust's web server binds to RISKFLOW_WEB_HOST (loopback by default). Issue 20: it listened on
0.0.0.0:6066 (seen with ``ss -ltnp``) although the app set ``web_host="127.0.0.1"``."""

from __future__ import annotations

import socket
from pathlib import Path

from riskflow.broker import free_port
from tests.support.kafka_fixtures import Stack
from tests.support.procs import wait_until

LISTEN = "0A"


def listen_addresses(port: int) -> set[str]:
    """Local IPv4/IPv6 addresses listening on ``port``, from the kernel's socket tables (what
    ``ss -ltn`` reads)."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            cols = row.split()
            addr, hexport = cols[1].split(":")
            if cols[3] == LISTEN and int(hexport, 16) == port:
                raw = bytes.fromhex(addr)
                if len(raw) == 4:
                    found.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
                else:  # four little-endian 32-bit words
                    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                    found.add(socket.inet_ntop(socket.AF_INET6, words))
    return found


def test_faust_web_server_listens_on_loopback_only(stack: Stack) -> None:
    port = free_port()
    stack.env["RISKFLOW_WEB_PORT"] = str(port)
    worker = stack.start_worker()
    assert wait_until(lambda: listen_addresses(port), timeout=90), worker.log_text()[-2000:]
    assert listen_addresses(port) == {"127.0.0.1"}
    assert worker.proc.poll() is None
