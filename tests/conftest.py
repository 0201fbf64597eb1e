from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from riskflow.store import AlertStore, open_store

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


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "alerts.sqlite3")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(target: str) -> Iterator[AlertStore]:
    s = open_store(target)
    yield s
    s.close()
