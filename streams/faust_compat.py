"""Every private name of faust-streaming and aiokafka that RiskFlow relies on, in one place.

Faust's public API covers the app, topics, tables, agents and the producer's ``send``; the
hot path needs a little more (``streams/batchtap.py``: whole fetched batches instead of one
stream item per record, offsets acknowledged batch-wise; ``streams/emitter.py``: record
batches built per partition). Each function here names the private attribute or method it
uses and what it relies on; nothing else in ``streams/`` (or anywhere in RiskFlow) touches
a ``_name`` of Faust or aiokafka. An upgrade of either is checked here:
:data:`CHECKED_VERSIONS` are the releases these functions were read against, and
``tests/stream/test_faust_compat.py`` fails with a clear message on any other release and
exercises each relied-on behaviour on the installed one.

The two class-level patches (Faust's fetch loop, and the ``fetch_max_wait_ms`` of Faust's
group consumer) are installed by :func:`install`, called explicitly when the worker's app
is built (``streams/topology.py``), never as an import side effect. Once installed they
change nothing for an app that did not ask for them (:func:`set_fetch_loop`,
:func:`set_fetch_max_wait`).

>>> sorted(CHECKED_VERSIONS)
['aiokafka', 'faust-streaming']
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from importlib import metadata
from typing import Any, cast

from faust.sensors.prometheus import PrometheusMonitor
from faust.transport import consumer as _faust_consumer
from faust.transport.drivers import aiokafka as _faust_aiokafka
from mode.utils.futures import notify

log = logging.getLogger(__name__)

#: The releases the adapter was read and tested against (the distribution name -> versions).
CHECKED_VERSIONS: dict[str, tuple[str, ...]] = {
    "faust-streaming": ("0.15.3",),
    "aiokafka": ("0.14.0",),
}

#: A replacement for Faust's fetch loop: ``await loop(consumer, fetcher)``.
FetchLoop = Callable[[Any, Any], Awaitable[None]]

_installed: dict[str, Any] = {}


def installed_versions() -> dict[str, str]:
    """The installed release of each distribution of :data:`CHECKED_VERSIONS`."""
    return {name: metadata.version(name) for name in CHECKED_VERSIONS}


def unchecked_versions() -> list[str]:
    """One line per installed release the adapter was not checked against (empty: all checked)."""
    return [
        f"{name} {version} is installed; streams/faust_compat.py was checked against "
        f"{', '.join(CHECKED_VERSIONS[name])}"
        for name, version in installed_versions().items()
        if version not in CHECKED_VERSIONS[name]
    ]


def install() -> None:
    """Install the class-level patches of Faust (once per process; later calls do nothing).

    An unchecked release is logged, not refused: the worker still runs, and the
    adapter's tests say what broke."""
    if _installed:
        return
    for line in unchecked_versions():
        log.warning("%s: rerun tests/stream/test_faust_compat.py before trusting the worker", line)

    consumer_cls = _faust_consumer.Consumer
    # Relies on: Faust's Consumer runs ``_drain_messages(fetcher)`` as its fetch loop (the
    # Fetcher service awaits it), a coroutine method taking the fetcher service.
    original_drain = consumer_cls._drain_messages

    async def _drain_messages(self: Any, fetcher: Any) -> None:
        loop: FetchLoop | None = getattr(self.app, "riskflow_fetch_loop", None)
        if loop is None:
            return await original_drain(self, fetcher)
        return await loop(self, fetcher)

    thread_cls = _faust_aiokafka.AIOKafkaConsumerThread
    # Relies on: ``AIOKafkaConsumerThread._create_worker_consumer(transport)`` builds the group
    # consumer (with a hard-coded ``fetch_max_wait_ms=1500``) before it starts, and aiokafka's
    # consumer reads ``_fetch_max_wait_ms`` when its fetcher starts.
    original_create = thread_cls._create_worker_consumer

    def _create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = original_create(self, transport)
        wait_ms = getattr(transport.app, "riskflow_fetch_max_wait_ms", None)
        if wait_ms is not None:
            consumer._fetch_max_wait_ms = wait_ms
        return consumer

    consumer_cls._drain_messages = cast(Any, _drain_messages)  # type: ignore[method-assign]
    thread_cls._create_worker_consumer = _create_worker_consumer  # type: ignore[method-assign]
    _installed.update(drain=original_drain, create_worker_consumer=original_create)


def installed() -> bool:
    """Whether :func:`install` ran in this process."""
    return bool(_installed)


