"""End to end on the real broker: replay -> worker -> alerts / dead letters."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterable

import msgspec
from prometheus_client.parser import text_string_to_metric_families

from detectors.factory import build_processor
from detectors.pipeline import RawMessage
from detectors.risk.contagion import CONTAGION_RULE as CONTAGION
from detectors.rules import load_pack
from riskflow.core.partitioning import partition_for
from riskflow.core.schema import encode_event
from riskflow.core.settings import Settings
from riskflow.replay import route
from riskflow.simulate import simulate
from tests.support.kafka_fixtures import Stack


def offline_alerts(lines: list[bytes], settings: Settings) -> tuple[dict[str, int], int, set[str]]:
    """The reference: the same pipeline without Kafka, one batch, a dict as state, every
    event on the topic and partition Kafka puts it on (timed rules follow partitions).
    Returns the highest revision of each alert id, the number of the entities' own
    alert records (contagion alerts may show more intermediate revisions live) and the
    rules that fired."""
    bp = build_processor(load_pack(), dedup_window=1000)
    msgs = [
        RawMessage(r.value, r.topic, partition_for(r.key or b"", settings.partitions), i, r.key)
        for i, r in enumerate(route(lines, settings))
    ]
    res = bp.process(msgs, {}.get)
    own = [a for a in res.alerts if a.rule_id != CONTAGION]
    revs = highest_revisions(msgspec.json.decode(a.to_json()) for a in res.alerts)
    return revs, len(own), {a.rule_id for a in res.alerts}


def highest_revisions(alerts: Iterable[dict]) -> dict[str, int]:
    best: dict[str, int] = {}
    for a in alerts:
        best[a["alert_id"]] = max(best.get(a["alert_id"], 0), a["revision"])
    return best


def test_replay_through_worker_gives_expected_alerts_and_dead_letters(
    stack: Stack, invalid_examples: list[tuple[str, bytes]]
) -> None:
    events, labels = simulate(entities=40, days=40, seed=3)
    assert labels, "the history must contain a failure scenario"
    lines = [encode_event(e) for e in events]
    stack.env["RISKFLOW_DEDUP_WINDOW"] = "1000"
    s = stack.settings
    expected, n_own, offline_rules = offline_alerts(lines, s)
    assert len(expected) >= 10 and n_own > len(expected), "the history must fold repeated hits into episodes"

    worker = stack.start_worker()
    records = [(r.topic, r.key, r.value) for r in route(lines, s)]
    bad = [(s.topic_fund_events, b"PF-1", line) for _, line in invalid_examples]
    stack.produce(records + bad)

    # Episodes: an id may come several times with rising revisions; the set of ids and the
    # highest revision of each are those of the offline run, and no (id, revision) repeats.
    # Contagion messages take two more trips through the links topic: wait for them too.
    alerts: list[dict] = []
    for _ in range(3):
        alerts = [msgspec.json.decode(v) for v in stack.consume(s.topic_alerts, min_count=n_own, timeout=90)]
        if highest_revisions(alerts) == expected:
            break
    assert highest_revisions(alerts) == expected, worker.log_text()[-3000:]
    pairs = [(a["alert_id"], a["revision"]) for a in alerts]
    assert len(pairs) == len(set(pairs)), "an alert revision was emitted twice"
    assert sum(1 for a in alerts if a["rule_id"] != CONTAGION) == n_own
    rules_hit = {a["rule_id"] for a in alerts}
    want = {"pf.guaranteed_return", "pf.unqualified_investor", "pf.amac_lost_contact", "risk.level", CONTAGION}
    assert rules_hit == offline_rules and want <= rules_hit
    for a in alerts:
        for f in ("entity_id", "rule_id", "severity", "title_zh", "title_en", "evidence", "event_time",
                  "detected_at", "risk_level", "risk_tags"):  # fmt: skip
            assert a[f] not in (None, ""), f
        if a["rule_id"] != CONTAGION:  # a contagion target may be an entity with no event of its own yet
            assert a["entity_kind"] and a["region"]
        assert 0 <= a["risk_index"] <= 100 and a["risk_level"] in ("red", "orange", "yellow", "green")
    assert "red" in {a["risk_level"] for a in alerts if a["rule_id"] == "risk.level"}

    dead = [msgspec.json.decode(v) for v in stack.consume(s.topic_deadletter, min_count=len(bad), timeout=30)]
    expected_reasons = ["malformed_json", "unknown_event_type", "invalid_payload", "invalid_time"]
    expected_reasons += ["unknown_region", "invalid_payload", "unsupported_schema"]
    assert sorted(d["reason"] for d in dead) == sorted(expected_reasons)
    for d in dead:
        assert d["topic"] == s.topic_fund_events and d["offset"] >= 0 and d["original_sha256"] and d["detail"]

    # Metrics count the same batches, by fixed labels only.
    text = urllib.request.urlopen(f"http://127.0.0.1:{worker.metrics_port}/metrics", timeout=5).read().decode()
    samples = {
        (s_.name, tuple(sorted(s_.labels.items()))): s_.value
        for fam in text_string_to_metric_families(text)
        for s_ in fam.samples
    }
    assert sum(v for (n, _), v in samples.items() if n == "riskflow_events_total") == len(records)
    assert samples[("riskflow_invalid_events_total", (("reason", "invalid_payload"),))] == 2
    assert sum(v for (n, _), v in samples.items() if n == "riskflow_alerts_total") == len(alerts)

    # Replaying the same history again creates no new alert ids; every re-sent event is a duplicate.
    stack.produce(records)
    again = stack.consume(s.topic_alerts, min_count=len(alerts), timeout=30, settle=6)
    assert len(again) == len(alerts) and highest_revisions(msgspec.json.decode(v) for v in again) == expected
    dead2 = stack.consume(s.topic_deadletter, min_count=len(bad) + len(records), timeout=60)
    reasons = [msgspec.json.decode(v)["reason"] for v in dead2]
    assert reasons.count("duplicate_event") == len(records)
    assert worker.proc.poll() is None, "the worker must keep running"
