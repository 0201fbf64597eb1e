"""``riskflow replay``: formats, slicing, routing, progress, and interrupt + resume on the real broker."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import gzip
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest
from aiokafka import AIOKafkaConsumer

from riskflow.core.schema import encode_event
from riskflow.core.settings import Settings
from riskflow.replay import Checkpoint, EventFile, Progress, parse_time, read_events, route
from riskflow.sim import simulate
from tests.support.kafka_fixtures import Stack

COLS = ["event_id", "event_type", "entity_id", "entity_kind", "region", "event_time", "source", "payload"]


def write_csv_gz(path: Path, events: list[dict]) -> None:
    with gzip.open(path, "wt", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(COLS)
        for e in events:
            w.writerow([*(e[c] for c in COLS[:-1]), json.dumps(e["payload"], ensure_ascii=False)])


def test_csv_and_jsonl_read_the_same_events(tmp_path: Path) -> None:
    events, _ = simulate(entities=20, days=30, seed=2)
    write_csv_gz(tmp_path / "e.csv.gz", events)
    (tmp_path / "e.jsonl").write_bytes(b"".join(encode_event(e) + b"\n" for e in events))
    from_csv = [msgspec.json.decode(x) for x in read_events(tmp_path / "e.csv.gz")]
    from_jsonl = [msgspec.json.decode(x) for x in read_events(tmp_path / "e.jsonl")]
    assert from_csv == from_jsonl == events
    (tmp_path / "bad.csv").write_text("event_id,event_type\n1,x\n")
    with pytest.raises(ValueError, match="lacks column"):
        list(read_events(tmp_path / "bad.csv"))


def test_route_slices_by_event_time_and_routes_by_kind() -> None:
    events, _ = simulate(entities=30, days=30, seed=2)
    s = Settings(topic_fund_events="F", topic_institution_events="I")
    start, end = parse_time("2025-01-10"), parse_time("2025-01-20T12:00:00+08:00")
    got = list(route([encode_event(e) for e in events], s, start=start, end=end))
    want = [e for e in events if start <= dt.datetime.fromisoformat(e["event_time"]).timestamp() < end]
    assert [msgspec.json.decode(r.value)["event_id"] for r in got] == [e["event_id"] for e in want]
    for r, e in zip(got, want, strict=True):
        assert r.key == e["entity_id"].encode()
        assert r.topic == ("F" if e["entity_kind"] in ("private_fund", "private_fund_manager") else "I")
    # skip= resumes after N input lines
    assert [r.index for r in route([encode_event(e) for e in events[:10]], s, skip=7)] == [8, 9, 10]


def test_progress_line_and_checkpoint(tmp_path: Path) -> None:
    p = tmp_path / "e.jsonl"
    p.write_bytes(b"x" * 1000)
    src = EventFile(p)
    out = io.StringIO()
    prog = Progress(src, stream=out)
    prog.update(10, parse_time("2025-01-02"), force=True)
    assert "10 events" in out.getvalue() and "/s" in out.getvalue() and "@2025-01-02" in out.getvalue()
    cp = Checkpoint(tmp_path / "cp", str(p), 1000, 42)
    cp.save()
    assert Checkpoint.load(tmp_path / "cp", str(p), 1000).lines_done == 42
    with pytest.raises(ValueError, match="different file"):
        Checkpoint.load(tmp_path / "cp", str(p), 999)


def read_inputs(stack: Stack, min_count: int) -> list[tuple[str, bytes | None, dict]]:

    s = stack.settings

    async def go() -> list[tuple[str, bytes | None, dict]]:
        c = AIOKafkaConsumer(
            s.topic_fund_events,
            s.topic_institution_events,
            bootstrap_servers=stack.bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
        )
        await c.start()
        got: list[tuple[str, bytes | None, dict]] = []
        deadline = time.monotonic() + 60
        quiet = time.monotonic()
        try:
            while time.monotonic() < deadline:
                batch = await c.getmany(timeout_ms=200)
                for tp, msgs in batch.items():
                    got += [(tp.topic, m.key, msgspec.json.decode(m.value)) for m in msgs]
                    quiet = time.monotonic()
                if len(got) >= min_count and time.monotonic() - quiet > 2:
                    break
        finally:
            await c.stop()
        return got

    return asyncio.run(go())


def test_replay_csv_gz_with_slice(stack: Stack, tmp_path: Path) -> None:
    events, _ = simulate(entities=20, days=30, seed=4)
    path = tmp_path / "e.csv.gz"
    write_csv_gz(path, events)
    env = dict(os.environ, **stack.env)
    cmd = [sys.executable, "-m", "riskflow", "replay", str(path), "--from", "2025-01-05", "--to", "2025-01-25"]
    rp = subprocess.run(cmd, env=env, capture_output=True, timeout=120)
    assert rp.returncode == 0, rp.stderr.decode()
    assert b"replay [" in rp.stderr and b"events" in rp.stderr  # the progress line
    lo, hi = parse_time("2025-01-05"), parse_time("2025-01-25")
    want = {e["event_id"]: e for e in events if lo <= dt.datetime.fromisoformat(e["event_time"]).timestamp() < hi}
    got = read_inputs(stack, len(want))
    assert sorted(v["event_id"] for _, _, v in got) == sorted(want)
    s = stack.settings
    for topic, key, v in got:
        assert key == v["entity_id"].encode()
        fund = v["entity_kind"] in ("private_fund", "private_fund_manager")
        assert topic == (s.topic_fund_events if fund else s.topic_institution_events)


def test_interrupt_and_resume_sends_every_event_once(stack: Stack, tmp_path: Path) -> None:
    events, _ = simulate(entities=30, days=40, seed=5)
    events = events[:600]
    t0 = dt.datetime.fromisoformat(events[0]["event_time"]).timestamp()
    t_end = dt.datetime.fromisoformat(events[-1]["event_time"]).timestamp()
    speed = (t_end - t0) / 30  # the whole file would take ~30 s
    path = tmp_path / "e.jsonl"
    path.write_bytes(b"".join(encode_event(e) + b"\n" for e in events))
    cp = tmp_path / "cp.json"
    env = dict(os.environ, **stack.env)
    base = [sys.executable, "-m", "riskflow", "replay", str(path), "--checkpoint", str(cp), "--no-progress"]
    proc = subprocess.Popen([*base, "--speed", str(speed)], env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 90
    done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if cp.exists():
            done = json.loads(cp.read_text())["lines_done"]
            if done >= 50:
                break
        time.sleep(0.2)
    assert done >= 50 and proc.poll() is None, "replay should be part-way through"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err.decode()
    first = json.loads(cp.read_text())["lines_done"]
    assert 50 <= first < len(events)
    rp = subprocess.run([*base, "--resume"], env=env, capture_output=True, timeout=120)
    assert rp.returncode == 0, rp.stderr.decode()
    assert f"resuming after line {first:,}".encode() in rp.stderr
    got = [v["event_id"] for _, _, v in read_inputs(stack, len(events))]
    assert sorted(got) == sorted(e["event_id"] for e in events), "every event exactly once"


def test_route_passes_lines_it_cannot_read_on_to_the_worker_unkeyed() -> None:
    # each of these crashed `riskflow replay` (issue 22); the worker dead-letters them with a reason
    deep = b'{"entity_id": "X", "junk": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    year0 = b'{"entity_id": "X", "entity_kind": "bank", "event_time": "0001-01-01T00:00:00+14:00"}'
    good = b'{"entity_id": "B-1", "entity_kind": "bank", "event_time": "2025-01-01T00:00:00+08:00"}'
    routed = list(route([deep, year0, good], Settings()))
    assert [r.value for r in routed] == [deep, year0, good]
    assert [r.key for r in routed] == [None, b"X", b"B-1"]


def test_replay_into_a_fresh_cluster_creates_the_topics_with_the_configured_partitions(
    stack: Stack, tmp_path: Path
) -> None:
    """No worker has run yet: replay creates the input topics itself, with ``RISKFLOW_PARTITIONS``,
    rather than letting the broker auto-create them on first write with its own default (Tansu 4,
    Kafka 1), which the workers would then have to keep."""
    events, _ = simulate(entities=20, days=5, seed=2)
    path = tmp_path / "e.jsonl"
    path.write_bytes(b"".join(json.dumps(e).encode() + b"\n" for e in events))
    env = dict(os.environ, **stack.env, RISKFLOW_PARTITIONS="6")
    rp = subprocess.run(
        [sys.executable, "-m", "riskflow", "replay", str(path)], env=env, capture_output=True, timeout=120
    )
    assert rp.returncode == 0, rp.stderr.decode()

    async def counts() -> dict[str, int]:
        c = AIOKafkaConsumer(bootstrap_servers=stack.bootstrap)
        await c.start()
        try:
            s = stack.settings
            await c.topics()  # fetches the cluster's metadata
            return {t: len(c.partitions_for_topic(t) or ()) for t in (s.topic_fund_events, s.topic_institution_events)}
        finally:
            await c.stop()

    assert set(asyncio.run(counts()).values()) == {6}
