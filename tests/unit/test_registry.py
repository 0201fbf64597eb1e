"""One extension mechanism (riskflow/core/registry.py): a new file in its package is found.

Each test drops a throwaway module into a temporary directory that it adds to the package's
search path, as if the file had been written into the package, and asks for it only through
the package's own entry point (``build_rule``, ``anomaly_detectors``, ``open_store``'s
``dialect_for``, ``SINKS``, the CLI parser).
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import importlib
import json
import re
import runpy
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import detectors
from riskflow.core.registry import Registry, import_modules
from riskflow.core.schema import parse_event


@pytest.fixture
def drop_module(tmp_path: Path) -> Iterator[Any]:
    """``drop(package, name, source)``: ``source`` as module ``package.name``, found by a scan of
    ``package``; everything undone afterwards (path, module, registry entries)."""
    undo: list[Any] = []

    def drop(package: str, name: str, source: str) -> None:
        where = tmp_path / package.replace(".", "_")
        where.mkdir(exist_ok=True)
        (where / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        pkg = importlib.import_module(package)
        pkg.__path__.append(str(where))
        importlib.invalidate_caches()
        undo.append(lambda: pkg.__path__.remove(str(where)))
        undo.append(lambda: sys.modules.pop(f"{package}.{name}", None))

    drop.undo = undo  # type: ignore[attr-defined]
    yield drop
    for step in reversed(undo):
        step()


def test_a_new_rule_kind_module_is_found(drop_module: Any) -> None:
    from detectors.rules import RULE_KINDS, build_rule

    RULE_KINDS.load()
    drop_module(
        "detectors.rules",
        "probe_kind",
        """
        from detectors.rules.base import Rule

        class ProbeRule(Rule):
            kind = "probe_kind"
        """,
    )
    drop_module.undo.append(lambda: RULE_KINDS.discard("probe_kind"))
    assert "probe_kind" not in RULE_KINDS
    RULE_KINDS.refresh()
    spec = dict(
        id="x.probe", name_zh="探针", name_en="Probe", kind="probe_kind", severity="low",
        dimension="complaints", rationale="r", source="s",
    )  # fmt: skip
    assert type(build_rule(spec, "<test>")).__name__ == "ProbeRule"
    # and the compiled build would compile it, with no list to edit
    assert "detectors.rules.base" in detectors.MYPYC_MODULES
    assert all(m.startswith("detectors.rules.") for m in detectors._RULE_MODULES)


def test_setup_reads_the_same_compiled_modules_without_importing_the_package() -> None:
    """setup.py runs detectors/__init__.py alone (at build time, nothing of RiskFlow importable)."""
    root = Path(__file__).resolve().parents[2]
    assert runpy.run_path(str(root / "detectors" / "__init__.py"))["MYPYC_MODULES"] == detectors.MYPYC_MODULES
    rules = sorted(p.stem for p in (root / "detectors" / "rules").glob("*.py") if p.stem != "__init__")
    assert [m for m in detectors.MYPYC_MODULES if m.startswith("detectors.rules.")] == [
        f"detectors.rules.{r}" for r in rules
    ]


def test_a_new_default_anomaly_detector_joins_the_default_set(drop_module: Any) -> None:
    from detectors.anomaly import ANOMALY_KINDS, anomaly_detectors

    ANOMALY_KINDS.load()
    drop_module(
        "detectors.anomaly",
        "probe_detector",
        """
        from detectors.anomaly.base import AnomalyDetector

        class ProbeDetector(AnomalyDetector):
            kind = "probe"
            default = True
            id = "anomaly.probe"

            def init_state(self):
                return None

            def learn_one(self, state, event):
                return state

            def score_one(self, state, event):
                return []
        """,
    )
    drop_module.undo.append(lambda: ANOMALY_KINDS.discard("probe"))
    assert [d.id for d in anomaly_detectors()] == ["anomaly.daily"]
    ANOMALY_KINDS.refresh()
    assert [d.id for d in anomaly_detectors()] == ["anomaly.daily", "anomaly.probe"]
    assert [d.id for d in anomaly_detectors(peer=True)] == ["anomaly.daily", "anomaly.peer", "anomaly.probe"]


def test_a_new_store_dialect_module_is_found(drop_module: Any) -> None:
    from riskflow.store import DIALECTS, dialect_for

    DIALECTS.load()
    drop_module(
        "riskflow.store",
        "probe_db",
        """
        from riskflow.store.sqlite import SQLiteDialect

        class ProbeDialect(SQLiteDialect):
            name = "probe"
            schemes = ("probe",)
        """,
    )
    drop_module.undo.append(lambda: DIALECTS.discard("probe"))
    assert dialect_for("probe") is None
    DIALECTS.refresh()
    found = dialect_for("probe")
    assert found is not None and found.__name__ == "ProbeDialect"


def test_a_new_sink_module_is_found(drop_module: Any) -> None:
    from riskflow.sinks.base import SINKS

    SINKS.load()
    drop_module(
        "riskflow.sinks",
        "probe_sink",
        """
        from riskflow.sinks.base import Sink

        class ProbeSink(Sink):
            name = "probe"

            async def handle(self, batch):
                return True
        """,
    )
    drop_module.undo.append(lambda: SINKS.discard("probe"))
    assert "probe" not in SINKS
    SINKS.refresh()
    assert SINKS["probe"].__name__ == "ProbeSink"


def test_a_new_command_module_is_found(drop_module: Any) -> None:
    from riskflow.cli import build_parser

    drop_module(
        "riskflow.commands",
        "probe_cmd",
        """
        def register(sub):
            sub.add_parser("probe-cmd", help="a probe").set_defaults(func=lambda args, settings: 0)
        """,
    )
    assert build_parser().parse_args(["probe-cmd"]).command == "probe-cmd"


def test_two_unrelated_classes_under_one_name_are_refused() -> None:
    reg: Registry[object] = Registry("riskflow.core", "thing")

    class A:
        pass

    class B:
        pass

    class A2(A):  # a variant that does not name itself keeps its parent's entry
        pass

    reg.add("a", A)
    reg.add("a", A2)
    assert reg["a"] is A
    with pytest.raises(TypeError, match="two things named 'a'"):
        reg.add("a", B)
    with pytest.raises(KeyError, match="no thing 'b'; known: a"):
        reg["b"]


def test_private_modules_are_not_imported() -> None:
    names = [m.__name__ for m in import_modules("detectors.rules")]
    assert "detectors.rules.base" in names and not any(n.rsplit(".", 1)[1].startswith("_") for n in names)


def _doc_examples() -> dict[str, str]:
    """The Python examples of docs/architecture.md "Extending", by the file each names."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "architecture.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n# (\S+\.py)\n(.*?)^```", text, re.M | re.S)
    return dict(blocks)


