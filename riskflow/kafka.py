"""Small Kafka helpers for entry points: topic creation and a JSON producer."""

from __future__ import annotations

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from riskflow.settings import Settings

log = logging.getLogger(__name__)


def topic_specs(settings: Settings) -> dict[str, int]:
    """Topic name -> partition count for every topic RiskFlow creates at start-up."""
    return {
        settings.topic_institution_events: settings.partitions,
        settings.topic_fund_events: settings.partitions,
        settings.topic_alerts: settings.partitions,
        settings.topic_risk_links: settings.partitions,
        settings.topic_deadletter: 1,
        settings.topic_rules: 1,
        settings.topic_shadow_alerts: settings.partitions,
    }


async def ensure_topics(settings: Settings, retries: int = 30, delay: float = 1.0) -> None:
    """Create missing topics with the configured partition counts (idempotent).

    Retries with back-off while the broker is unreachable, logging each wait.
    """
    assert settings.kafka_bootstrap
    attempt = 0
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            new = [
                NewTopic(name, n, settings.replication_factor)
                for name, n in topic_specs(settings).items()
                if name not in existing
            ]
            if new:
                await admin.create_topics(new)
                log.info("created topics %s", ", ".join(t.name for t in new))
            return
        except Exception as exc:
            attempt += 1
            if attempt > retries:
                raise
            wait = min(delay * 2 ** min(attempt - 1, 4), 10.0)
            log.warning("Kafka at %s not reachable (%s); retrying in %.1fs", settings.kafka_bootstrap, exc, wait)
            await asyncio.sleep(wait)
        finally:
            await admin.close()
