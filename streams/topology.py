"""Assemble the app: settings + rule pack -> Faust app with topics, table and agent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faust
from prometheus_client import CollectorRegistry

from detectors.anomaly import AnomalyDetector
from detectors.factory import pack_constants, peer_detector, processor_from_settings
from detectors.pipeline import BatchProcessor
from detectors.rules import RulePack
from riskflow import __version__
from riskflow.core.kafka import client_config
from riskflow.core.metrics import Metrics
from riskflow.core.settings import Settings
from streams import faust_compat
from streams.agents import wire_agents
from streams.app import create_app
from streams.control import load_into, wire_control
from streams.rules_control import RuleControl
from streams.statecache import StateCache
from streams.tables import declare_tables
from streams.topics import Topics, declare_topics


@dataclass
class Topology:
    app: faust.App
    topics: Topics
    table: faust.Table
    processor: BatchProcessor
    control: RuleControl | None = None


def build_topology(
    settings: Settings, pack: RulePack, registry: CollectorRegistry, metrics: Metrics | None
) -> Topology:
    # Faust's fetch loop and group consumer, patched for this process (before any consumer
    # exists): streams/faust_compat.py names every private name RiskFlow relies on.
    faust_compat.install()
    app = create_app(settings, registry)
    topics = declare_topics(app, settings)
    table = declare_tables(app, settings)

    anomaly: list[AnomalyDetector] = []

    def make(p: RulePack) -> BatchProcessor:
        bp = processor_from_settings(settings, p, links_topic=settings.topic_risk_links)
        # A rule-pack switch keeps the running anomaly detectors (and the loaded peer model).
        if anomaly:
            bp.engine.detectors = [
                *(d for d in bp.engine.detectors if not isinstance(d, AnomalyDetector)),
                *anomaly,
            ]
        else:
            anomaly.extend(d for d in bp.engine.detectors if isinstance(d, AnomalyDetector))
        return bp

    processor = make(pack)
    store = table.data
    # Dirty (un-flushed) entity states and the clean ones last written, decoded (streams/statecache.py).
    cache = StateCache(settings.state_cache, interval=settings.state_flush_interval, max_dirty=settings.state_flush_max)

    def on_switch(p: RulePack) -> None:
        if metrics is not None:
            metrics.build.info({"version": __version__, "rule_pack": p.version})

    # Every Kafka client of the worker gets the same connection and security options (SASL, TLS).
    kafka = client_config(settings) if settings.kafka_bootstrap else {"bootstrap_servers": ""}
    control = RuleControl(
        kafka,
        settings.topic_rules,
        processor,
        lambda p: make(p).engine,
        lambda: cache.overlay(list(store.items())),  # lanes from the states as this worker has them
        constants=pack_constants(settings),
        on_switch=on_switch,
        metrics=metrics,
    )

    async def follow_rules() -> None:
        await control.run()

    async def on_assigned(*args: Any, **kwargs: Any) -> None:
        control.rebuild = True  # partitions moved: lanes come from the table again

    app.task(follow_rules)
    app.on_partitions_assigned.connect(on_assigned)
    peer = peer_detector(processor)
    if peer is not None:
        model_key = settings.model_key.get_secret_value().encode() if settings.model_key else None
        if settings.model_dir is not None:
            load_into(peer, settings.model_dir, metrics, model_key)  # at start-up; then on a reload message
        if settings.kafka_bootstrap:
            wire_control(app, kafka, settings.topic_control, peer, settings.model_dir, metrics, model_key)
    wire_agents(
        app,
        topics,
        table,
        processor,
        metrics,
        before_batch=control.before_batch,
        peer=peer,
        state_cache=cache,
    )
    return Topology(app, topics, table, processor, control)