def faust_fetch_loop() -> FetchLoop:
    """Faust's own fetch loop (``Consumer._drain_messages`` before :func:`install`)."""
    return cast(FetchLoop, _installed.get("drain") or _faust_consumer.Consumer._drain_messages)


# --- per app --------------------------------------------------------------------------


def set_fetch_loop(app: Any, loop: FetchLoop) -> None:
    """Run ``loop`` instead of Faust's fetch loop for ``app``'s consumer (needs :func:`install`)."""
    if not _installed:
        raise RuntimeError("streams.faust_compat.install() must run before a fetch loop is set")
    app.riskflow_fetch_loop = loop


def set_fetch_max_wait(app: Any, wait_ms: int) -> None:
    """The ``fetch_max_wait_ms`` of ``app``'s group consumer (Faust hard-codes 1500 ms; the
    broker may hold every fetch that long: docs/operations.md, "Broker notes")."""
    app.riskflow_fetch_max_wait_ms = wait_ms


def settle_before_commit(
    app: Any, before_wait_empty: Callable[[], Awaitable[None]], before_stop_fetcher: Callable[[], Awaitable[None]]
) -> None:
    """Await ``before_wait_empty`` before Faust waits for the consumer to be empty (then commits
    and gives partitions away: a rebalance or a shutdown), and ``before_stop_fetcher`` before it
    stops the fetch loop (shutdown, or a table recovery).

    Relies on: ``App._consumer_wait_empty(consumer, logger)`` and ``App._stop_fetcher()`` are
    coroutine methods looked up on the instance at each call (the rebalance and shutdown
    paths of ``faust/app/base.py``), so instance attributes override them."""
    wait_empty, stop_fetcher = app._consumer_wait_empty, app._stop_fetcher

    async def consumer_wait_empty(consumer: Any, logger: Any) -> None:
        await before_wait_empty()
        await wait_empty(consumer, logger)

    async def stop_fetcher_settled() -> None:
        await before_stop_fetcher()
        await stop_fetcher()

    app._consumer_wait_empty = consumer_wait_empty
    app._stop_fetcher = stop_fetcher_settled


# --- the consumer's fetch loop --------------------------------------------------------


def stop_flags(consumer: Any, fetcher: Any) -> tuple[Callable[[], bool], Callable[[], bool]]:
    """``is_set`` of the consumer's and the fetcher's stop events.

    Relies on: mode's ``Service._stopped`` (an ``asyncio.Event``) set when the service stops,
    as Faust's own fetch loop tests it."""
    return consumer._stopped.is_set, fetcher._stopped.is_set


def next_records(consumer: Any, timeout: float) -> Awaitable[tuple[dict[Any, list[Any]], set[Any] | None]]:
    """The next fetch: ``(records by TP, active partitions or None)``.

    Relies on: ``Consumer._wait_next_records(timeout)``, Faust's ``getmany`` wrapper that
    honours paused partitions and flow control, returning aiokafka records."""
    return cast(Awaitable[tuple[dict[Any, list[Any]], set[Any] | None]], consumer._wait_next_records(timeout))


def buffered_partitions(consumer: Any) -> set[Any]:
    """Partitions whose records Faust buffered while they were paused (still to be handed on).

    Relies on: ``Consumer._buffered_partitions``, a set Faust replaces on each assignment."""
    return cast(set[Any], consumer._buffered_partitions)


def faust_message_path(consumer: Any) -> tuple[Callable[[Any, Any], Any], MutableMapping[Any, int | None]]:
    """``(to_message, read_offsets)`` for Faust's own one-message-at-a-time path (changelogs).

    Relies on: ``Consumer._to_message(tp, record)`` making the Message Faust's callback takes,
    and ``Consumer._read_offset`` (per TP, the last offset handed on) guarding re-delivery."""
    return consumer._to_message, consumer._read_offset


def set_read_offset(consumer: Any, tp: Any, offset: int) -> None:
    """Record ``offset`` as the last one handed on for ``tp`` (``Consumer._read_offset``, as above)."""
    consumer._read_offset[tp] = offset


def committed_offset(consumer: Any, tp: Any) -> int | None:
    """The offset Faust last committed for ``tp`` (None: none yet in this assignment).

    Relies on: ``Consumer._committed_offset``, updated on assignment (from the broker) and
    after every commit."""
    return cast("int | None", consumer._committed_offset.get(tp))


async def add_gap(consumer: Any, tp: Any, start: int, end: int) -> None:
    """Tell Faust that ``start..end`` (inclusive) of ``tp`` hold no records, so a commit may pass them.

    Relies on: ``Consumer._add_gap(tp, from, to)`` and that ``Consumer._new_offset`` fills
    acknowledged runs with recorded gaps."""
    await consumer._add_gap(tp, start, end)


