from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["tests.kafka_fixtures", "tests.pg_fixtures"]


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
