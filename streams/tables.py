"""Changelog-backed tables. Entity state is stored as msgpack bytes keyed by entity id.

Recovery is made whole here. Faust rebuilds a table by reading each changelog
partition up to its *end offset*; Tansu reports that as the start of the
partition's last record batch (docs/operations.md, "Broker notes"), so a restarted worker
silently lost the states of the last batch written before the crash
(tests/reliability/test_reliability_crash.py caught it: entities resumed with fewer
events). After Faust's own recovery, :func:`catch_up` reads every assigned
changelog partition from that reported end until the broker has nothing
more, and applies what it finds. On a broker with correct end offsets it
finds nothing; re-applying a record Faust already applied is harmless
(last write wins, in order). Stream processing resumes only after it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition

from riskflow.core.kafka import client_config
from riskflow.core.settings import Settings

log = logging.getLogger(__name__)


#: The entity-state table's name; Faust names its changelog topic after it (:func:`changelog_topic`).
STATE_TABLE = "entity-state"


def changelog_topic(app_id: str) -> str:
    """The entity-state changelog topic of app ``app_id``: co-partitioned with the inputs,
    so a worker's table partition ``p`` holds the entities of its input partition ``p``."""
    return f"{app_id}-{STATE_TABLE}-changelog"


def declare_tables(app: faust.App, settings: Settings) -> faust.Table:
    table: Any = app.Table(
        STATE_TABLE,
        default=None,
        partitions=settings.partitions,
        key_type=bytes,
        value_type=bytes,
    )
    _install_catch_up(table, lambda: recovery_consumer(settings))
    return table


def recovery_consumer(settings: Settings) -> AIOKafkaConsumer:
    """The consumer :func:`catch_up` reads with: no group, same security as every client."""
    return AIOKafkaConsumer(**client_config(settings), group_id=None, enable_auto_commit=False)


def _install_catch_up(table: faust.Table, new_consumer: Callable[[], AIOKafkaConsumer]) -> None:
    faust_recovered = table.on_recovery_completed

    async def on_recovery_completed(active_tps: set[Any], standby_tps: set[Any]) -> None:
        await faust_recovered(active_tps, standby_tps)
        topic = table.changelog_topic.get_topic_name()
        tps = [TopicPartition(tp.topic, tp.partition) for tp in active_tps if tp.topic == topic]
        if not tps:
            return
        # Faust gathers these callbacks with asyncio.wait, which would swallow
        # an exception: retry here, and say so loudly if it never succeeds.
        for attempt in range(1, 6):
            try:
                n, changed = await catch_up(new_consumer(), tps, table.data)
                break
            except Exception as exc:  # a failed catch-up must not pass silently
                log.warning(
                    "table %s: changelog catch-up failed (%r); retry %d in %ds", table.name, exc, attempt, attempt
                )
                await asyncio.sleep(attempt)
        else:
            log.error("table %s: changelog catch-up failed: the last state batch may be missing", table.name)
            return
        log.info(
            "table %s: %d changelog records read past the reported end offsets, %d of them missing from recovery",
            table.name,
            n,
            changed,
        )

    table.on_recovery_completed = on_recovery_completed  # type: ignore[method-assign]


async def catch_up(
    consumer: AIOKafkaConsumer,
    tps: Iterable[TopicPartition],
    store: MutableMapping[bytes, bytes],
    *,
    quiet_ms: int = 500,
) -> tuple[int, int]:
    """Apply every record from each partition's reported end offset onwards.

    Reads until a fetch of ``quiet_ms`` returns nothing: no assumption about
    end offsets at all. Returns (records read, records that changed ``store``).
    """
    tps = list(tps)
    await consumer.start()
    applied = changed = 0
    try:
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, max(0, ends[tp] - 1))  # -1: Faust's own highwater is end - 1
        while True:
            got = await consumer.getmany(*tps, timeout_ms=quiet_ms)
            if not any(got.values()):
                return applied, changed
            for msgs in got.values():
                for m in msgs:
                    if m.key is None:
                        continue
                    if m.value is None:
                        changed += store.pop(m.key, None) is not None
                    else:
                        changed += store.get(m.key) != m.value
                        store[m.key] = m.value
                    applied += 1
    finally:
        await consumer.stop()
