"""The floors of docs/architecture.md, read from the imports: each floor imports only from below it."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imports(package: str) -> Iterator[tuple[str, str]]:
    """(file, imported module) of every import statement under ``package``, nested ones too."""
    for path in sorted((ROOT / package).rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield str(path.relative_to(ROOT)), alias.name
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                yield str(path.relative_to(ROOT)), node.module


def offending(package: str, allowed: tuple[str, ...], watched: tuple[str, ...]) -> list[str]:
    """Imports under ``package`` of a ``watched`` package that are not in ``allowed``."""
    out = []
    for where, mod in imports(package):
        top = mod.split(".")[0]
        if top in watched and not any(mod == a or mod.startswith(a + ".") for a in allowed) and mod not in allowed:
            out.append(f"{where}: {mod}")
    return out


OURS = ("riskflow", "detectors", "streams", "bench", "tests")


def test_the_ground_floor_imports_nothing_above_it() -> None:
    assert offending("riskflow/core", ("riskflow.core",), OURS) == []


def test_detectors_stand_on_the_ground_floor_only() -> None:
    assert offending("detectors", ("riskflow.core", "detectors"), OURS) == []
    # and stay free of Kafka, Faust and Prometheus (the same code runs offline and in a unit test)
    libs = {mod.split(".")[0] for _, mod in imports("detectors")}
    assert not libs & {"faust", "aiokafka", "kafka", "prometheus_client", "mode"}


def test_streams_stand_on_the_ground_floor_and_detectors_only() -> None:
    # ``riskflow`` alone is the package root (its __version__), not a floor
    assert offending("streams", ("riskflow.core", "riskflow", "detectors", "streams"), OURS) == []
    assert not [m for _, m in imports("streams") if m.startswith("riskflow.") and not m.startswith("riskflow.core")]


def test_no_test_module_imports_another() -> None:
    """Shared helpers live in tests/support/ or conftest, so a test module can move or go alone."""
    bad = [f"{w}: {m}" for w, m in imports("tests") if m.startswith("tests.") and m.split(".")[-1].startswith("test_")]
    assert bad == []


def test_the_checks_see_a_violation() -> None:
    """The reader above finds imports across floors where they exist: the entry points of
    ``riskflow/`` import ``detectors``, which the ground floor may not."""
    assert offending("riskflow", ("riskflow.core",), ("detectors",)), "entry points do import detectors"
