"""Assemble the app: settings + rule pack -> Faust app with topics, table and agent."""

from __future__ import annotations

from dataclasses import dataclass

import faust
from prometheus_client import CollectorRegistry

from detectors.factory import build_processor
from detectors.pipeline import BatchProcessor
from detectors.risk import load_risk_config
from detectors.rules import RulePack
from riskflow.metrics import Metrics
from riskflow.settings import Settings
from streams.agents import wire_agents
from streams.app import create_app
from streams.tables import declare_tables
from streams.topics import Topics, declare_topics


@dataclass
class Topology:
    app: faust.App
    topics: Topics
    table: faust.Table
    processor: BatchProcessor


def build_topology(
    settings: Settings, pack: RulePack, registry: CollectorRegistry, metrics: Metrics | None
) -> Topology:
    app = create_app(settings, registry)
    topics = declare_topics(app, settings)
    table = declare_tables(app, settings)
    processor = build_processor(
        pack,
        dedup_window=settings.dedup_window,
        max_bytes=settings.max_event_bytes,
        max_future_seconds=settings.max_future_seconds,
        risk=load_risk_config(settings.risk_config),
        links_topic=settings.topic_risk_links,
    )
    wire_agents(
        app,
        topics,
        table,
        processor,
        metrics,
        batch_size=settings.batch_size,
        batch_timeout=settings.batch_timeout,
    )
    return Topology(app, topics, table, processor)
