"""A real PostgreSQL server for store tests: a throw-away cluster on loopback, one per session.

Debian's ``postgresql`` package provides the binaries (``.ci/apt-packages``). The
server refuses to run as root, so under root the cluster belongs to the
``postgres`` system user. A missing server FAILS the tests that need it (a
skipped store test would hide that PostgreSQL is untested).
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from riskflow.broker import free_port

_dbs = itertools.count(1)


def _pg_bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not found:
        pytest.fail("PostgreSQL server binaries not found: apt-get install postgresql (listed in .ci/apt-packages)")
    return Path(found[-1]).parent


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """URL of a superuser on a fresh cluster (database ``postgres``)."""
    bindir = _pg_bindir()
    base = Path(tempfile.mkdtemp(prefix="riskflow-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, logf = base / "data", base / "server.log"
    port = free_port()

    def run(*cmd: str) -> None:
        subprocess.run([*as_user, *cmd], check=True, capture_output=True, timeout=180)

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "riskflow", "-E", "UTF8", "--no-sync")
        opts = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=40"
        run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(logf), "-w", "-t", "120", "-o", opts, "start")
    except subprocess.CalledProcessError as e:
        log = logf.read_text(errors="replace") if logf.exists() else ""
        pytest.fail(f"could not start PostgreSQL: {e.stderr.decode(errors='replace')}\n{log}")
    try:
        yield f"postgresql://riskflow@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
            capture_output=True,
            timeout=120,
        )
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A new, empty database on the session's server."""
    import psycopg

    name = f"rf_test_{os.getpid()}_{next(_dbs)}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return postgres_server.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture
def postgresql_target(postgres_url: str) -> str:
    """The store contract's target for the ``postgresql`` dialect (conftest.py ``store_target``)."""
    return postgres_url