def _drop_example(drop_module: Any, path: str) -> None:
    package, name = path.removesuffix(".py").replace("/", ".").rsplit(".", 1)
    drop_module(package, name, _doc_examples()[path])


def test_the_docs_rule_kind_example_is_one_file_that_works(drop_module: Any) -> None:
    from detectors.rules import RULE_KINDS, load_texts

    RULE_KINDS.load()
    _drop_example(drop_module, "detectors/rules/keyword.py")
    drop_module.undo.append(lambda: RULE_KINDS.discard("keyword"))
    RULE_KINDS.refresh()
    pack = load_texts({"k.yaml": KEYWORD_PACK})
    rule = pack.detectors[0]
    ad = parse_event(_event("advertisement.published", channel="wechat", text="保本保息 guaranteed"))
    assert rule.process(rule.init_state(), ad)[1][0].evidence == {"words": ["保本"]}


def test_the_docs_detector_example_is_one_file_that_works(drop_module: Any) -> None:
    from detectors.anomaly import ANOMALY_KINDS, anomaly_detectors

    ANOMALY_KINDS.load()
    _drop_example(drop_module, "detectors/anomaly/silence.py")
    drop_module.undo.append(lambda: ANOMALY_KINDS.discard("silence"))
    ANOMALY_KINDS.refresh()
    det = ANOMALY_KINDS["silence"]()
    assert "anomaly.silence" not in [d.id for d in anomaly_detectors()]  # default = False
    state, first = det.process(det.init_state(), parse_event(_event("grid.report", day=0, observation="normal")))
    _, later = det.process(state, parse_event(_event("grid.report", day=90, observation="normal")))
    assert first == [] and later[0].evidence == {"silent_days": 90.0}


def test_the_docs_sink_example_is_one_file_that_works(drop_module: Any, tmp_path: Path) -> None:
    from riskflow.sinks.base import SINKS, decode_message

    SINKS.load()
    _drop_example(drop_module, "riskflow/sinks/jsonl.py")
    drop_module.undo.append(lambda: SINKS.discard("jsonl"))
    SINKS.refresh()
    sink = SINKS["jsonl"].example(tmp_path)
    junk = decode_message(b"junk", "riskflow.alerts/0@0")
    assert asyncio.run(sink.handle([junk])) is True
    assert (tmp_path / "alerts.jsonl").read_bytes() == b""


KEYWORD_PACK = """
version: example
rules:
- id: pf.keyword_promise
  name_zh: 广告含保本字样
  name_en: Advertisement promises principal
  kind: keyword
  severity: high
  dimension: inducement
  rationale: r
  source: s
  params: {event_type: advertisement.published, field: text, words: [保本, 刚兑]}
"""


def _event(event_type: str, day: float = 0, **payload: Any) -> bytes:
    at = _dt.datetime(2025, 3, 1, 12, 0, tzinfo=_dt.timezone(_dt.timedelta(hours=8))) + _dt.timedelta(days=day)
    return json.dumps(
        {
            "schema": "riskflow.event/v1",
            "event_id": f"E-{event_type}-{day}",
            "event_type": event_type,
            "entity_id": "PF-330100-0001",
            "entity_kind": "private_fund",
            "region": "330100",
            "event_time": at.isoformat(),
            "source": "test",
            "payload": payload,
        }
    ).encode()
