"""A real worker loads the peer-group model at start-up, scores a stream with it (score count and
drift index on /metrics) and swaps it on a control message; signed artefacts (RISKFLOW_MODEL_KEY),
and hostile control messages before the reload are ignored without stopping the control task."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from riskflow.commands.train import train
from riskflow.core.schema import encode_event
from riskflow.replay import route
from riskflow.simulate import simulate
from tests.support.kafka_fixtures import Stack


def _samples(port: int, name: str) -> list[tuple[dict[str, str], float]]:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return []
    return [(s.labels, s.value) for fam in text_string_to_metric_families(text) for s in fam.samples if s.name == name]


def _model_version(port: int) -> str | None:
    found = _samples(port, "riskflow_model_info")
    return found[0][0].get("version") if found else None


def _wait(what: str, check: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(2.0)
    raise AssertionError(f"timed out waiting for {what}")


def _wait_version(port: int, want: str, timeout: float, resend: object = None) -> str | None:
    deadline = time.monotonic() + timeout
    got = None
    while time.monotonic() < deadline:
        got = _model_version(port)
        if got == want:
            return got
        if callable(resend):
            resend()
        time.sleep(2.0)
    return got


def test_worker_loads_newest_model_and_reloads_on_control_message(stack: Stack, tmp_path: Path) -> None:
    events, _ = simulate(entities=60, days=80, seed=8)
    lines = [encode_event(e) for e in events]
    models = tmp_path / "models"
    key = "a-test-key-of-32-characters-long"
    first = train(lines, models, trees=10, min_rows=5, seed=1, key=key.encode())
    stack.env["RISKFLOW_MODEL_DIR"] = str(models)
    stack.env["RISKFLOW_MODEL_KEY"] = key
    worker = stack.start_worker()
    assert _wait_version(worker.metrics_port, first.version, 120) == first.version, worker.log_text()[-3000:]
    port = worker.metrics_port
    # Loaded: every kind of the model has its score counter, before any event.
    scored = {lab["entity_kind"]: v for lab, v in _samples(port, "riskflow_model_scored_total")}
    assert scored == {kind: 0.0 for kind in first.kinds}

    # The history streamed through the worker: entity-weeks are scored and the drift index has values.
    stack.produce([(r.topic, r.key, r.value) for r in route(lines, stack.settings)])

    def scored_and_drift() -> bool:
        n = sum(v for _, v in _samples(port, "riskflow_model_scored_total"))
        psi = [v for lab, v in _samples(port, "riskflow_model_score_psi") if lab["entity_kind"] in first.kinds]
        return n > 0 and bool(psi) and all(v >= 0 for v in psi)

    _wait("peer scores and drift index", scored_and_drift, 180)

    time.sleep(1.0)  # a newer artefact (mtime order), then a reload message to every worker
    second = train(lines, models, trees=10, min_rows=5, seed=2, key=key.encode())
    assert second.version != first.version
    topic = stack.settings.topic_control

    hostile = [
        b"[" * 30_000 + b"]" * 30_000,  # RecursionError in json: it used to stop the control task
        b"not json",
        b'{"command": "dance"}',
        json.dumps({"command": "reload_model", "path": str(tmp_path)}).encode(),  # outside the model dir
        json.dumps({"command": "reload_model", "path": 7}).encode(),
    ]

    def send() -> None:  # one partition: the reload comes after the hostile messages
        stack.produce([(topic, None, m) for m in [*hostile, json.dumps({"command": "reload_model"}).encode()]])

    got = _wait_version(worker.metrics_port, second.version, 120, resend=send)
    assert got == second.version, worker.log_text()[-3000:]
    assert worker.proc.poll() is None
    log = worker.log_text()
    assert "ignored: not JSON" in log and "ignored: unknown command" in log and "path must be" in log
    assert "is outside the model directory" in log and "control consumer stopped" not in log
    ignored = {lab["reason"]: v for lab, v in _samples(port, "riskflow_control_messages_ignored_total")}
    assert ignored["malformed"] >= 3 and ignored["unknown_command"] >= 1, ignored
    reloads = {lab["reason"]: v for lab, v in _samples(port, "riskflow_model_reloads_total")}
    assert reloads["refused"] >= 1 and reloads["loaded"] >= 2, reloads
