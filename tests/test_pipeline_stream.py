"""End to end on the real broker: replay -> worker -> alerts / dead letters."""

from __future__ import annotations

import urllib.request

import msgspec
from prometheus_client.parser import text_string_to_metric_families

from detectors.factory import build_processor
from detectors.pipeline import RawMessage
from detectors.rules import load_pack
from riskflow.replay import route
from riskflow.schema import encode_event
from riskflow.simulate import simulate
from tests.kafka_fixtures import Stack


def offline_alert_ids(lines: list[bytes]) -> set[str]:
    """The reference: the same pipeline without Kafka, one batch, a dict as state."""
    bp = build_processor(load_pack(), dedup_window=1000)
    res = bp.process([RawMessage(v, "file", 0, i, None) for i, v in enumerate(lines)], {}.get)
    return {a.alert_id for a in res.alerts}


def test_replay_through_worker_gives_expected_alerts_and_dead_letters(
    stack: Stack, invalid_examples: list[tuple[str, bytes]]
) -> None:
    events, labels = simulate(entities=40, days=40, seed=3)
    assert labels, "the history must contain a failure scenario"
    lines = [encode_event(e) for e in events]
    expected = offline_alert_ids(lines)
    assert len(expected) >= 10

    stack.env["RISKFLOW_DEDUP_WINDOW"] = "1000"
    s = stack.settings
    worker = stack.start_worker()
    records = [(r.topic, r.key, r.value) for r in route(lines, s)]
    bad = [(s.topic_fund_events, b"PF-1", line) for _, line in invalid_examples]
    stack.produce(records + bad)

    alerts = [msgspec.json.decode(v) for v in stack.consume(s.topic_alerts, min_count=len(expected), timeout=90)]
    ids = [a["alert_id"] for a in alerts]
    assert set(ids) == expected, worker.log_text()[-3000:]
    assert len(ids) == len(set(ids)), "an alert was emitted twice"
    rules_hit = {a["rule_id"] for a in alerts}
    assert rules_hit - {"anomaly.daily"} == {"pf.guaranteed_return", "pf.unqualified_investor", "pf.amac_lost_contact"}
    for a in alerts:
        for f in ("entity_id", "entity_kind", "region", "rule_id", "severity", "title_zh", "title_en",
                  "evidence", "event_time", "detected_at"):  # fmt: skip
            assert a[f] not in (None, ""), f

    dead = [msgspec.json.decode(v) for v in stack.consume(s.topic_deadletter, min_count=len(bad), timeout=30)]
    expected_reasons = ["malformed_json", "unknown_event_type", "invalid_payload", "invalid_time"]
    expected_reasons += ["unknown_region", "invalid_payload", "unsupported_schema"]
    assert sorted(d["reason"] for d in dead) == sorted(expected_reasons)
    for d in dead:
        assert d["topic"] == s.topic_fund_events and d["offset"] >= 0 and d["original_b64"] and d["detail"]

    # Metrics count the same batches, by fixed labels only.
    text = urllib.request.urlopen(f"http://127.0.0.1:{worker.metrics_port}/metrics", timeout=5).read().decode()
    samples = {
        (s_.name, tuple(sorted(s_.labels.items()))): s_.value
        for fam in text_string_to_metric_families(text)
        for s_ in fam.samples
    }
    assert sum(v for (n, _), v in samples.items() if n == "riskflow_events_total") == len(records)
    assert samples[("riskflow_invalid_events_total", (("reason", "invalid_payload"),))] == 2
    assert sum(v for (n, _), v in samples.items() if n == "riskflow_alerts_total") == len(expected)

    # Replaying the same history again creates no new alert ids; every re-sent event is a duplicate.
    stack.produce(records)
    again = stack.consume(s.topic_alerts, min_count=len(ids), timeout=30, settle=6)
    assert {msgspec.json.decode(v)["alert_id"] for v in again} == expected
    dead2 = stack.consume(s.topic_deadletter, min_count=len(bad) + len(records), timeout=60)
    reasons = [msgspec.json.decode(v)["reason"] for v in dead2]
    assert reasons.count("duplicate_event") == len(records)
    assert worker.proc.poll() is None, "the worker must keep running"
