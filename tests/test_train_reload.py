"""A real worker loads the peer-group model at start-up and swaps it on a control message."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from riskflow.commands.train import train
from riskflow.schema import encode_event
from riskflow.simulate import simulate
from tests.kafka_fixtures import Stack


def _model_version(port: int) -> str | None:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return None
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == "riskflow_model_info":
                return s.labels.get("version")
    return None


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
    first = train(lines, models, trees=10, min_rows=5, seed=1)
    stack.env["RISKFLOW_MODEL_DIR"] = str(models)
    worker = stack.start_worker()
    assert _wait_version(worker.metrics_port, first.version, 120) == first.version, worker.log_text()[-3000:]

    time.sleep(1.0)  # a newer artefact (mtime order), then a reload message to every worker
    second = train(lines, models, trees=10, min_rows=5, seed=2)
    assert second.version != first.version
    topic = stack.settings.topic_control

    def send() -> None:
        stack.produce([(topic, None, json.dumps({"command": "reload_model"}).encode())])

    stack.produce([(topic, None, b"not json"), (topic, None, b'{"command": "dance"}')])
    got = _wait_version(worker.metrics_port, second.version, 120, resend=send)
    assert got == second.version, worker.log_text()[-3000:]
    assert worker.proc.poll() is None
    log = worker.log_text()
    assert "ignored: not JSON" in log or "ignored: unknown command" in log or "loaded" in log
