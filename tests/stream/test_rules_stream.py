"""Live rule packs on the real broker: `riskflow rules push` switches running workers
(every one of them) without a restart; shadow rules alert on the shadow topic only;
a restarted worker starts on the latest pushed pack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import yaml

from detectors.rules import load_pack
from riskflow.core.partitioning import partition_for
from riskflow.replay import route
from tests.support.kafka_fixtures import Stack

PACK = """
version: "test.2"
rules:
  - id: t.roadshow_return
    name_zh: 路演承诺收益
    name_en: Return promised at a roadshow
    kind: threshold
    entity_kinds: [enterprise]
    severity: medium
    dimension: inducement
    rationale: A test rule that the built-in pack does not have.
    source: 《测试办法》第1条
    params:
      event_type: advertisement.published
      when:
        - {field: promised_return, op: ">", value: 0.04}
  - id: t.roadshow_shadow
    name_zh: 路演承诺收益（试行）
    name_en: Return promised at a roadshow (trial)
    kind: threshold
    mode: shadow
    entity_kinds: [enterprise]
    severity: low
    dimension: inducement
    rationale: The same finding, on trial.
    source: 《测试办法》第2条
    params:
      event_type: advertisement.published
      when:
        - {field: promised_return, op: ">", value: 0.04}
"""


def ad(event_id: str, entity: str, *, guaranteed: bool = False) -> bytes:
    payload = {"channel": "roadshow", "promised_return": 0.05, "guaranteed": guaranteed}
    return json.dumps(
        {
            "schema": "riskflow.event/v1",
            "event_id": event_id,
            "event_type": "advertisement.published",
            "entity_id": entity,
            "entity_kind": "enterprise",
            "region": "330300",
            "event_time": "2025-05-01T10:00:00+08:00",
            "source": "advertising_monitor",
            "payload": payload,
        }
    ).encode()


def entities_on_every_partition(partitions: int, prefix: str) -> list[str]:
    out: dict[int, str] = {}
    i = 0
    while len(out) < partitions:
        name = f"{prefix}-{i:04d}"
        out.setdefault(partition_for(name.encode(), partitions), name)
        i += 1
    return [out[p] for p in range(partitions)]


def alerts_of(stack: Stack, topic: str, min_count: int, timeout: float = 90) -> list[dict]:
    return [msgspec.json.decode(v) for v in stack.consume(topic, min_count=min_count, timeout=timeout, settle=2)]


def test_push_switches_every_running_worker_and_restart_keeps_it(stack: Stack, tmp_path: Path) -> None:
    s = stack.settings
    send = lambda lines: stack.produce([(r.topic, r.key, r.value) for r in route(lines, s)])  # noqa: E731
    ents = entities_on_every_partition(s.partitions, "ENT-330300")
    w1, w2 = stack.start_worker(), stack.start_worker()

    # Both workers are up and own partitions: the built-in pack fires on every entity.
    send([ad(f"g-{e}", e, guaranteed=True) for e in ents])
    before = alerts_of(stack, s.topic_alerts, len(ents), timeout=120)
    builtin = load_pack()
    assert {a["entity_id"] for a in before if a["rule_id"] == "pf.guaranteed_return"} == set(ents)
    assert {a["rule_pack_version"] for a in before} == {builtin.version}
    # ... and a 5% roadshow promise is no finding under it
    send([ad(f"pre-{e}", e) for e in ents])

    pack_file = tmp_path / "trial.yaml"
    pack_file.write_text(PACK, encoding="utf-8")
    env = dict(os.environ, **stack.env)
    out = subprocess.run(
        [sys.executable, "-m", "riskflow", "rules", "push", str(pack_file)], env=env, capture_output=True, timeout=60
    )
    assert out.returncode == 0, out.stderr.decode()[-2000:]
    pushed = load_pack(pack_file).version
    assert pushed.encode() in out.stdout

    # Without a restart, every worker (every partition) switches: keep sending until all fired.
    deadline = time.monotonic() + 120
    fired: dict[str, dict] = {}
    n = 0
    while time.monotonic() < deadline and len(fired) < len(ents):
        n += 1
        send([ad(f"post-{n}-{e}", e) for e in ents if e not in fired])
        for a in alerts_of(stack, s.topic_alerts, 0, timeout=5):
            if a["rule_id"] == "t.roadshow_return":
                fired[a["entity_id"]] = a
    assert set(fired) == set(ents), (w1.log_text()[-2000:], w2.log_text()[-2000:])
    assert all(a["rule_pack_version"] == pushed and a["mode"] == "live" for a in fired.values())
    assert w1.proc.poll() is None and w2.proc.poll() is None, "no restart"
    everything = alerts_of(stack, s.topic_alerts, len(before) + len(ents))
    assert not [a for a in everything if a["event_id"].startswith("pre-") and a["rule_id"].startswith("t.")]
    assert not [a for a in everything if a["mode"] == "shadow"], "shadow alerts never reach the officers' topic"

    # The shadow rule was evaluated too: its alerts are on the shadow topic only.
    shadow = alerts_of(stack, s.topic_shadow_alerts, len(ents))
    assert {a["entity_id"] for a in shadow} == set(ents)
    assert {(a["rule_id"], a["mode"], a["rule_pack_version"]) for a in shadow} == {
        ("t.roadshow_shadow", "shadow", pushed)
    }

    # A restarted worker starts on the latest pushed pack.
    w1.stop()
    w2.stop()
    w3 = stack.start_worker()
    send([ad("after-restart", ents[0])])
    deadline = time.monotonic() + 120
    got: list[dict] = []
    while time.monotonic() < deadline and not got:
        got = [a for a in alerts_of(stack, s.topic_alerts, 0, timeout=5) if a["event_id"] == "after-restart"]
    assert got and {(a["rule_id"], a["rule_pack_version"]) for a in got} >= {("t.roadshow_return", pushed)}, (
        w3.log_text()[-3000:]
    )


def crashing_packs(good_rule: dict) -> list[bytes]:
    """Control messages that crashed (or silently emptied) every worker before issue 22's fix,
    written raw to the rules topic, past the CLI's checks."""

    def pushed(files: dict[str, str]) -> bytes:
        return msgspec.json.encode({"schema": "riskflow.rulepack/v1", "version": "evil", "files": files})

    return [
        pushed({"deep.yaml": "rules:\n  - " + "[" * 3000 + "]" * 3000 + "\n"}),  # RecursionError in YAML
        pushed({"inf.yaml": yaml.safe_dump({"rules": [{**good_rule, "params": {"threshold": float("inf")}}]})}),
        pushed({"empty.yaml": "rules: []\n"}),  # every rule switched off
        pushed({"kind.yaml": yaml.safe_dump({"rules": [{**good_rule, "kind": [1]}]})}),  # TypeError in the builder
        b'{"schema": "riskflow.rulepack/v1", "files": ' + b"[" * 100_000,  # RecursionError in the JSON decoder
    ]


