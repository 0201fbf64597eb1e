"""The alert sink on the real broker: upsert by id, offsets committed only after the rows are durable."""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry

from riskflow.broker import free_port
from riskflow.core.alerts import Alert
from riskflow.sinks.store import SinkStats, run_sink
from riskflow.store import AlertStore, open_store
from riskflow.store.metrics import StoreMetrics
from tests.support.kafka_fixtures import Stack
from tests.support.store_tools import make_alert


async def _committed(bootstrap: str, topic: str, group: str) -> int:
    """Sum of the group's committed offsets on ``topic`` (0 for none)."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await c.start()
    try:
        parts = await c._client.fetch_all_metadata()
        total = 0
        for p in parts.partitions_for_topic(topic) or ():
            off = await c.committed(TopicPartition(topic, p))
            total += off or 0
        return total
    finally:
        await c.stop()


async def _sink_until(
    store: AlertStore, stack: Stack, group: str, done: Any, timeout: float = 90.0, metrics: StoreMetrics | None = None
) -> SinkStats:
    """Run the sink until ``done(stats)`` holds, then stop it."""
    s = stack.settings
    stop = asyncio.Event()
    stats = SinkStats()
    task = asyncio.create_task(
        run_sink(
            store,
            stack.bootstrap,
            s.topic_alerts,
            group,
            stop=stop,
            session_timeout=6.0,
            retry_delay=0.2,
            stats=stats,
            metrics=metrics,
        )
    )
    deadline = time.monotonic() + timeout
    while not done(stats) and time.monotonic() < deadline and not task.done():
        await asyncio.sleep(0.1)
    stop.set()
    await task
    return stats


def _records(stack: Stack, alerts: list[Alert], garbage: int = 0) -> list[tuple[str, bytes | None, bytes]]:
    t = stack.settings.topic_alerts
    recs: list[tuple[str, bytes | None, bytes]] = [(t, a.alert_id.encode(), a.to_json()) for a in alerts]
    recs += [(t, b"x", b"{not an alert") for _ in range(garbage)]
    return recs


class FlakyStore(AlertStore):
    """A real store whose first ``fail`` writes fail, as when the database is briefly down."""

    def __init__(self, target: str, fail: int) -> None:
        inner = open_store(target)
        super().__init__(inner.dialect)
        inner.close()
        self.fail = fail
        self.committed_while_failing: list[int] = []

    def upsert_alerts(self, alerts: Any) -> list[str]:
        if self.fail > 0:
            self.fail -= 1
            raise ConnectionError("database unavailable")
        return super().upsert_alerts(alerts)


def test_sink_stores_each_alert_once_and_commits_after_writing(stack: Stack, tmp_path: Path) -> None:
    target = str(tmp_path / "alerts.sqlite3")
    group = f"{stack.name}-store"
    topic = stack.settings.topic_alerts
    first = [make_alert(f"a{i}", entity_id=f"PF-{i % 3}") for i in range(20)]
    stack.produce(_records(stack, first + first[:5], garbage=2))  # re-delivered alerts + junk

    registry = CollectorRegistry()
    metrics = StoreMetrics.create(registry)

    async def phase1() -> tuple[SinkStats, int]:
        store = FlakyStore(target, fail=2)
        st = await _sink_until(
            store, stack, group, lambda s: s.received >= 25 and s.commits == s.batches, metrics=metrics
        )
        store.close()
        return st, await _committed(stack.bootstrap, topic, group)

    st, committed = asyncio.run(phase1())
    assert st.store_errors == 2, "the failing writes were retried, not skipped"
    assert (st.received, st.invalid, st.changed) == (25, 2, 20)
    assert committed == 27, "every consumed message is committed once its batch is stored"
    value = registry.get_sample_value
    assert value("riskflow_store_upserts_total") == 25 and value("riskflow_store_changed_total") == 20
    assert value("riskflow_store_write_errors_total") == 2 and value("riskflow_store_invalid_total") == 2
    assert value("riskflow_store_write_seconds_count") == st.batches  # one observation per stored batch
    with open_store(target) as s:
        assert s.count() == 20
        assert {r.alert.alert_id for r in s.list_alerts(limit=100)} == {a.alert_id for a in first}

    # A second run of the same group resumes after the commit: it sees only the new messages,
    # and a higher revision of a stored alert replaces it.
    stack.produce(_records(stack, [make_alert("a3", revision=2, risk_index=88.0, risk_level="red"), first[0]]))

    async def phase2() -> SinkStats:
        with open_store(target) as store:
            return await _sink_until(store, stack, group, lambda s: s.received >= 2 and s.commits == s.batches)

    st2 = asyncio.run(phase2())
    assert (st2.received, st2.changed) == (2, 1)
    with open_store(target) as s:
        assert s.count() == 20
        assert (s.get("a3").alert.revision, s.get("a3").alert.risk_level) == (2, "red")


def test_sink_stopped_while_the_database_is_down_commits_nothing(stack: Stack, tmp_path: Path) -> None:
    target = str(tmp_path / "alerts.sqlite3")
    group = f"{stack.name}-store"
    topic = stack.settings.topic_alerts
    stack.produce(_records(stack, [make_alert(f"b{i}") for i in range(5)]))

    async def down() -> tuple[SinkStats, int]:
        store = FlakyStore(target, fail=10**6)
        st = await _sink_until(store, stack, group, lambda s: s.store_errors >= 2)
        store.close()
        return st, await _committed(stack.bootstrap, topic, group)

    st, committed = asyncio.run(down())
    assert st.received == 5 and st.commits == 0
    assert committed == 0, "offsets must not move past rows that were never written"

    async def up() -> SinkStats:
        with open_store(target) as store:
            return await _sink_until(store, stack, group, lambda s: s.received >= 5 and s.commits == s.batches)

    assert asyncio.run(up()).changed == 5, "the un-committed batch is delivered again"
    with open_store(target) as s:
        assert s.count() == 5


def test_alerts_sink_command_fills_a_postgres_store(stack: Stack, postgres_url: str) -> None:
    """``riskflow alerts sink`` as a real process, into PostgreSQL; stops cleanly on SIGTERM."""
    import os
    import signal
    import subprocess
    import sys

    stack.produce(_records(stack, [make_alert(f"c{i}") for i in range(3)] + [make_alert("c1", revision=4)]))
    env = dict(os.environ, **stack.env, RISKFLOW_STORE_URL=postgres_url, RISKFLOW_METRICS_HOST="127.0.0.1")
    log = stack.tmp / "sink.log"
    port = free_port()
    cmd = [sys.executable, "-m", "riskflow", "alerts", "sink", "--metrics-port", str(port)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 90
        with open_store(postgres_url) as s:
            while time.monotonic() < deadline and not (s.count() == 3 and s.get("c1").alert.revision == 4):
                time.sleep(0.3)
            assert s.count() == 3, log.read_text(errors="replace")[-2000:]
            assert s.get("c1").alert.revision == 4
        # --metrics-port: the sink's own metrics (4 alerts upserted, in one or more batches).
        pattern = re.compile(r"^riskflow_store_upserts_total (\S+)$", re.M)
        upserts = 0.0
        while time.monotonic() < deadline and upserts < 4:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            upserts = float(m.group(1)) if (m := pattern.search(text)) else 0.0
            time.sleep(0.2)
        assert upserts == 4 and "riskflow_store_write_seconds_count" in text
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text(errors="replace")[-2000:]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_record_the_database_refuses_is_ledgered_and_the_sink_moves_on(
    stack: Stack, tmp_path: Path, request: pytest.FixtureRequest, backend: str
) -> None:
    """Issue 22: one ``\\u0000`` in an entity id stalled the PostgreSQL sink forever. Now the
    refused alert goes to the rejects ledger, the valid ones of its batch are stored, the
    offsets commit and the next batch is stored too."""
    target = str(tmp_path / "alerts.sqlite3") if backend == "sqlite" else request.getfixturevalue("postgres_url")
    group = f"{stack.name}-store"
    topic = stack.settings.topic_alerts
    good = [make_alert(f"g{i}", entity_id=f"PF-{i}") for i in range(6)]
    bad = make_alert("bad", entity_id="PFM-330100-\x00666", title_zh="承诺\x00保本")
    stack.produce(_records(stack, [*good[:3], bad, *good[3:]], garbage=1))
    registry = CollectorRegistry()
    metrics = StoreMetrics.create(registry)

    async def run(n: int) -> tuple[SinkStats, int]:
        with open_store(target) as store:
            st = await _sink_until(
                store, stack, group, lambda s: s.received + s.invalid >= n and s.commits == s.batches, metrics=metrics
            )
        return st, await _committed(stack.bootstrap, topic, group)

    st, committed = asyncio.run(run(8))
    assert (st.received, st.invalid, st.changed, st.rejected, st.store_errors) == (7, 1, 6, 2, 0)
    assert committed == 8, "the batch with the refused record is committed: the sink does not stall on it"
    value = registry.get_sample_value
    assert value("riskflow_store_rejected_total", {"reason": "bad_text"}) == 1
    assert value("riskflow_store_rejected_total", {"reason": "undecodable"}) == 1
    assert value("riskflow_store_invalid_total") == 1 and value("riskflow_store_upserts_total") == 6
    with open_store(target) as s:
        assert {r.alert.alert_id for r in s.list_alerts(limit=100)} == {a.alert_id for a in good}
        ledger = {r.reason: r for r in s.rejects()}
        assert ledger["bad_text"].alert_id == "bad" and ledger["bad_text"].error == "entity_id contains a NUL character"
        assert ledger["bad_text"].source.startswith(f"{topic}/") and ledger["undecodable"].raw == "{not an alert"

    stack.produce(_records(stack, [make_alert("after"), bad]))  # the same bad record again, and a good one
    st2, committed = asyncio.run(run(2))
    assert (st2.received, st2.changed, st2.rejected) == (2, 1, 1) and committed == 10
    with open_store(target) as s:
        assert s.get("after").alert.alert_id == "after" and s.count() == 7
        assert len(s.rejects()) == 2, "a record refused twice is one ledger entry"


class NoSnoozeStore(AlertStore):
    """A real store whose snooze-expiry query fails, as when the database drops mid-check."""

    def __init__(self, target: str) -> None:
        inner = open_store(target)
        super().__init__(inner.dialect)
        inner.close()
        self.expiry_calls = 0

    def expire_snoozes(self, now: Any = None) -> list[str]:
        self.expiry_calls += 1
        raise ConnectionError("database unavailable")


def test_a_failed_snooze_expiry_does_not_stop_the_sink(stack: Stack, tmp_path: Path) -> None:
    stack.produce(_records(stack, [make_alert(f"s{i}") for i in range(3)]))
    store = NoSnoozeStore(str(tmp_path / "alerts.sqlite3"))
    st = asyncio.run(_sink_until(store, stack, f"{stack.name}-store", lambda s: s.changed >= 3))
    assert st.changed == 3 and store.expiry_calls >= 1 and store.count() == 3
    store.close()
