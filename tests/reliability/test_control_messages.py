"""Messages on the model control topic are input: whatever arrives (not JSON, nested 100,000 deep,
wrong types, huge, unknown fields) is applied or ignored with a reason and a count, never raised,
and the loaded model stays. The live path is tests/stream/test_train_reload.py."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from detectors.anomaly import PeerGroupDetector
from riskflow.core.metrics import CONTROL_IGNORE_REASONS, Metrics
from riskflow.core.models import PeerModel
from streams.control import MAX_CONTROL_BYTES, apply_control


def ignored(reg: CollectorRegistry) -> dict[str, float]:
    return {
        r: reg.get_sample_value("riskflow_control_messages_ignored_total", {"reason": r}) or 0.0
        for r in CONTROL_IGNORE_REASONS
    }


def test_every_reason_series_exists_from_the_start() -> None:
    reg = CollectorRegistry()
    Metrics.create(reg)
    assert ignored(reg) == dict.fromkeys(CONTROL_IGNORE_REASONS, 0.0)


@pytest.mark.parametrize(
    ("message", "reason", "said"),
    [
        (b"{nope", "malformed", "not JSON"),
        (b"\xff\xfe\xfd", "malformed", "not JSON"),
        (b"[" * 30_000 + b"]" * 30_000, "malformed", "not JSON"),  # RecursionError in json
        (b'{"command": ' * 5_000, "malformed", "not JSON"),
        (b'"reload_model"', "malformed", "not a JSON object"),
        (b"[1, 2]", "malformed", "not a JSON object"),
        (b'{"command": "reload_model", "path": 5}', "malformed", "path must be"),
        (b'{"command": "reload_model", "path": ["a"]}', "malformed", "path must be"),
        (b'{"command": "reload_model", "path": ""}', "malformed", "path must be"),
        (b'{"command": "reload_model", "path": "a\\u0000b"}', "malformed", "path must be"),
        (b'{"command": "reload_model", "dir": "/"}', "malformed", "unknown field 'dir'"),
        (b'{"command": ["reload_model"]}', "unknown_command", "unknown command"),
        (b'{"command": "dance"}', "unknown_command", "unknown command"),
        (b"{}", "unknown_command", "unknown command"),
        (b" " * (MAX_CONTROL_BYTES + 1), "too_large", "bytes"),
        (b'{"command": "reload_model", "path": "' + b"a" * MAX_CONTROL_BYTES + b'"}', "too_large", "bytes"),
    ],
)
def test_malformed_control_message_is_ignored_with_a_reason(message: bytes, reason: str, said: str) -> None:
    reg = CollectorRegistry()
    toy = PeerModel.toy()
    det = PeerGroupDetector(toy)
    done = apply_control(message, det, None, Metrics.create(reg))
    assert done.startswith("ignored: ") and said in done
    assert ignored(reg) == {r: float(r == reason) for r in CONTROL_IGNORE_REASONS}
    assert det.model is toy


def test_a_reload_without_a_model_dir_is_ignored() -> None:
    reg = CollectorRegistry()
    det = PeerGroupDetector()
    assert apply_control(b'{"command": "reload_model"}', det, None, Metrics.create(reg)).startswith("ignored")
    assert ignored(reg)["no_model_dir"] == 1 and det.model is None


_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["command", "path", "x"]), inner),
    max_leaves=20,
).map(lambda v: json.dumps(v).encode())


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200), _JSONISH))
def test_any_control_message_is_applied_or_ignored_never_raised(message: bytes) -> None:
    reg = CollectorRegistry()
    toy = PeerModel.toy()
    det = PeerGroupDetector(toy)
    done = apply_control(message, det, None, Metrics.create(reg))  # no model dir: nothing can load
    assert done.startswith("ignored: ") and sum(ignored(reg).values()) == 1 and det.model is toy
