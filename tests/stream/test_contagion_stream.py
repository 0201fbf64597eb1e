"""Contagion on the real broker with two workers: link and push messages cross partitions
(and workers) through the keyed links topic and land where the target entity's state lives."""

from __future__ import annotations

import time

import msgspec

from detectors.factory import build_processor
from detectors.pipeline import RawMessage
from detectors.risk.contagion import CONTAGION_RULE
from detectors.rules import load_pack
from riskflow.core.partitioning import partition_for
from riskflow.replay import route
from tests.support.contagion_events import fund_registered, lost_contact, quiet_day
from tests.support.kafka_fixtures import Stack


def history() -> list[bytes]:
    out = [fund_registered(f"PF-{i}", f"PFM-{i % 4}", f"f{i}", 0) for i in range(8)]
    out += [quiet_day(f"PF-{i}", "private_fund", f"q{i}", 1) for i in range(8)]
    out += [lost_contact("PFM-0", "m0", 2), lost_contact("PFM-1", "m1", 3)]
    out += [quiet_day("PFM-0", "private_fund_manager", "late0", 40)]  # decayed: PFM-0 falls back
    # Each fund's partition moves past the pushes' time (a push lands in event time: before its
    # dependent's first own event after it, or when its partition's time passes it).
    out += [quiet_day(f"PF-{i}", "private_fund", f"z{i}", 5) for i in range(8)]
    return out


def best(alerts: list[dict]) -> dict[str, tuple[int, str, float, str]]:
    """Contagion alert id -> (revision, the dependent's level and index it shows, dependent)."""
    out: dict[str, tuple[int, str, float, str]] = {}
    for a in alerts:
        if a["rule_id"] == CONTAGION_RULE and a["revision"] >= out.get(a["alert_id"], (0,))[0]:
            out[a["alert_id"]] = (a["revision"], a["risk_level"], a["risk_index"], a["entity_id"])
    return out


def test_contagion_across_two_workers_matches_offline(stack: Stack) -> None:
    lines = history()
    s = stack.settings
    bp = build_processor(load_pack(), dedup_window=1000)
    res = bp.process([RawMessage(v, "f", 0, i, None) for i, v in enumerate(lines)], {}.get)
    expected = best([msgspec.json.decode(a.to_json()) for a in res.alerts])
    assert {e for *_, e in expected.values()} == {"PF-0", "PF-4", "PF-1", "PF-5"}
    # Contagion raised the funds' own shown level (offline: their final states).
    raised = {k: r.level for k, (s, _) in res.states.items() if k.startswith("PF-") and (r := s.risk) and r.raised_by}
    assert raised["PF-1"] == "orange" and raised["PF-5"] == "orange"
    # The effects must cross partitions (so, with two workers, processes): manager and fund differ.
    pairs = [("PFM-0", "PF-4"), ("PFM-1", "PF-1"), ("PFM-1", "PF-5")]
    assert all(partition_for(m.encode(), s.partitions) != partition_for(f.encode(), s.partitions) for m, f in pairs)

    workers = [stack.start_worker(), stack.start_worker()]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not all("Worker ready" in w.log_text() for w in workers):
        time.sleep(0.5)
    stack.produce([(r.topic, r.key, r.value) for r in route(lines, s)])
    got: dict[str, tuple[int, str, float, str]] = {}
    alerts: list[dict] = []
    for _ in range(4):
        alerts = [msgspec.json.decode(v) for v in stack.consume(s.topic_alerts, min_count=len(expected), timeout=90)]
        got = best(alerts)
        if got == expected:
            break
    logs = "\n".join(w.log_text()[-2000:] for w in workers)
    assert got == expected, logs
    for a in alerts:
        if a["rule_id"] == CONTAGION_RULE:
            # The push was handled where the fund's state lives: its kind and region are known.
            assert a["entity_kind"] == "private_fund" and a["region"] == "330100", a
            # The dependent's level moved with it, and the alert says from what to what.
            assert a["evidence"]["to"] == a["risk_level"] and "risk.contagion" in a["risk_tags"], a
    assert all(w.proc.poll() is None for w in workers)
