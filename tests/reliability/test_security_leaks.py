"""No secrets or personal data in the worker's logs or metric labels.

A simulated run (with bad messages that carry personal data too) through a real
worker whose settings hold a SASL password; then the captured worker log and
every sample of its /metrics are scanned for the password, investor ids, legal
representatives' and entities' names; metric label values must not carry any
entity id either.
"""

from __future__ import annotations

import urllib.request

import msgspec

from riskflow.core.schema import encode_event
from riskflow.replay import route
from riskflow.simulate import simulate
from tests.support.kafka_fixtures import Stack
from tests.support.reliability_tools import alerts_by_id, reference, scrape

SECRET = "Zx9-s3cr3t-sasl-Pa55"


def personal_data(events: list[dict]) -> set[str]:
    out: set[str] = set()
    for e in events:
        p = e["payload"]
        for field in ("investor_id", "legal_rep", "name"):
            if isinstance(p.get(field), str) and len(p[field]) >= 2:
                out.add(p[field])
    return out


def test_no_secret_or_personal_data_in_logs_or_metrics(stack: Stack) -> None:
    events, _ = simulate(entities=40, days=40, seed=3)
    lines = [encode_event(e) for e in events]
    pii = personal_data(events)
    investors = {e["payload"]["investor_id"] for e in events if "investor_id" in e["payload"]}
    assert len(investors) >= 10 and investors <= pii and len(pii) >= 40
    want_ids, _ = reference(lines, dedup_window=64)

    stack.env["RISKFLOW_KAFKA_SASL_USERNAME"] = "riskflow-worker"
    stack.env["RISKFLOW_KAFKA_SASL_PASSWORD"] = SECRET  # configured; PLAINTEXT here, so unused
    s = stack.settings
    worker = stack.start_worker()
    bad = [(s.topic_fund_events, None, b'{"investor_id": "' + x.encode() + b'", broken') for x in sorted(pii)[:20]]
    stack.produce([(r.topic, r.key, r.value) for r in route(lines, s)] + bad)
    got = alerts_by_id(stack.consume(s.topic_alerts, min_count=len(want_ids), timeout=120))
    assert got.keys() == want_ids  # the run really went through the detectors (and only this test's pack)
    stack.consume(s.topic_deadletter, min_count=len(bad), timeout=60)

    text = urllib.request.urlopen(f"http://127.0.0.1:{worker.metrics_port}/metrics", timeout=10).read().decode()
    log = worker.log_text()
    assert "riskflow.detect" in log or "Worker]: Ready" in log  # the log was really captured
    for haystack, what in ((log, "worker log"), (text, "/metrics")):
        assert SECRET not in haystack, f"the SASL password appears in the {what}"
        leaked = sorted(x for x in pii if x in haystack)
        assert not leaked, f"personal data in the {what}: {leaked[:5]}"

    entity_ids = {e["entity_id"] for e in events}
    labels = {v for (_, lab), _ in scrape(worker.metrics_port).items() for _, v in lab}
    assert not {v for v in labels if v in entity_ids or any(eid in v for eid in entity_ids)}
    # the dead letters do keep the original bytes: that is their purpose, on a topic, not in logs
    dead = [msgspec.json.decode(v) for v in stack.consume(s.topic_deadletter, min_count=len(bad), timeout=30)]
    assert {d["reason"] for d in dead} == {"malformed_json"}