def test_a_pack_that_would_crash_workers_is_refused_and_the_pack_stays(stack: Stack) -> None:
    s = stack.settings
    send = lambda lines: stack.produce([(r.topic, r.key, r.value) for r in route(lines, s)])  # noqa: E731
    ents = entities_on_every_partition(s.partitions, "ENT-330301")
    builtin = load_pack()
    rule = dict(next(r.spec for r in builtin.detectors if r.id == "pf.guaranteed_return"), id="t.evil")
    w1 = stack.start_worker()

    def fired(prefix: str, worker: object) -> None:
        deadline = time.monotonic() + 120
        got: set[str] = set()
        while time.monotonic() < deadline and got != set(ents):
            for a in alerts_of(stack, s.topic_alerts, 0, timeout=5):
                if a["event_id"].startswith(prefix) and a["rule_id"] == "pf.guaranteed_return":
                    assert a["rule_pack_version"] == builtin.version
                    got.add(a["entity_id"])
        assert got == set(ents), worker.log_text()[-3000:]  # type: ignore[attr-defined]

    send([ad(f"before-{e}", e, guaranteed=True) for e in ents])
    fired("before-", w1)
    bad = crashing_packs(rule)
    stack.produce([(s.topic_rules, b"pack", m) for m in bad])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and w1.log_text().count("rule pack rejected") < len(bad):
        time.sleep(1.0)
    assert w1.log_text().count("rule pack rejected") == len(bad), w1.log_text()[-3000:]
    send([ad(f"after-{e}", e, guaranteed=True) for e in ents])
    fired("after-", w1)
    assert w1.proc.poll() is None, "no restart"
    assert "Traceback" not in w1.log_text()

    # A restarted worker reads the same messages at start-up (the old crash loop): it starts, on its pack.
    w1.stop()
    w2 = stack.start_worker()
    send([ad(f"restart-{e}", e, guaranteed=True) for e in ents])
    fired("restart-", w2)
    assert w2.proc.poll() is None and w2.log_text().count("rule pack rejected") == len(bad)
