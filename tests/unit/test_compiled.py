"""The optional compiled build (issue 9; docs/performance.md).

Pure Python is the default; ``RISKFLOW_COMPILE=1 pip install -e .`` compiles the modules of
``detectors.MYPYC_MODULES`` with mypyc. These tests run in both modes. ``.ci/run``'s compiled
stage sets ``RISKFLOW_EXPECT_COMPILED=1``, so that it cannot silently test pure Python.
"""

from __future__ import annotations

import ast
import importlib
import importlib.machinery
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from aiokafka.structs import ConsumerRecord

import detectors
from bench import compiled as compiled_bench
from detectors import MYPYC_MODULES
from detectors.anomaly import DailyAnomaly
from detectors.factory import build_processor
from detectors.pipeline import RawMessage
from detectors.rules import load_pack
from riskflow.core.schema import encode_event
from riskflow.sim import simulate

ROOT = Path(__file__).resolve().parents[2]
SUFFIXES = tuple(importlib.machinery.EXTENSION_SUFFIXES)
EXPECT_COMPILED = os.environ.get("RISKFLOW_EXPECT_COMPILED") == "1"


def test_the_stage_runs_the_build_it_says() -> None:
    got = detectors.compiled()
    if EXPECT_COMPILED:
        assert got == list(MYPYC_MODULES)
        for name in MYPYC_MODULES:
            assert (importlib.import_module(name).__file__ or "").endswith(SUFFIXES), name
    # whatever the mode: all or nothing (a partial set is a stale or broken build in the tree)
    assert got in ([], list(MYPYC_MODULES))
    assert detectors.stale() == []


def test_compiled_modules_define_no_msgspec_struct() -> None:
    """A compiled module cannot define msgspec Structs (they fail at import); they live in
    interpreted modules (e.g. detectors/entity.py) and are imported from there."""
    for name in MYPYC_MODULES:
        path = ROOT / (name.replace(".", "/") + ".py")
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(b) for b in node.bases]
                assert not any("Struct" in b for b in bases), f"{name}: class {node.name}({', '.join(bases)})"


def _history(n_entities: int = 40, days: int = 30) -> list[bytes]:
    events, _ = simulate(entities=n_entities, days=days, seed=11)
    return [encode_event(e) for e in events]


def _run(bp, msgs: list[RawMessage], states: dict) -> list[str]:
    alerts = []
    for i in range(0, len(msgs), 200):
        res = bp.process(msgs[i : i + 200], states.get, now=2e9)
        for eid, (st, _) in res.states.items():
            states[eid] = st
        alerts += [f"{a.alert_id}/{a.revision}/{a.risk_index}" for a in res.alerts]
    return alerts


def test_processor_pickles_mid_stream_and_goes_on_the_same() -> None:
    """Pickling is explicit (``__reduce__``) on every compiled class: mypyc's native classes do
    not pickle by themselves, and the processor must behave the same after a round trip."""
    lines = _history()
    msgs = [RawMessage(v, "file", 0, i, None) for i, v in enumerate(lines)]
    half = len(msgs) // 2
    bp, states = build_processor(load_pack()), {}
    first = _run(bp, msgs[:half], states)
    again = pickle.loads(pickle.dumps(bp))
    states2 = pickle.loads(pickle.dumps(states))
    assert _run(again, msgs[half:], states2) == _run(bp, msgs[half:], states)
    assert first  # the history raises alerts at all
    assert {name: (lane.watermark, lane.heap) for name, lane in again.lanes.items()} == {
        name: (lane.watermark, lane.heap) for name, lane in bp.lanes.items()
    }


def test_processor_takes_aiokafka_records_as_the_worker_passes_them() -> None:
    """Live, the batch is aiokafka ConsumerRecords, not RawMessage tuples: the compiled build
    checks declared types at run time, so the processor must not declare RawMessage."""
    lines = _history(10, 10)[:300]
    raw = [RawMessage(v, "in", 1, i, b"k") for i, v in enumerate(lines)]
    live = [ConsumerRecord("in", 1, i, 0, 0, b"k", v, None, 1, len(v), ()) for i, v in enumerate(lines)]
    a = build_processor(load_pack()).process(raw, {}.get, now=2e9)
    b = build_processor(load_pack()).process(live, {}.get, now=2e9)  # type: ignore[arg-type]
    assert [x.alert_id for x in a.alerts] == [x.alert_id for x in b.alerts]
    assert len(a.states) == len(b.states) > 0


def test_pickle_keeps_non_default_parameters() -> None:
    det = DailyAnomaly(span_days=14, warmup_days=3, threshold=0.4)
    again = pickle.loads(pickle.dumps(det))
    assert again.params() == det.params()
    rule = load_pack().detectors[0]
    assert pickle.loads(pickle.dumps(rule)).spec == rule.spec


@pytest.mark.skipif(not detectors.compiled(), reason="the compiled build is not installed")
def test_compiled_and_pure_agree_byte_for_byte(tmp_path: Path) -> None:
    """Every alert (all fields but detected_at) and every final state's msgpack bytes, each
    variant in its own process (bench/compiled.py's children)."""
    path = tmp_path / "history.jsonl"
    path.write_bytes(b"\n".join(_history(80, 45)) + b"\n")
    pure = compiled_bench.run_variant("pure", path, 500)
    comp = compiled_bench.run_variant("compiled", path, 500)
    assert pure["compiled"] == [] and comp["compiled"] == list(MYPYC_MODULES)
    assert pure["alerts"] > 0
    assert (comp["alerts"], comp["digest"]) == (pure["alerts"], pure["digest"])


def _build_requires(compile_switch: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "RISKFLOW_COMPILE"}
    if compile_switch is not None:
        env["RISKFLOW_COMPILE"] = compile_switch
    code = "import backend; print(backend.get_requires_for_build_editable(), backend.get_requires_for_build_wheel())"
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT / "build_support")},
        check=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ).stdout


def test_mypy_is_a_build_requirement_only_with_the_switch() -> None:
    assert "mypy" not in _build_requires(None)
    assert "mypy" not in _build_requires("0")
    assert _build_requires("1").count("mypy>=") == 2


def test_default_build_needs_no_compiler(tmp_path: Path) -> None:
    """The README's first command on a machine without a C compiler: the default wheel is
    built with the compiler made unusable, and holds no extension module."""
    env = {k: v for k, v in os.environ.items() if k != "RISKFLOW_COMPILE"}
    env.update(CC="false", CXX="false", LDSHARED="false")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    (wheel,) = tmp_path.glob("riskflow-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "detectors/engine.py" in names
    assert not [n for n in names if n.endswith(".so")]
