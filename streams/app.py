"""The Faust application, configured from :class:`riskflow.core.settings.Settings`."""

from __future__ import annotations

import faust
from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
from prometheus_client import CollectorRegistry

from riskflow.core.kafka import faust_credentials
from riskflow.core.settings import Settings
from streams import faust_compat


def create_app(settings: Settings, registry: CollectorRegistry | None = None) -> faust.App:
    """A Faust app for ``settings``; Faust's sensors report into ``registry``."""
    if not settings.kafka_bootstrap:
        raise ValueError("the worker needs RISKFLOW_KAFKA_BOOTSTRAP (riskflow demo starts a broker itself)")
    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    brokers = ";".join(f"kafka://{b.strip()}" for b in settings.kafka_bootstrap.split(","))
    app = faust.App(
        settings.app_id,
        broker=brokers,
        broker_credentials=faust_credentials(settings),  # SASL/SCRAM and TLS from settings
        store="memory://",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=True,
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=min(3.0, settings.session_timeout / 4),
        broker_commit_interval=1.0,
        consumer_max_fetch_size=settings.max_fetch_bytes,
        # A batch's alerts and entity states go out together: with aiokafka's 16 KB record
        # batches and one request in flight per broker (one batch per partition in it), the
        # ~1 KB states of a 1,000-event batch took a dozen sequential round trips; 256 KB
        # batches need one. (At most a quarter of a fetch, so that readers take whole batches;
        # never below aiokafka's default.)
        producer_max_batch_size=max(16 * 1024, min(256 * 1024, settings.max_fetch_bytes // 4)),
        stream_buffer_maxsize=max(4096, settings.batch_size * 2),
        # One fetch = one batch of the hot path (streams/batchtap.py).
        broker_max_poll_records=settings.batch_size,
        datadir=str(settings.data_dir / "faust"),
        web_enabled=settings.web_port != 0,
        web_port=settings.web_port or 6066,
        # web_bind is the listening address; web_host only names the worker in URLs.
        web_bind=settings.web_host,
        web_host=settings.web_host,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
    )
    # Faust hard-codes fetch_max_wait_ms=1500 for its group consumer; the broker may hold
    # every fetch that long, which alone costs ~1.2 s of latency (docs/operations.md,
    # "Broker notes"). Applied when the consumer is built (streams/faust_compat.py).
    faust_compat.set_fetch_max_wait(app, int(settings.fetch_max_wait * 1000))
    if registry is not None:
        app.monitor = PrometheusMonitor(metrics=FaustMetrics.create(registry, "faust"))
    return app
