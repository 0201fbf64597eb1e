from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from riskflow.store import DIALECTS, AlertStore, open_store

pytest_plugins = ["tests.support.kafka_fixtures", "tests.support.pg_fixtures"]


EXAMPLES = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def valid_example_lines() -> list[bytes]:
    return [line for line in (EXAMPLES / "valid-events.jsonl").read_bytes().splitlines() if line.strip()]


@pytest.fixture(scope="session")
def invalid_examples() -> list[tuple[str, bytes]]:
    """(why, message) pairs from the contract's invalid examples."""
    out: list[tuple[str, bytes]] = []
    why = ""
    for line in (EXAMPLES / "invalid-events.txt").read_bytes().splitlines():
        if line.startswith(b"# One malformed"):
            continue
        if line.startswith(b"#"):
            why = line[1:].strip().decode()
        elif line.strip():
            out.append((why, line))
    return out


@pytest.fixture
def sqlite_target(tmp_path: Path) -> str:
    """A new SQLite store file."""
    return str(tmp_path / "alerts.sqlite3")


@pytest.fixture(params=sorted(DIALECTS))
def target(request: pytest.FixtureRequest) -> str:
    """A new, empty store of each registered dialect, for the store contract (unit/test_store.py,
    unit/test_cases_store.py). Dialect ``<name>`` needs a fixture ``<name>_target`` (here,
    tests/support/pg_fixtures.py): a new dialect is found and runs the contract, or fails it for want of one."""
    return str(request.getfixturevalue(f"{request.param}_target"))


@pytest.fixture
def store(target: str) -> Iterator[AlertStore]:
    s = open_store(target)
    yield s
    s.close()
