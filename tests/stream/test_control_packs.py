"""A rule pack is input: each bad pack of issue 22 is rejected whole, with one clear reason per
problem, before anything runs it: by :func:`detectors.rules.load_texts`, by a worker's
:class:`streams.rules_control.RuleControl` (which keeps its pack) and by ``riskflow rules check``
(one line per problem, exit 1, no traceback). The live path is tests/stream/test_rules_stream.py."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from detectors.factory import build_processor
from detectors.rules import MAX_DEPTH, MAX_PACK_BYTES, PACK_DIR, PackError, RuleError, load_pack, load_texts
from riskflow.core.metrics import RULE_PACK_REJECT_REASONS, Metrics
from streams.rules_control import MAX_MESSAGE_BYTES, PushedPack, RuleControl, encode_pack
from tests.support.rules_tools import control, rejected

PACK = load_pack()
GOOD = (PACK_DIR / "conduct.yaml").read_text(encoding="utf-8")
FIRST = yaml.safe_load(GOOD)["rules"][0]  # a valid rule spec to vary


def rule_file(*specs: dict, **top: object) -> str:
    unshared = json.loads(json.dumps(list(specs)))  # shared objects would be dumped as YAML aliases
    return yaml.safe_dump({**top, "rules": unshared}, allow_unicode=True, sort_keys=False)


def many_rules(n: int) -> str:
    return rule_file(*({**FIRST, "id": f"t.bulk_{i:05d}"} for i in range(n)))


#: name -> (pack texts, words the single reason must contain)
BAD: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {
    "3000-level flow nesting": ({"t.yaml": "rules:\n  - " + "[" * 3000 + "]" * 3000 + "\n"}, ("nested deeper",)),
    "300-level block nesting (indentation)": (
        {"t.yaml": "rules:" + "".join("\n" + "  " * i + "-" for i in range(300)) + " x\n"},
        ("nested deeper",),
    ),
    ".inf in a rule": (
        {"t.yaml": rule_file({**FIRST, "params": {**FIRST["params"], "threshold": float("inf")}})},
        ("all.complaints_30d", "params.threshold", "finite"),
    ),
    "-.inf in a condition": (
        {"t.yaml": GOOD.replace("value: -0.5", "value: -.inf")},
        ("all.negative_opinion_surge", "params.when[0].value", "finite"),
    ),
    ".nan in constants": ({"t.yaml": "constants: {lpr_1y: .nan}\n" + rule_file(FIRST)}, ("constants.lpr_1y", "finite")),
    "a 30-digit integer": (
        {"t.yaml": rule_file({**FIRST, "params": {**FIRST["params"], "window_days": 10**30}})},
        ("params.window_days", "finite and at most"),
    ),
    "a 5000-digit integer": ({"t.yaml": "rules: [" + "9" * 5000 + "]\n"}, ("cannot be parsed",)),
    "rules: []": ({"t.yaml": "rules: []\n"}, ("no rules", "--allow-empty")),
    "no files": ({}, ("no rules",)),
    "aliases": ({"t.yaml": "x: &a [1, 2]\nrules: *a\n"}, ("aliases",)),
    "oversized (5,000 rules)": ({"t.yaml": many_rules(5000)}, (str(MAX_PACK_BYTES),)),
    "oversized (600 rules)": ({"t.yaml": many_rules(600)}, (str(MAX_PACK_BYTES),)),
    "a builder exception (kind: [1] is unhashable)": (
        {"t.yaml": rule_file({**FIRST, "kind": [1]})},
        ("all.complaints_30d", "cannot be built", "TypeError"),
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_pack_is_rejected_with_one_clear_reason(case: str) -> None:
    texts, words = BAD[case]
    with pytest.raises(PackError) as info:
        load_texts(texts)
    (problem,) = info.value.problems
    assert isinstance(problem, RuleError)
    line = str(problem)
    assert "\n" not in line and len(line) < 1000
    for w in words:
        assert w in line, line


@pytest.mark.parametrize("case", sorted(BAD))
def test_worker_rejects_the_pushed_bad_pack_and_keeps_its_own(case: str, caplog: pytest.LogCaptureFixture) -> None:
    texts, words = BAD[case]
    message = msgspec.json.encode(PushedPack(version="bad", files=texts))
    # a message over the broker's limit is refused before it is decoded
    reason, words = ("malformed", ("bytes",)) if len(message) > MAX_MESSAGE_BYTES else ("invalid_rules", words)
    reg = CollectorRegistry()
    rc = control(reg)
    running = rc.processor.engine
    with caplog.at_level(logging.ERROR, logger="streams.rules_control"):
        assert rc.load(message, offset=3) is None
    assert rc.pending is None and rc.processor.engine is running
    assert rejected(reg) == {r: float(r == reason) for r in RULE_PACK_REJECT_REASONS}
    (rec,) = caplog.records
    assert "rule pack rejected, the running pack stays" in rec.getMessage() and words[0] in rec.getMessage()


def test_nesting_limit_allows_the_builtin_pack_and_is_exact() -> None:
    def nested(levels: int) -> dict[str, str]:  # the file's mapping is level 1
        return {"t.yaml": "version: " + "[" * (levels - 1) + "]" * (levels - 1) + "\nrules: []\n"}

    assert load_texts(nested(MAX_DEPTH), allow_empty=True).detectors == []
    with pytest.raises(PackError, match=f"nested deeper than {MAX_DEPTH} levels"):
        load_texts(nested(MAX_DEPTH + 1), allow_empty=True)
    assert len(load_pack().detectors) >= 25


def test_every_problem_of_a_pack_is_listed() -> None:
    texts = {
        "a.yaml": rule_file({**FIRST, "severity": "dire"}, {**FIRST, "id": "t.two", "kind": "nope"}),
        "b.yaml": "rules: [",
    }
    with pytest.raises(PackError) as info:
        load_texts(texts)
    fields = [(p.where, p.field) for p in info.value.problems]
    assert fields == [("b.yaml", "-"), ("a.yaml", "severity"), ("a.yaml", "kind")]
    assert str(info.value).endswith("(and 2 more)")


def test_empty_pack_is_accepted_only_when_allowed_and_the_permission_travels() -> None:
    empty = load_texts({"off.yaml": "rules: []\n"}, allow_empty=True)
    assert empty.detectors == []
    reg = CollectorRegistry()
    rc = control(reg)
    assert rc.load(encode_pack(empty), offset=0) is None  # pushed without --allow-empty: refused
    got = rc.load(encode_pack(empty, allow_empty=True), offset=1)
    assert got is not None and got.detectors == [] and got.version == empty.version
    assert rejected(reg)["invalid_rules"] == 1


def test_largest_allowed_pack_fits_one_message() -> None:
    per_rule = len(many_rules(2).encode()) - len(many_rules(1).encode())
    texts = {"t.yaml": many_rules(MAX_PACK_BYTES // per_rule - 2)}
    assert len(texts["t.yaml"].encode()) > MAX_PACK_BYTES - 4 * per_rule
    pack = load_texts(texts)
    assert len(encode_pack(pack, "2026-01-01T00:00:00Z", allow_empty=True)) < MAX_MESSAGE_BYTES
    # worst case for JSON: every character escaped to two bytes
    worst = PushedPack(version="v" * 200, files={"t.yaml": '"\\' * (MAX_PACK_BYTES // 2)}, pushed_at="x" * 40)
    assert len(msgspec.json.encode(worst)) < MAX_MESSAGE_BYTES


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (b'{"schema": "riskflow.rulepack/v1", "version": "1", "files": {}, "x": ' + b"[" * 100_000, "malformed"),
        (b'{"schema": "riskflow.rulepack/v1", "version": "1", "files": {"a": 1}}', "malformed"),
        (b" " * (MAX_MESSAGE_BYTES + 1), "malformed"),
        (b"\xff\xfe\x00", "malformed"),
    ],
)
def test_malformed_messages_are_rejected_not_raised(message: bytes, reason: str) -> None:
    reg = CollectorRegistry()
    assert control(reg).load(message, offset=0) is None
    assert rejected(reg)[reason] == 1


def test_a_pack_whose_engine_cannot_be_built_is_refused_between_batches() -> None:
    reg = CollectorRegistry()
    bp = build_processor(PACK, anomaly=False)
    running = bp.engine

    def make(p: object) -> object:
        raise MemoryError("no room for this engine")

    rc = RuleControl({"bootstrap_servers": "k:9092"}, "t", bp, make, lambda: [], metrics=Metrics.create(reg))
    rc.ready.set()
    rc.pending = load_texts({"t.yaml": rule_file({**FIRST, "id": "t.other"})})
    asyncio.run(rc.before_batch())
    assert bp.engine is running and rc.pending is None
    assert rejected(reg)["invalid_rules"] == 1


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKFLOW_")}
    return subprocess.run(
        [sys.executable, "-m", "riskflow", "rules", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("case", sorted(BAD))
def test_rules_check_prints_one_line_per_problem_and_exits_1(case: str, tmp_path: Path) -> None:
    texts, words = BAD[case]
    pack = tmp_path / "pack"
    pack.mkdir()
    for name, text in texts.items():
        (pack / name).write_text(text, encoding="utf-8")
    out = run_cli("check", str(pack), cwd=tmp_path)
    assert out.returncode == 1, out
    assert "Traceback" not in out.stderr and "Traceback" not in out.stdout
    lines = out.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("invalid: "), out.stdout
    assert all(w in lines[0] for w in words), lines[0]


def test_rules_check_lists_each_problem_on_its_line(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(rule_file({**FIRST, "severity": "dire"}, {**FIRST, "id": "t.2", "kind": "x"}))
    (tmp_path / "b.yaml").write_text("rules: [.nan]\n")
    out = run_cli("check", str(tmp_path), cwd=tmp_path)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 3 and all(line.startswith("invalid: ") for line in lines), out.stdout
    assert "'severity'" in lines[1] and "'kind'" in lines[2] and "finite" in lines[0]


def test_rules_check_and_push_refuse_an_empty_pack_unless_allowed(tmp_path: Path) -> None:
    (tmp_path / "off.yaml").write_text("rules: []\n")
    out = run_cli("check", str(tmp_path / "off.yaml"), cwd=tmp_path)
    assert out.returncode == 1 and "--allow-empty" in out.stdout and "Traceback" not in out.stderr
    out = run_cli("check", "--allow-empty", str(tmp_path / "off.yaml"), cwd=tmp_path)
    assert out.returncode == 0 and "0 rules" in out.stdout


def test_rules_push_refuses_an_oversized_pack_before_any_broker(tmp_path: Path) -> None:
    (tmp_path / "big.yaml").write_text(many_rules(5000), encoding="utf-8")
    env = {"RISKFLOW_KAFKA_BOOTSTRAP": "127.0.0.1:1"}  # nothing listens: pushing would fail differently
    out = subprocess.run(
        [sys.executable, "-m", "riskflow", "rules", "push", str(tmp_path / "big.yaml")],
        env={**{k: v for k, v in os.environ.items() if not k.startswith("RISKFLOW_")}, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr[-2000:]
    (line,) = out.stdout.splitlines()
    assert line.startswith("invalid, not pushed: ") and str(MAX_PACK_BYTES) in line


def test_a_bad_pack_given_to_backtest_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "deep.yaml").write_text(BAD["3000-level flow nesting"][0]["t.yaml"])
    (tmp_path / "events.jsonl").write_text("{}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKFLOW_")}
    out = subprocess.run(
        [sys.executable, "-m", "riskflow", "backtest", "--rules", str(tmp_path / "deep.yaml"), "events.jsonl"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    (line,) = out.stderr.splitlines()
    assert line.startswith("riskflow backtest: invalid rule pack: ") and "nested deeper than" in line


_YAML_BITS = st.sampled_from(
    ["rules:", "\n", "  ", "- ", "[", "]", "{", "}", ": ", ", ", ".inf", ".nan", "&a ", "*a", "id: x", "1e400"]
)
_PUSHED = st.dictionaries(st.text(max_size=10), st.text(max_size=200)).map(
    lambda files: msgspec.json.encode(PushedPack(version="v", files=files))
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=400), st.lists(_YAML_BITS, max_size=200).map("".join)))
def test_any_text_is_a_pack_or_a_rejection_with_reasons(text: str) -> None:
    try:
        pack = load_texts({"t.yaml": text}, allow_empty=True)
    except PackError as exc:
        assert exc.problems and all("\n" not in str(p) for p in exc.problems)
    else:
        assert isinstance(pack.detectors, list)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(min_size=1, max_size=300), _PUSHED))
def test_any_message_on_the_rules_topic_is_a_pack_or_a_counted_rejection(message: bytes) -> None:
    reg = CollectorRegistry()
    got = control(reg).load(message, offset=0)
    assert sum(rejected(reg).values()) == (0 if got is not None else 1)
