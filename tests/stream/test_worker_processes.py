"""``riskflow worker --processes N`` on the embedded broker, and the partition-count check.

Two processes of one group split the partitions and give the alerts of ``riskflow backtest``
on the same history; SIGTERM of the supervisor stops every child, SIGKILL of a child gets it
restarted with the output still exact, SIGKILL of the supervisor takes its children with it.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from riskflow.backtest import backtest
from riskflow.core.alerts import Alert
from riskflow.core.errors import CommandError
from riskflow.core.schema import encode_event
from riskflow.core.settings import Settings
from riskflow.replay import route
from riskflow.simulate import simulate
from riskflow.supervisor import Supervisor, resolve_processes
from riskflow.worker import settle_partitions
from streams.tables import changelog_topic
from tests.support.kafka_fixtures import Stack, Worker
from tests.support.reliability_tools import (
    alerts_by_id,
    assert_alerts_exactly,
    assert_same_contents,
    metric_sum,
    produce,
    scrape,
    wait_read,
)

NOW = 2_000_000_000.0


def history(seed: int) -> list[bytes]:
    events, _ = simulate(entities=40, days=40, seed=seed)
    return [encode_event(e) for e in events]


def backtest_alerts(lines: list[bytes], settings: Settings) -> dict[str, list[Alert]]:
    """What ``riskflow backtest`` emits on ``lines``, by alert id (revisions in order)."""
    out: dict[str, list[Alert]] = {}
    backtest(lines, settings=settings, now=NOW, on_alert=lambda a: out.setdefault(a.alert_id, []).append(a))
    assert out, "the history raises no alert: it proves nothing"
    return out


def all_alerts(stack: Stack, want: dict[str, list[Alert]], timeout: float = 240.0) -> list[bytes]:
    """The alerts topic once it holds every wanted id (then 3 s of quiet, so extras show too);
    a count alone is no sign: a restarted process re-emits copies."""
    deadline = time.monotonic() + timeout
    while True:
        values = stack.consume(stack.settings.topic_alerts, min_count=len(want), timeout=timeout)
        if alerts_by_id(values).keys() >= want.keys() or time.monotonic() > deadline:
            return values
        time.sleep(1.0)


def child_pids(sup: Worker, index: int) -> list[int]:
    """The pids the supervisor reported for child ``index``, in start order."""
    return [int(p) for p in re.findall(rf"worker process {index}: pid (\d+)", sup.log_text())]


def wait_log(sup: Worker, pattern: str, count: int, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while len(re.findall(pattern, sup.log_text())) < count:
        assert sup.proc.poll() is None, sup.log_text()[-3000:]
        assert time.monotonic() < deadline, f"{count} x {pattern!r} never logged:\n" + sup.log_text()[-3000:]
        time.sleep(0.5)


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running (not zombie) process."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def start_two(stack: Stack) -> Worker:
    """A supervisor of two processes whose both children joined the group (both ready)."""
    sup = stack.start_worker("--processes", "2")
    wait_log(sup, r"\[worker \d\] .*Worker ready", 2)
    assert len(child_pids(sup, 0)) == 1 and len(child_pids(sup, 1)) == 1
    return sup


def child(sup: Worker, index: int) -> Worker:
    """Child ``index`` seen as a worker of its own (its metrics port: the base + index)."""
    return Worker(sup.proc, sup.log, sup.metrics_port + index)


def test_two_processes_split_partitions_and_give_the_backtest_alerts(stack: Stack) -> None:
    lines = history(seed=31)
    s = stack.settings
    want = backtest_alerts(lines, s)
    sup = start_two(stack)
    produce(stack.bootstrap, [(r.topic, r.key, r.value) for r in route(lines, s)])

    assert_same_contents(assert_alerts_exactly(all_alerts(stack, want), want), want)
    # Both processes were given partitions and processed events; together, every event.
    counts = [metric_sum(scrape(child(sup, i).metrics_port), "riskflow_events_total") for i in (0, 1)]
    assert all(n > 0 for n in counts) and sum(counts) >= len(lines), counts

    pids = child_pids(sup, 0) + child_pids(sup, 1)
    assert all(alive(p) for p in pids)
    assert stack.workers[0].stop(signal.SIGTERM, timeout=90) == 0, sup.log_text()[-3000:]
    assert not [p for p in pids if alive(p)], "a worker process outlived its supervisor"


def test_a_killed_process_is_restarted_and_the_output_stays_exact(stack: Stack) -> None:
    lines = history(seed=32)
    s = stack.settings
    want = backtest_alerts(lines, s)
    recs = [(r.topic, r.key, r.value) for r in route(lines, s)]
    sup = start_two(stack)
    half = len(recs) // 2
    produce(stack.bootstrap, recs[:half])
    wait_read(child(sup, 0), 1)  # child 0 owns partitions and is processing
    first = child_pids(sup, 0)[0]
    os.kill(first, signal.SIGKILL)
    wait_log(sup, r"worker process 0 killed by SIGKILL after [\d.]+s.*; restarting", 1)
    wait_log(sup, r"worker process 0: pid \d+", 2)
    produce(stack.bootstrap, recs[half:])

    assert_same_contents(assert_alerts_exactly(all_alerts(stack, want), want), want)
    again = child_pids(sup, 0)[-1]
    assert again != first and alive(again) and not alive(first)

    # The supervisor killed outright: the kernel stops its children (no orphan keeps consuming).
    others = [again, *child_pids(sup, 1)]
    sup.proc.kill()
    sup.proc.wait(10)
    deadline = time.monotonic() + 60
    while [p for p in others if alive(p)] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not [p for p in others if alive(p)], "a worker process outlived its killed supervisor"


def test_partition_count_mismatch_with_the_state_changelog_is_refused(stack: Stack) -> None:
    s = stack.settings

    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=stack.bootstrap)
        await admin.start()
        try:
            topics = [s.topic_institution_events, s.topic_fund_events, s.topic_risk_links]
            await admin.create_topics(
                [NewTopic(t, 4, 1) for t in topics] + [NewTopic(changelog_topic(s.app_id), 12, 1)]
            )
        finally:
            await admin.close()

    asyncio.run(create())
    env = dict(os.environ, **stack.env, RISKFLOW_METRICS_PORT="0", RISKFLOW_DATA_DIR=str(stack.tmp / "d"))
    done = subprocess.run(
        [sys.executable, "-m", "riskflow", "worker"], env=env, capture_output=True, text=True, timeout=120
    )
    errors = [x for x in done.stderr.splitlines() if x.startswith("riskflow worker:")]
    assert done.returncode == 2 and len(errors) == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert f"{changelog_topic(s.app_id)} has 12 partitions but the input topics have 4" in errors[0]


def test_partition_count_of_existing_topics_wins_and_inputs_must_agree() -> None:
    s = Settings(partitions=12, app_id="a")
    assert settle_partitions(s, {}).partitions == 12
    assert settle_partitions(s, {s.topic_institution_events: 4, s.topic_fund_events: 4}).partitions == 4
    assert settle_partitions(s, {s.topic_fund_events: 12, changelog_topic("a"): 12}).partitions == 12
    with pytest.raises(CommandError, match="different partition counts"):
        settle_partitions(s, {s.topic_institution_events: 4, s.topic_fund_events: 12})
    with pytest.raises(CommandError, match="would be created with 12"):
        settle_partitions(s, {changelog_topic("a"): 4})


def test_a_child_that_fails_every_start_stops_the_supervisor_with_its_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(kafka_bootstrap="127.0.0.1:1", metrics_port=0, web_port=0, data_dir=tmp_path)
    monkeypatch.setenv("RISKFLOW_BATCH_SIZE", "0")  # every child refuses its settings at once
    out = io.BytesIO()
    sup = Supervisor(settings, 2, max_failures=2, backoff=0.05, out=out)
    with pytest.raises(CommandError) as err:
        sup.run(poll=0.05)
    text = str(err.value)
    assert "failed 2 times in a row" in text and "RISKFLOW_BATCH_SIZE" in text, text
    assert "\n" not in text
    assert not [c for c in sup.children if c.proc is not None and c.proc.poll() is None]
    assert b"restarting in" in out.getvalue()


def test_processes_argument() -> None:
    assert resolve_processes("2") == 2
    assert resolve_processes("auto") == resolve_processes("0") >= 1
    with pytest.raises(CommandError, match="--processes"):
        resolve_processes("many")
    done = subprocess.run(
        [sys.executable, "-m", "riskflow", "worker", "--processes", "-3"],
        env=dict(os.environ, RISKFLOW_KAFKA_BOOTSTRAP="127.0.0.1:1"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
