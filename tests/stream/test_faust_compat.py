"""The Faust adapter (streams/faust_compat.py): the installed faust-streaming and aiokafka are
releases it was checked against, and each private behaviour it relies on still holds.

After an upgrade, the first test names the release to check; the others say which relied-on
behaviour broke. They run on real Faust and aiokafka objects: an app that is built but not
started, and, for the producer, the embedded broker."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import faust
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.partitioner import murmur2
from aiokafka.structs import ConsumerRecord
from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
from faust.transport import consumer as faust_consumer
from faust.types import TP
from prometheus_client import CollectorRegistry

from riskflow.broker import EmbeddedBroker
from streams import faust_compat as compat
from streams.emitter import batched, deliver

T = TP("riskflow.fund-events", 0)


def test_installed_faust_and_aiokafka_are_releases_the_adapter_was_checked_against() -> None:
    unchecked = compat.unchecked_versions()
    assert not unchecked, (
        "streams/faust_compat.py relies on private names of Faust and aiokafka; "
        + "; ".join(unchecked)
        + ". Check each function of the adapter against the new release (this file's other tests "
        "say which relied-on behaviour broke), then add the release to CHECKED_VERSIONS."
    )


def test_an_unchecked_release_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(compat.CHECKED_VERSIONS, "aiokafka", ("0.0.1",))
    lines = compat.unchecked_versions()
    installed = compat.installed_versions()["aiokafka"]
    assert lines == [f"aiokafka {installed} is installed; streams/faust_compat.py was checked against 0.0.1"]


def test_importing_the_worker_patches_nothing() -> None:
    """The patches are installed by build_topology, never as an import side effect."""
    code = (
        "import faust.transport.consumer as c, faust.transport.drivers.aiokafka as a\n"
        "drain, create = c.Consumer._drain_messages, a.AIOKafkaConsumerThread._create_worker_consumer\n"
        "import riskflow.worker, streams.topology, streams.agents, streams.batchtap, streams.app\n"
        "from streams import faust_compat\n"
        "assert c.Consumer._drain_messages is drain and not faust_compat.installed()\n"
        "assert a.AIOKafkaConsumerThread._create_worker_consumer is create\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


@pytest.fixture
def app() -> Iterator[faust.App]:
    """A Faust app built as the worker builds it, never started (no broker needed)."""
    compat.install()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        yield faust.App("compat-test", broker="kafka://127.0.0.1:1", store="memory://", broker_commit_every=3)
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def run(app: faust.App, coro: Any) -> Any:
    return asyncio.get_event_loop().run_until_complete(coro)


def test_install_is_explicit_and_once(app: faust.App) -> None:
    assert compat.installed()
    patched = faust_consumer.Consumer._drain_messages
    compat.install()
    assert faust_consumer.Consumer._drain_messages is patched  # a second install changes nothing
    assert compat.faust_fetch_loop() is not patched  # Faust's own loop is kept for other apps


def test_an_app_with_a_fetch_loop_runs_it_instead_of_fausts(app: faust.App) -> None:
    """Relied on: Faust runs ``Consumer._drain_messages(fetcher)`` as its fetch loop."""
    calls: list[tuple[Any, Any]] = []

    async def loop(consumer: Any, fetcher: Any) -> None:
        calls.append((consumer, fetcher))

    compat.set_fetch_loop(app, loop)
    run(app, app.consumer._drain_messages(app._fetcher))
    assert calls == [(app.consumer, app._fetcher)]


def test_the_group_consumer_gets_the_fetch_max_wait(app: faust.App) -> None:
    """Relied on: ``AIOKafkaConsumerThread._create_worker_consumer`` builds the group consumer,
    whose fetcher reads ``_fetch_max_wait_ms``."""
    compat.set_fetch_max_wait(app, 20)

    async def build() -> Any:
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        await consumer.stop()
        return consumer

    consumer = run(app, build())
    assert isinstance(consumer, AIOKafkaConsumer) and consumer._fetch_max_wait_ms == 20


def test_acknowledged_offsets_become_fausts_commit_offset(app: faust.App) -> None:
    """Relied on: ``Consumer._acked``/``_acked_index``/``_n_acked`` feed ``_new_offset``, Faust's
    commit rule: the first consecutive run of acknowledged offsets, gaps filled."""
    c = app.consumer
    assert compat.committed_offset(c, T) is None
    c._committed_offset[T] = 10  # as an assignment sets it from the broker
    assert compat.committed_offset(c, T) == 10
    compat.acknowledge(c, T, [10, 11, 12])
    assert c._new_offset(T) == 13
    c._committed_offset[T] = 13  # as the commit sets it
    compat.acknowledge(c, T, [13, 15])
    assert c._new_offset(T) == 14  # 14 is a hole: the commit stops before it
    c._committed_offset[T] = 14
    run(app, compat.add_gap(c, T, 14, 14))  # offsets without records (e.g. transaction markers)
    assert c._new_offset(T) == 16


def test_fausts_commit_rule_lets_a_hole_of_one_offset_through(app: faust.App) -> None:
    """Why the batch tap acknowledges in order and drops everything after a lost write
    (streams/batchtap.py ``_landed``): Faust passes a hole of one offset above the committed
    one, and any hole while the committed offset is 0. Should a release close these holes,
    this test fails and the tap's caution can be revisited."""
    c = app.consumer
    c._committed_offset[T] = 10
    compat.acknowledge(c, T, [11])
    assert c._new_offset(T) == 12  # offset 10 was never acknowledged
    u = TP(T.topic, 1)
    c._committed_offset[u] = 0
    compat.acknowledge(c, u, [5])
    assert c._new_offset(u) == 6


