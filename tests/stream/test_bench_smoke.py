"""The benchmarks run (on trivially small sizes), so that they do not rot.

These are not timed tests: they only check that every script in ``bench/``
still runs against the product's current API and prints its ``name=value``
headline. The figures themselves come from ``python bench/run_all.py``.
"""

from __future__ import annotations

import math
import random
import subprocess
from pathlib import Path

import pytest

import detectors
from bench import (
    ab,
    backtest,
    backtest_jobs,
    broker_hop,
    columnar_bench,
    common,
    compiled,
    detector_cost,
    latency,
    memory,
    parse,
    pipeline,
    processor,
    produce,
    run_all,
    scaleout,
)
from riskflow.broker import EmbeddedBroker
from riskflow.core.schema import parse_event


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "CACHE", tmp_path)
    monkeypatch.setattr(memory, "CACHE", tmp_path)


def _headline(capsys: pytest.CaptureFixture[str], name: str) -> float:
    last = capsys.readouterr().out.strip().splitlines()[-1]
    key, _, value = last.partition("=")
    assert key == name, last
    return float(value)


def test_parse_bench(capsys: pytest.CaptureFixture[str]) -> None:
    parse.main(["--events", "300", "--rounds", "1"])
    assert _headline(capsys, "msgspec_vs_orjson_speedup") > 0


def test_parse_bench_checks_agree_with_the_schema(valid_example_lines: list[bytes], invalid_examples) -> None:
    """The dict-based contenders accept and reject exactly what the product does."""
    for line in valid_example_lines:
        parse.validate_dict(parse.orjson.loads(line))
    for why, line in invalid_examples:
        with pytest.raises(ValueError):
            parse.validate_dict(parse.orjson.loads(line))
            pytest.fail(f"accepted: {why}")


def test_processor_bench(capsys: pytest.CaptureFixture[str]) -> None:
    processor.main(["--events", "300", "--rounds", "1"])
    assert _headline(capsys, "processor_events_per_s") > 0


def test_backtest_bench(capsys: pytest.CaptureFixture[str]) -> None:
    """The real command, as a child process."""
    backtest.main(["--events", "300", "--rounds", "1"])
    out = capsys.readouterr().out
    assert "riskflow backtest --jobs 1:" in out, out
    assert float(out.strip().splitlines()[-1].partition("backtest_events_per_s=")[2]) > 0


def test_backtest_jobs_bench(capsys: pytest.CaptureFixture[str]) -> None:
    """Both counts in one round (they must agree, or the script exits)."""
    backtest_jobs.main(["--events", "600", "--rounds", "1", "--batch-size", "200"])
    out = capsys.readouterr().out
    assert "same report and alerts" in out, out
    assert float(out.strip().splitlines()[-1].partition("backtest_jobs2_vs_jobs1=")[2]) > 0


