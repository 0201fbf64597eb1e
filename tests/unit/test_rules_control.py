"""A message on the rules control topic that is not a valid pack: rejected with a reason
(log line naming the problem, ``riskflow_rule_pack_rejected_total{reason}``), the running
pack stays. Unit tests of streams/rules_control.py (the stream path is tests/stream/test_rules_stream.py)."""

from __future__ import annotations

import logging

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from detectors.rules import load_pack
from riskflow.core.metrics import RULE_PACK_REJECT_REASONS, Metrics
from streams.rules_control import PACK_SCHEMA, PushedPack, encode_pack
from tests.support.rules_tools import control, rejected

PACK = load_pack()
BROKEN_RULE = """
version: "t.1"
rules:
  - id: t.no_source
    name_zh: 无出处
    name_en: No source
    kind: threshold
    severity: low
    dimension: inducement
    rationale: A rule without its regulation.
    params: {event_type: grid.report}
"""


def test_every_reason_series_exists_from_the_start() -> None:
    reg = CollectorRegistry()
    Metrics.create(reg)
    assert rejected(reg) == dict.fromkeys(RULE_PACK_REJECT_REASONS, 0.0)


@pytest.mark.parametrize(
    ("reason", "message", "logged"),
    [
        ("malformed", b"{not json", "malformed"),
        ("malformed", b'{"schema": "riskflow.rulepack/v1", "files": {}}', "version"),
        (
            "unsupported_schema",
            msgspec.json.encode(PushedPack(schema="riskflow.rulepack/v2", version="x", files=PACK.files)),
            "riskflow.rulepack/v2",
        ),
        (
            "invalid_rules",
            msgspec.json.encode(PushedPack(schema=PACK_SCHEMA, version="x", files={"t.yaml": BROKEN_RULE})),
            "t.yaml: rule 't.no_source': field 'source'",
        ),
    ],
)
def test_invalid_pack_is_logged_counted_and_ignored(
    reason: str, message: bytes, logged: str, caplog: pytest.LogCaptureFixture
) -> None:
    reg = CollectorRegistry()
    rc = control(reg)
    with caplog.at_level(logging.ERROR, logger="streams.rules_control"):
        assert rc.load(message, offset=7) is None
    assert rejected(reg) == {r: float(r == reason) for r in RULE_PACK_REJECT_REASONS}
    (rec,) = caplog.records
    assert "offset 7" in rec.getMessage() and "rule pack rejected" in rec.getMessage()
    assert reason in rec.getMessage() and logged in rec.getMessage()


def test_valid_pack_is_loaded_and_not_counted() -> None:
    reg = CollectorRegistry()
    rc = control(reg)
    pack = rc.load(encode_pack(PACK), offset=0)
    assert pack is not None and pack.version == PACK.version
    assert rc.load(b"", offset=1) is None  # an empty (tombstone) message is no pack and no error
    assert sum(rejected(reg).values()) == 0
