"""``riskflow worker``: the stream processor against a Kafka cluster."""

from __future__ import annotations

import asyncio
import logging

import faust
from prometheus_client import REGISTRY, start_http_server

from detectors.rules import load_pack
from riskflow import __version__
from riskflow.kafka import ensure_topics
from riskflow.metrics import Metrics
from riskflow.settings import Settings
from streams.topology import build_topology

log = logging.getLogger(__name__)


def run_worker(settings: Settings, rules: str | None = None) -> int:
    """Run until stopped (SIGINT/SIGTERM). Returns the process exit code."""
    if not settings.kafka_bootstrap:
        raise SystemExit("riskflow worker: set RISKFLOW_KAFKA_BOOTSTRAP (or run `riskflow demo`)")
    pack = load_pack(rules, constants={"lpr_1y": settings.lpr_1y} if settings.lpr_1y is not None else None)
    registry = REGISTRY
    metrics = Metrics.create(registry)
    metrics.build.info({"version": __version__, "rule_pack": pack.version})
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.metrics_host, registry=registry)
        log.info("metrics on http://%s:%d/metrics", settings.metrics_host, settings.metrics_port)
    asyncio.run(ensure_topics(settings))
    topo = build_topology(settings, pack, registry, metrics)
    log.info("rule pack %s: %d rules", pack.version, len(pack.detectors))
    worker = faust.Worker(
        topo.app,
        loglevel=settings.log_level.upper(),
        quiet=True,
        redirect_stdouts=False,
    )
    worker.execute_from_commandline()
    return 0
