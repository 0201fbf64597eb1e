"""Read alerts from the alerts topic and print them for people or machines."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any, TextIO

from aiokafka import AIOKafkaConsumer

from riskflow.alerts import Alert, decode_alert
from riskflow.schema import REGIONS

_SEV = {"low": "LOW ", "medium": "MED ", "high": "HIGH", "critical": "CRIT"}


def format_alert(a: Alert) -> str:
    en, zh = REGIONS.get(a.region, (a.region, ""))
    ev = ", ".join(f"{k}={v}" for k, v in a.evidence.items())
    shadow = " [shadow]" if a.mode == "shadow" else ""
    return (
        f"{a.event_time[:16].replace('T', ' ')}  {_SEV.get(a.severity, a.severity)}  {en} {zh}  "
        f"{a.entity_id}  {a.title_zh} {a.title_en}{shadow}  ({ev})"
    )


async def tail_alerts(
    bootstrap: str | dict[str, Any],
    topic: str,
    *,
    as_json: bool = False,
    out: TextIO = sys.stdout,
    stop: asyncio.Event | None = None,
    keep: Callable[[Alert], bool] = lambda a: True,
) -> int:
    """Print every alert on ``topic`` from the beginning, once per alert id, until ``stop``."""
    kafka = bootstrap if isinstance(bootstrap, dict) else {"bootstrap_servers": bootstrap}
    consumer = AIOKafkaConsumer(
        topic,
        **kafka,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
    )
    await consumer.start()
    seen: set[str] = set()
    try:
        while stop is None or not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200)
            for msgs in batches.values():
                for m in msgs:
                    a = decode_alert(m.value)
                    if a.alert_id in seen or not keep(a):
                        continue
                    seen.add(a.alert_id)
                    out.write((m.value.decode() if as_json else format_alert(a)) + "\n")
            out.flush()
    finally:
        await consumer.stop()
    return len(seen)
