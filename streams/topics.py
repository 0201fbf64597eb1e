"""Topic declarations. Inputs are keyed by ``entity_id``; values are raw bytes."""

from __future__ import annotations

from dataclasses import dataclass

import faust

from riskflow.core.settings import Settings


@dataclass(frozen=True)
class Topics:
    inputs: faust.TopicT  # both input topics and the risk-links topic, consumed by one agent
    alerts: faust.TopicT
    links: faust.TopicT
    deadletter: faust.TopicT
    shadow_alerts: faust.TopicT | None = None  # alerts of rules in shadow mode
    late: faust.TopicT | None = None  # the late-event ledger (detectors/lateness.py)


def declare_topics(app: faust.App, settings: Settings) -> Topics:
    raw = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}
    return Topics(
        inputs=app.topic(
            settings.topic_institution_events,
            settings.topic_fund_events,
            # Contagion messages between entities (detectors/risk/contagion.py): keyed by entity
            # id and co-partitioned with the inputs, so one agent owns an entity's events, its
            # messages and its table partition, and applies them to its state one at a time.
            settings.topic_risk_links,
            partitions=settings.partitions,
            **raw,  # type: ignore[arg-type]
        ),
        alerts=app.topic(settings.topic_alerts, partitions=settings.partitions, **raw),  # type: ignore[arg-type]
        links=app.topic(settings.topic_risk_links, partitions=settings.partitions, **raw),  # type: ignore[arg-type]
        deadletter=app.topic(settings.topic_deadletter, partitions=1, **raw),  # type: ignore[arg-type]
        shadow_alerts=app.topic(settings.topic_shadow_alerts, partitions=settings.partitions, **raw),  # type: ignore[arg-type]
        late=app.topic(settings.topic_late, partitions=1, **raw),  # type: ignore[arg-type]
    )