def test_ab_bench(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Two sides: a git revision (checked out as a worktree in the cache) and this checkout."""
    try:
        ab.main(["HEAD", "--events", "300", "--rounds", "2"])
        out = capsys.readouterr().out
        assert "alerts identical" in out, out  # the same code on both sides gives the same alerts
        ratio = float(out.strip().splitlines()[-1].partition("ab_cpu_ratio=")[2])
        assert ratio > 0
    finally:
        for wt in tmp_path.glob("ab-*"):
            if wt.is_dir():
                subprocess.run(["git", "-C", str(common.ROOT), "worktree", "remove", "--force", str(wt)], check=False)


def test_ab_bench_counts_instructions_repeatably(capsys: pytest.CaptureFixture[str]) -> None:
    """Under valgrind (``.ci/apt-packages``), the same code counted twice gives the same count:
    what makes ``--instructions`` worth its slowness on a busy machine."""
    ab.main([str(common.ROOT), "--events", "300", "--instructions"])
    out = capsys.readouterr().out
    assert "alerts identical" in out, out
    assert "instructions/event" in out, out
    ratio = float(out.strip().splitlines()[-1].partition("ab_instructions_ratio=")[2])
    assert abs(ratio - 1.0) < 1e-3, out


@pytest.mark.skipif(not detectors.compiled(), reason="needs the compiled build (RISKFLOW_COMPILE=1 pip install -e .)")
def test_compiled_bench(capsys: pytest.CaptureFixture[str]) -> None:
    compiled.main(["--events", "300", "--rounds", "1"])
    assert _headline(capsys, "compiled_vs_pure_ratio") > 0


def test_columnar_bench(capsys: pytest.CaptureFixture[str]) -> None:
    """The prototype's run checks its own output: same signals as the product's rule loop,
    same alerts through the product's processor."""
    columnar_bench.main(["--events", "600", "--rounds", "1", "--no-instructions"])
    out = capsys.readouterr().out
    assert "alerts: identical" in out, out
    assert "signals: identical in every run" in out, out
    assert float(out.strip().splitlines()[-1].partition("columnar_vs_current_cpu_ratio=")[2]) > 0


def test_columnar_prototype_matches_the_product_out_of_order() -> None:
    """Events of an entity out of order (within the allowed lateness) and batches of every size:
    the count windows carry state across batches and fold a late day into its own bucket, as the
    product's rules do; the simulated history alone is in order."""
    rng = random.Random(7)
    lines = common.history(3000)
    jitter = {line: parse_event(line, now=columnar_bench.NOW).ts + rng.uniform(0, 3 * 86400) for line in lines}
    lines = sorted(lines, key=jitter.__getitem__)
    events = columnar_bench.normal_path(lines)
    mark: dict[str, float] = {}
    behind = 0
    for e in events:
        behind += e.ts < mark.get(e.entity_id, 0.0)
        mark[e.entity_id] = max(mark.get(e.entity_id, 0.0), e.ts)
    assert behind > 100  # the reordering does put events behind their entity's time
    rules = columnar_bench.covered_pack().detectors
    windows = {r.id for r in rules if r.kind != "threshold"}
    for size in (1, 7, 1000):
        batches = [events[i : i + size] for i in range(0, len(events), size)]
        states: dict[str, dict] = {}
        want = columnar_bench.current_signals(rules, batches, states)
        engine = columnar_bench.ColumnarRules(rules)
        got = columnar_bench.columnar_signals(engine, batches)
        assert any(s.detector_id in windows for _, s in want)
        assert [(i, s.detector_id, s.key, s.evidence) for i, s in got] == [
            (i, s.detector_id, s.key, s.evidence) for i, s in want
        ], size
        # and every count window's end state: end day, armed flag, count over the window
        compared = 0
        for rid in windows:
            ring = engine.rings[rid]
            for eid, slot in engine.slots.items():
                st = states.get(eid, {}).get(rid)
                if st is None:
                    continue
                oldest = st["t"] - ring.w + 1
                value = sum(b[1] for b in st.get("b", []) if b[0] >= oldest)
                kept = float(ring.count[slot][ring.day[slot] >= oldest].sum())
                assert (ring.t[slot], bool(ring.on[slot]), kept) == (st["t"], bool(st["on"]), value), (rid, eid)
                compared += 1
        assert compared > 20
    same, alerts, from_rules, _ = columnar_bench.check_alerts(lines, 50)
    assert same and from_rules > 0, (alerts, from_rules)


def test_run_all_summary(capsys: pytest.CaptureFixture[str]) -> None:
    """The summary repeats each script's headline with the load it ran under, then the
    issue's figures one per line (those not run say so), then the machine line."""
    assert run_all.main(["--quick", "--only", "parse,backtest"]) == 0
    out = capsys.readouterr().out
    issue = out.partition("== issue 23\n")[2].splitlines()
    assert [line.partition("=")[0].partition(":")[0] for line in issue[:6]] == [n for n, _ in run_all.ISSUE_RATIOS]
    assert float(issue[4].partition("backtest_events_per_s=")[2].split()[0]) > 0, out
    assert "(bench/backtest.py; load " in issue[4], out
    assert issue[0] == "backtest_jobs2_vs_jobs1: not run (bench/backtest_jobs.py)", out
    assert issue[6].startswith("machine: ") and " cores, " in issue[6] and "load average" in issue[6], out


def test_detector_cost_bench(capsys: pytest.CaptureFixture[str]) -> None:
    detector_cost.main(["--events", "300", "--rounds", "1"])
    assert _headline(capsys, "detectors_cpu_us_per_event") > 0


def test_memory_bench(capsys: pytest.CaptureFixture[str]) -> None:
    memory.main(["--sizes", "2000", "--history", "300"])
    assert math.isfinite(_headline(capsys, "bytes_per_entity"))


def test_kafka_benches(broker: EmbeddedBroker, capsys: pytest.CaptureFixture[str]) -> None:
    """Pipeline, scale-out, latency and the broker's hops on the session's embedded broker, one short round each."""
    pipeline.main(["--events", "400", "--rounds", "1", "--bootstrap", broker.bootstrap, "--timeout", "120"])
    _headline(capsys, "pipeline_vs_raw_ratio")
    scaleout.main(["--events", "400", "--rounds", "1", "--bootstrap", broker.bootstrap, "--timeout", "120"])
    _headline(capsys, "worker_processes2_vs_1")
    latency.main(["--rate", "100", "--seconds", "3", "--warmup", "2", "--rounds", "1", "--bootstrap", broker.bootstrap])
    out = capsys.readouterr().out
    assert "round 1, relay:" in out and "round 1, worker:" in out, out
    vs_raw, vs_relay = out.strip().splitlines()[-2:]
    assert float(vs_raw.partition("latency_p99_vs_raw=")[2]) > 0, out
    assert float(vs_relay.partition("latency_p99_vs_relay=")[2]) > 0, out
    hop = ["--rate", "100", "--seconds", "2", "--warmup", "1", "--rounds", "1"]
    broker_hop.main([*hop, "--bootstrap", broker.bootstrap])
    assert _headline(capsys, "relay_p99_vs_one_hop") > 0
    produce.main(["--records", "300", "--rounds", "1", "--bootstrap", broker.bootstrap])
    assert _headline(capsys, "batched_vs_send_cpu_ratio") > 0