def acknowledge(consumer: Any, tp: Any, offsets: list[int]) -> None:
    """Mark ``offsets`` of ``tp`` acknowledged: Faust's next commit covers the first consecutive run.

    Relies on: ``Consumer._acked[tp]`` (list), ``_acked_index[tp]`` (set) and ``_n_acked``
    (count toward ``broker_commit_every``), read by ``Consumer._new_offset`` at commit time,
    as ``Consumer.ack(message)`` fills them for one message."""
    consumer._acked[tp].extend(offsets)
    consumer._acked_index[tp].update(offsets)
    consumer._n_acked += len(offsets)


def take_commit_due(consumer: Any) -> bool:
    """Whether ``broker_commit_every`` acknowledgements have gathered (and start counting anew).

    Relies on: ``Consumer._commit_every`` (None: commit by interval only) and ``_n_acked``,
    as Faust's own ``ack`` path counts toward a commit."""
    every = consumer._commit_every
    if every is not None and consumer._n_acked >= every:
        consumer._n_acked = 0
        return True
    return False


class InFlight:
    """Stands for a batch among the consumer's unacknowledged messages (see :func:`hold`).

    Faust's ``wait_empty`` reads ``refcount`` and ``acked`` of each unacknowledged message
    and keeps them in a WeakSet (hence ``__weakref__``)."""

    __slots__ = ("__weakref__", "acked", "refcount")

    def __init__(self) -> None:
        self.acked = False
        self.refcount = 1

    def __repr__(self) -> str:
        return "<riskflow batch in flight>"


def hold(consumer: Any, marker: InFlight) -> None:
    """Put ``marker`` among the consumer's unacknowledged messages: ``Consumer.wait_empty`` (a
    rebalance, a shutdown) waits until :func:`release`.

    Relies on: ``Consumer._unacked_messages``, the set ``wait_empty`` polls."""
    consumer._unacked_messages.add(marker)


def release(consumer: Any, marker: InFlight) -> None:
    """Take ``marker`` out again and wake a ``wait_empty`` waiting for it.

    Relies on: ``Consumer._waiting_for_ack``, the future ``wait_empty`` sleeps on."""
    marker.acked = True
    consumer._unacked_messages.discard(marker)
    notify(consumer._waiting_for_ack)


def group_generation(consumer: Any) -> int | None:
    """The member's generation as aiokafka's group coordinator holds it now.

    aiokafka resets it to -1 as soon as the coordinator no longer knows the member, before
    it rejoins (Faust's ``app.consumer_generation_id`` changes only at the next assignment).
    Relies on: ``Consumer._thread._consumer._coordinator.generation`` (Faust's consumer
    thread, its aiokafka consumer, the coordinator). Unreachable: the app's generation."""
    try:
        return cast(int, consumer._thread._consumer._coordinator.generation)
    except AttributeError:
        return cast(int, consumer.app.consumer_generation_id)


# --- the producer and Faust's sensor ---------------------------------------------------


def aiokafka_producer(producer: Any) -> Any | None:
    """The started aiokafka producer behind Faust's ``app.producer`` (None: another producer).

    Relies on: ``faust.transport.drivers.aiokafka.Producer._ensure_producer()``."""
    ensure = getattr(producer, "_ensure_producer", None)
    return ensure() if ensure is not None else None


async def wait_on_metadata(aio: Any, topic: str) -> None:
    """Until the producer's metadata knows ``topic``'s partitions (created if auto-creation is on).

    Relies on: ``AIOKafkaProducer.client._wait_on_metadata(topic)``, as ``send`` awaits it."""
    await aio.client._wait_on_metadata(topic)


def default_partition(aio: Any, topic: str, key: bytes | None, value: bytes) -> int:
    """The partition ``aio.send(topic, value, key=key)`` would choose (murmur2 of the key).

    Relies on: ``AIOKafkaProducer._partition(topic, partition, key, value, serialized_key,
    serialized_value)`` with metadata already known (:func:`wait_on_metadata`)."""
    return cast(int, aio._partition(topic, None, key, value, key, value))


def sent_counter(monitor: Any) -> Any | None:
    """Faust's ``topic_messages_sent`` counter, which ``Topic.send`` fed and direct sends must
    feed instead (None: not a Prometheus monitor).

    Relies on: ``PrometheusMonitor._metrics`` (a ``FaustMetrics``)."""
    if not isinstance(monitor, PrometheusMonitor):
        return None
    return monitor._metrics.topic_messages_sent
