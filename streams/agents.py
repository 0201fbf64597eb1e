"""The detection agent: take a batch, hand it to the pipeline, emit, persist.

Contagion messages between entities (``BatchResult.links``) are delivered
with the alerts, before the states. Order per batch matters for the no-loss guarantee without transactions:
alerts and dead letters are *delivered* (awaited) before the entity states
that record their events as seen are written to the changelog, and Faust
commits input offsets only after that (it flushes the producer first). A
crash at any point therefore either re-emits alerts with the same ids (the
sinks upsert) or finds the events already folded into state; it never
loses an alert.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import faust

from detectors.engine import EntityState, decode_state, encode_state
from detectors.pipeline import BatchProcessor, RawMessage
from detectors.risk.contagion import encode_link
from riskflow.deadletter import encode_dead_letter
from riskflow.metrics import Metrics
from streams.topics import Topics


def wire_agents(
    app: faust.App,
    topics: Topics,
    table: faust.Table,
    processor: BatchProcessor,
    metrics: Metrics | None,
    *,
    batch_size: int,
    batch_timeout: float,
) -> Any:
    store = table.data
    changelog = table.changelog_topic.get_topic_name()

    def get_state(entity_id: str) -> EntityState | None:
        raw = store.get(entity_id.encode())
        return decode_state(raw) if raw is not None else None

    @app.agent(topics.inputs, name="riskflow-detect")
    async def detect(stream: faust.StreamT) -> None:
        producer = app.producer
        async for events in stream.take_events(batch_size, within=batch_timeout):
            started = time.perf_counter()
            msgs = [
                RawMessage(e.value, e.message.topic, e.message.partition, e.message.offset, e.message.key)
                for e in events
            ]
            res = processor.process(msgs, get_state)
            pending = [await topics.alerts.send(key=a.entity_id.encode(), value=a.to_json()) for a in res.alerts]
            pending += [await topics.links.send(key=m.to.encode(), value=encode_link(m)) for m in res.links]
            pending += [
                await topics.deadletter.send(
                    key=(d["key"] or "").encode(),
                    value=encode_dead_letter(d),
                )
                for d in res.dead_letters
            ]
            if pending:
                await asyncio.gather(*pending)
            # States go straight to the producer, one record per changed entity
            # per batch, and are awaited: durable before this batch's offsets can
            # be committed. (Table.send_changelog queues each record in Faust's
            # producer buffer, drained one message at a time, and stalls the
            # stream whenever 100 are pending: ~500 events/s, bench/pipeline.py.)
            writes = []
            for eid, (state, partition) in res.states.items():
                key, value = eid.encode(), encode_state(state)
                store[key] = value
                writes.append(await producer.send(changelog, key, value, partition, None, None))
            if writes:
                await asyncio.gather(*writes)
            if metrics is not None:
                metrics.count_batch(res.counted, (d["reason"] for d in res.dead_letters), res.alerts)
                metrics.batches.inc()
                metrics.batch_seconds.observe(time.perf_counter() - started)
                if res.max_event_ts:
                    metrics.event_time_lag.set(max(0.0, time.time() - res.max_event_ts))

    return detect