def test_a_commit_is_due_after_commit_every_acknowledgements(app: faust.App) -> None:
    """Relied on: ``Consumer._commit_every`` (``broker_commit_every``) and ``_n_acked``."""
    c = app.consumer
    compat.acknowledge(c, T, [0, 1])
    assert not compat.take_commit_due(c)
    compat.acknowledge(c, T, [2])
    assert compat.take_commit_due(c) and not compat.take_commit_due(c)


def test_a_batch_in_flight_holds_wait_empty_until_released(app: faust.App) -> None:
    """Relied on: ``Consumer.wait_empty`` (before a rebalance commit or a shutdown) waits while
    ``_unacked_messages`` holds anything, and wakes on ``_waiting_for_ack``."""
    c = app.consumer

    async def go() -> tuple[bool, bool]:
        marker = compat.InFlight()
        compat.hold(c, marker)
        waiting = asyncio.ensure_future(c.wait_empty())
        await asyncio.sleep(0.05)
        held = not waiting.done()
        compat.release(c, marker)
        await asyncio.wait_for(waiting, 5)
        return held, waiting.done()

    assert run(app, go()) == (True, True)


def test_settling_runs_before_fausts_commit_and_fetcher_stop(app: faust.App) -> None:
    """Relied on: Faust calls ``App._consumer_wait_empty`` and ``App._stop_fetcher`` through the
    instance (the rebalance and shutdown paths)."""
    order: list[str] = []

    async def settle() -> None:
        order.append("settle")

    async def settle_stop() -> None:
        order.append("settle before stop")

    class Consumer:
        async def wait_empty(self) -> None:
            order.append("wait_empty")

    compat.settle_before_commit(app, settle, settle_stop)
    run(app, app._consumer_wait_empty(Consumer(), logging.getLogger("test")))
    run(app, app._stop_fetcher())
    assert order == ["settle", "wait_empty", "settle before stop"]


def test_fausts_own_message_path_and_fetch_loop_state(app: faust.App) -> None:
    """Relied on: ``_to_message``, ``_read_offset``, ``_buffered_partitions``, mode's
    ``_stopped`` and the signature of ``_wait_next_records`` (the fetch loop's own reads; the
    stream tests run the loop itself)."""
    import inspect

    c = app.consumer
    to_message, read_offsets = compat.faust_message_path(c)
    message = to_message(T, ConsumerRecord(T.topic, 0, 5, 1_700_000_000_000, 0, b"k", b"v", None, 1, 1, []))
    assert (message.topic, message.partition, message.offset, message.key) == (T.topic, 0, 5, b"k")
    assert read_offsets[T] is None
    compat.set_read_offset(c, T, 5)
    assert read_offsets[T] == 5
    assert compat.buffered_partitions(c) == set()
    consumer_stopped, fetcher_stopped = compat.stop_flags(c, app._fetcher)
    assert not consumer_stopped() and not fetcher_stopped()
    assert list(inspect.signature(faust_consumer.Consumer._wait_next_records).parameters)[:2] == ["self", "timeout"]


def test_the_group_generation_falls_back_to_the_apps_before_the_consumer_runs(app: faust.App) -> None:
    """Relied on: Faust's consumer thread holds its aiokafka consumer as ``_consumer`` (None
    before it starts); the aiokafka side is checked on the broker below."""
    assert app.consumer._thread._consumer is None
    assert compat.group_generation(app.consumer) == app.consumer_generation_id


def test_fausts_sent_counter_is_reached(app: faust.App) -> None:
    registry = CollectorRegistry()
    monitor = PrometheusMonitor(metrics=FaustMetrics.create(registry, "faust"))
    counter = compat.sent_counter(monitor)
    assert counter is not None
    counter.labels(topic="topic.x").inc(2)
    assert registry.get_sample_value("faust_topic_messages_sent_total", {"topic": "topic.x"}) == 2
    assert compat.sent_counter(object()) is None


def test_producer_batches_land_where_send_would_put_them(broker: EmbeddedBroker) -> None:
    """Relied on: Faust's ``Producer._ensure_producer``, aiokafka's ``client._wait_on_metadata``
    and ``_partition`` (murmur2 of the key, as ``send`` places records), and the group
    coordinator's ``generation``."""
    compat.install()
    topic = f"compat-{os.getpid()}-{time.time_ns()}"

    async def go() -> tuple[dict[bytes, int], int, int]:
        app = faust.App("compat-producer", broker=f"kafka://{broker.bootstrap}", store="memory://")
        await app.producer.start()
        try:
            aio = compat.aiokafka_producer(app.producer)
            assert aio is not None
            await compat.wait_on_metadata(aio, topic)
            n = len(aio.client.cluster.partitions_for_topic(topic))
            records = [(topic, f"entity-{i}".encode(), b"v", None) for i in range(40)]
            await deliver(batched(app.producer, records), "test records")
        finally:
            await app.producer.stop()
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=broker.bootstrap, group_id=f"{topic}-g", auto_offset_reset="earliest"
        )
        await consumer.start()
        placed: dict[bytes, int] = {}
        try:
            while len(placed) < 40:
                for tp, msgs in (await consumer.getmany(timeout_ms=1000)).items():
                    placed.update({m.key: tp.partition for m in msgs})
            generation = consumer._coordinator.generation
        finally:
            await consumer.stop()
        return placed, n, generation

    placed, n, generation = asyncio.run(go())
    assert n > 1 and placed == {k: (murmur2(k) & 0x7FFFFFFF) % n for k in placed}
    assert isinstance(generation, int) and generation >= 0  # a member of the group (-1: unknown to it)
