"""The worker's outputs on their way to Kafka: routed to topics, batched, delivered.

Every output goes straight to the producer, named by topic (no Faust ``Topic.send`` per
message: it was ~12% of a busy worker, bench/latency.py). Keyed records are placed by the
producer's murmur2 partitioner, as ``Topic.send`` placed them; records are submitted in
record batches built per partition (:func:`batched`), and a failed delivery is retried with
back-off (:func:`deliver`) instead of raising, so that a broker that is briefly unreachable
costs time, not a worker restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

from detectors.lateness import encode_late
from detectors.pipeline import BatchResult
from detectors.risk.contagion import encode_link
from riskflow.core.deadletter import encode_dead_letter
from streams import faust_compat as compat

log = logging.getLogger(__name__)

Send = Callable[[], Awaitable[Any]]

#: One output record: (topic, key, value, partition or None for the producer's partitioner).
Out = tuple[str, bytes | None, bytes, int | None]


async def deliver(sends: Sequence[Send], what: str, *, max_wait: float = 10.0) -> None:
    """Start every send, then wait until all are acknowledged by the broker.

    On a Kafka error everything is sent again after a back-off (1, 2, 4 .. s,
    at most ``max_wait``): re-sent alerts carry the same ids and re-sent states
    are last-write-wins, so repeating is safe, while giving up is not. The
    common path (no error) costs one list of coroutines per batch.
    """
    attempt = 0
    while True:
        try:
            pending = [await send() for send in sends]
            if pending:
                await asyncio.gather(*pending)
            if attempt:
                log.warning("delivered %d %s after %d retries", len(sends), what, attempt)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any producer failure is retried
            attempt += 1
            wait = min(2.0 ** (attempt - 1), max_wait)
            log.warning(
                "could not deliver %d %s (%s: %s); retry %d in %.0fs",
                len(sends),
                what,
                type(exc).__name__,
                exc,
                attempt,
                wait,
            )
            await asyncio.sleep(wait)


def batched(producer: Any, records: Sequence[Out]) -> list[Send]:
    """The sends of ``records``, in record batches built here rather than one ``send`` each.

    aiokafka's ``send`` costs ~14-18 µs of CPU per record (a future per record, resolved
    with its own metadata, behind Faust's wrapper); filling one batch per partition and
    submitting it with ``send_batch`` ~4-6 µs, with one future per batch (``bench/produce.py``:
    7,400 ~1 KB records, as a flush writes). Records without a partition are placed by the
    producer's own partitioner (murmur2 of the key, as ``send`` places them); per partition
    the order is kept. Re-running the send (a retry in :func:`deliver`) builds the batches
    again. ``producer``: Faust's aiokafka producer;
    any other falls back to one ``send`` per record."""
    if not records:
        return []
    aio = compat.aiokafka_producer(producer)
    if aio is None:
        return [partial(producer.send, t, k, v, p, None, None) for t, k, v, p in records]
    return [partial(_send_batches, aio, records)]


async def _send_batches(aio: Any, records: Sequence[Out]) -> Awaitable[Any]:
    """Submit ``records`` in batches (one or more per partition); a future of all their acks."""
    groups: dict[tuple[str, int], list[tuple[bytes | None, bytes]]] = {}
    known: set[str] = set()
    for topic, key, value, partition in records:
        if partition is None:
            if topic not in known:
                await compat.wait_on_metadata(aio, topic)
                known.add(topic)
            partition = compat.default_partition(aio, topic, key, value)
        group = groups.get((topic, partition))
        if group is None:
            group = groups[topic, partition] = []
        group.append((key, value))
    futures = []
    for (topic, partition), recs in groups.items():
        batch = aio.create_batch()
        for key, value in recs:
            if batch.append(key=key, value=value, timestamp=None) is None:  # full: submit, start another
                futures.append(await aio.send_batch(batch, topic, partition=partition))
                batch = aio.create_batch()
                batch.append(key=key, value=value, timestamp=None)  # the first record always fits
        futures.append(await aio.send_batch(batch, topic, partition=partition))
    return asyncio.gather(*futures)


class OutputRouter:
    """A batch's outputs → topics: alerts (shadow rules' to ``shadow_alerts``), contagion links,
    dead letters and late or ahead records (the late-event ledger; dropped without a topic).

    ``producer``: returns the producer to send with (Faust's ``app.producer``, looked up per
    send: it is started after the wiring). ``sent_counter``: Faust's per-topic counter of
    messages sent, which ``Topic.send`` kept and direct sends feed instead (None: none).

    >>> router = OutputRouter(object, alerts="a", shadow_alerts=None, links="l", deadletter="d", late=None)
    >>> from riskflow.core.deadletter import dead_letter
    >>> res = BatchResult(dead_letters=[dead_letter(b"{", "malformed_json", "not JSON", "t", 0, 7, None)])
    >>> [topic for topic, *_ in router.records(res)]
    ['d']
    """

    def __init__(
        self,
        producer: Callable[[], Any],
        *,
        alerts: str,
        shadow_alerts: str | None,
        links: str,
        deadletter: str,
        late: str | None,
        sent_counter: Any | None = None,
    ) -> None:
        self.producer = producer
        self.alerts = alerts
        self.shadow_alerts = shadow_alerts if shadow_alerts is not None else alerts
        self.links = links
        self.deadletter = deadletter
        self.late = late
        self.sent_counter = sent_counter

    def records(self, res: BatchResult) -> list[Out]:
        """The output records of ``res``, alerts first (then links, dead letters, late records)."""
        alerts, shadow = self.alerts, self.shadow_alerts
        out: list[Out] = [
            (shadow if a.mode == "shadow" else alerts, a.entity_id.encode(), a.to_json(), None) for a in res.alerts
        ]
        out += [(self.links, m.to.encode(), encode_link(m), None) for m in res.links]
        out += [(self.deadletter, (d["key"] or "").encode(), encode_dead_letter(d), None) for d in res.dead_letters]
        if self.late is not None:
            out += [(self.late, r.entity_id.encode(), encode_late(r), None) for r in (*res.late, *res.ahead)]
        return out

    async def emit(self, res: BatchResult) -> None:
        """Deliver the outputs of ``res`` (awaited: acknowledged by the broker, retried until then)."""
        if res.alerts or res.links or res.dead_letters or res.late or res.ahead:
            await deliver(self.sends(self.records(res)), "alerts/links/dead letters")

    def sends(self, records: Sequence[Out]) -> list[Send]:
        """The sends of ``records`` through the current producer (:func:`batched`)."""
        return batched(self.producer(), records)

    def count_sent(self, res: BatchResult) -> None:
        """Feed Faust's per-topic count of messages sent with the outputs of ``res``."""
        if self.sent_counter is None:
            return
        alerts, shadow = self.alerts, self.shadow_alerts
        sent = Counter(shadow if a.mode == "shadow" else alerts for a in res.alerts)
        sent[self.links] += len(res.links)
        sent[self.deadletter] += len(res.dead_letters)
        if self.late is not None:
            sent[self.late] += len(res.late) + len(res.ahead)
        for topic, n in sent.items():
            if n:
                self.count(topic, n)

    def count(self, topic: str, n: int) -> None:
        """``n`` messages sent to ``topic``, in Faust's per-topic count (if kept)."""
        if self.sent_counter is not None:
            self.sent_counter.labels(topic=f"topic.{topic}").inc(n)
