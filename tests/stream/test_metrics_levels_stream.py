"""Entities per risk level survive a worker restart: the gauge is recounted from the
recovered table, not only from the batches the new worker processes."""

from __future__ import annotations

import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from riskflow.core.schema import encode_event
from riskflow.replay import route
from riskflow.simulate import simulate
from tests.support.kafka_fixtures import Stack, Worker


def scrape(worker: Worker) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{worker.metrics_port}/metrics", timeout=5).read().decode()
    except OSError:
        return {}
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def levels(samples: dict) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: v for (name, labels), v in samples.items() if name == "riskflow_entities_at_level" and v}


def wait_for(what: str, cond, worker: Worker, timeout: float = 120.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}:\n{worker.log_text()[-3000:]}")


def test_level_gauge_is_recounted_after_a_restart(stack: Stack) -> None:
    events, _ = simulate(entities=30, days=40, seed=3)
    records = [(r.topic, r.key, r.value) for r in route([encode_event(e) for e in events], stack.settings)]
    first = stack.start_worker()
    stack.produce(records)

    def processed(w: Worker) -> dict | None:
        s = scrape(w)
        n = sum(v for (name, _), v in s.items() if name == "riskflow_events_total")
        return levels(s) if n == len(records) else None

    before = wait_for("all events processed", lambda: processed(first), first)
    assert any(dict(labels)["level"] == "red" for labels in before), before
    assert first.stop() == 0

    second = stack.start_worker()
    # The new worker processes nothing new: its gauge can only come from the recovered table.
    after = wait_for("levels recounted", lambda: levels(scrape(second)) == before and levels(scrape(second)), second)
    assert after == before
    assert sum(v for (name, _), v in scrape(second).items() if name == "riskflow_events_total") == 0
