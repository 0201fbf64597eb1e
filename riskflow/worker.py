"""``riskflow worker``: the stream processor against a Kafka cluster."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import faust
from prometheus_client import REGISTRY, CollectorRegistry, disable_created_metrics, start_http_server

import detectors
from detectors.factory import pack_from_settings
from riskflow import __version__
from riskflow.broker import bind_error
from riskflow.core.errors import CommandError
from riskflow.core.kafka import client_config, ensure_topics, require_bootstrap, topic_specs
from riskflow.core.metrics import Metrics
from riskflow.core.settings import Settings
from streams.tables import changelog_topic
from streams.topology import build_topology

log = logging.getLogger(__name__)


#: aiokafka's per-attempt messages while a broker is unreachable.
CONNECTION_ERRORS = (
    "Unable connect to node",
    "Unable to update metadata",
    "Failed fetch messages",
    "Got error produce response",
    "NodeNotReadyError",
    "KafkaConnectionError",
)


class BrokerRetryLog(logging.Filter):
    """Collapses aiokafka's connection errors into one line per back-off step.

    While a broker is unreachable, aiokafka's fetcher, metadata updater and
    producer retry every few milliseconds and log each attempt (measured: ~170
    lines a second). This filter lets the first one through, rewritten as a clear
    "Kafka broker unreachable" line, then one summary per 1, 2, 4 .. 60 s with the
    number of failed attempts; after ``reset`` seconds without one, the next error
    starts a new outage.

    >>> f = BrokerRetryLog(clock=iter([0.0, 0.1, 1.2]).__next__)
    >>> rec = lambda: logging.LogRecord("aiokafka", logging.ERROR, "", 0, "Unable connect to node 1", (), None)
    >>> [f.filter(rec()) for _ in range(3)]
    [True, False, True]
    """

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, max_wait: float = 60.0, reset: float = 30.0
    ) -> None:
        super().__init__()
        self.clock, self.max_wait, self.reset = clock, max_wait, reset
        self._last = float("-inf")
        self._next = 0.0
        self._wait = 1.0
        self._errors = 0

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if record.levelno < logging.WARNING or not any(p in msg for p in CONNECTION_ERRORS):
            return True
        now = self.clock()
        if now - self._last > self.reset:  # a new outage
            self._next, self._wait, self._errors = now, 1.0, 0
        self._last = now
        self._errors += 1
        if now < self._next:
            return False
        record.msg = "Kafka broker unreachable, retrying (%d failed attempts so far; next report in %.0fs): %s"
        record.args = (self._errors, self._wait, msg)
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        self._next = now + self._wait
        self._wait = min(self._wait * 2, self.max_wait)
        return True


def quiet_aiokafka_retries() -> BrokerRetryLog:
    """Install one :class:`BrokerRetryLog` on every aiokafka logger (records are filtered
    by the logger that made them, so each one needs it)."""
    import aiokafka  # noqa: F401  (its loggers exist once imported)

    f = BrokerRetryLog()
    names = [n for n in logging.root.manager.loggerDict if n == "aiokafka" or n.startswith("aiokafka.")]
    for name in names:
        logging.getLogger(name).addFilter(f)
    return f


def serve_metrics(host: str, port: int, registry: CollectorRegistry, setting: str = "RISKFLOW_METRICS_PORT") -> None:
    """Serve ``/metrics`` on ``host:port``, or fail in one line naming the setting: a worker
    whose metrics went to a random port would be invisible to the Prometheus that scrapes it."""
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise CommandError(
            f"cannot serve metrics on {host}:{port} ({exc.strerror}); set {setting} to a free port "
            "(0: no metrics endpoint)"
        ) from None
    log.info("metrics on http://%s:%d/metrics", host, port)


async def existing_partitions(settings: Settings, topics: list[str]) -> dict[str, int]:
    """Partition count of each of ``topics`` that exists (a metadata request creates nothing)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**client_config(settings))
    await admin.start()
    try:
        present = set(await admin.list_topics())
        wanted = [t for t in topics if t in present]
        described = await admin.describe_topics(wanted) if wanted else []
    finally:
        await admin.close()
    return {d["topic"]: len(d["partitions"]) for d in described if d["topic"] in present}


def settle_partitions(settings: Settings, counts: dict[str, int]) -> Settings:
    """The settings with the partition count the deployment already has, given the existing
    topics' ``counts``: the input topics' count when they exist (a deployment keeps its count
    whatever RISKFLOW_PARTITIONS says now), else RISKFLOW_PARTITIONS. Refuses with
    :class:`CommandError` when the inputs disagree among themselves or with the state table's
    changelog: entities would be recovered into the wrong partition's table, and their state
    silently start over.

    >>> s = Settings(partitions=12)
    >>> settle_partitions(s, {s.topic_fund_events: 4}).partitions
    4
    """
    inputs = [settings.topic_institution_events, settings.topic_fund_events, settings.topic_risk_links]
    found = {t: counts[t] for t in inputs if t in counts}
    if len(set(found.values())) > 1:
        listed = ", ".join(f"{t}={n}" for t, n in found.items())
        raise CommandError(
            f"the input topics have different partition counts ({listed}); entities are keyed to one "
            "partition across them: re-create them with one count (RISKFLOW_PARTITIONS)"
        )
    count = next(iter(found.values()), settings.partitions)
    changelog = changelog_topic(settings.app_id)
    if changelog in counts and counts[changelog] != count:
        raise CommandError(
            f"the state changelog {changelog} has {counts[changelog]} partitions but the input topics "
            f"{'have' if found else 'would be created with'} {count}; the state would be restored into the "
            f"wrong partitions: use RISKFLOW_PARTITIONS={counts[changelog]} on new topics, or a new "
            "RISKFLOW_APP_ID (new state, rebuilt from the inputs' retention)"
        )
    if count != settings.partitions:
        log.warning(
            "the input topics exist with %d partitions: using %d (RISKFLOW_PARTITIONS=%d applies to new topics only)",
            count,
            count,
            settings.partitions,
        )
        settings = settings.model_copy(update={"partitions": count})
    return settings


async def prepare_topics(settings: Settings) -> Settings:
    """Wait for the broker, settle the partition count on the existing topics and create the
    missing ones with it. Returns the settings to run with."""
    await ensure_topics(settings, create=False)
    names = [*topic_specs(settings), changelog_topic(settings.app_id)]
    settings = settle_partitions(settings, await existing_partitions(settings, names))
    await ensure_topics(settings)
    return settings


def run_worker(settings: Settings, rules: str | None = None) -> int:
    """Run until stopped (SIGINT/SIGTERM). Returns the process exit code."""
    require_bootstrap(settings)
    pack = pack_from_settings(settings, rules)
    # No "<counter>_created" series: they were half of the ~1,700 lines of a busy worker's
    # /metrics (each labelled counter child has one), no dashboard or alert reads them, and
    # every scrape paid for rendering them (35 ms a scrape, bench/pipeline.py).
    disable_created_metrics()
    registry = REGISTRY
    metrics = Metrics.create(registry)
    metrics.build.info({"version": __version__, "rule_pack": pack.version})
    if settings.metrics_port:
        serve_metrics(settings.metrics_host, settings.metrics_port, registry)
    taken = bind_error(settings.web_host, settings.web_port) if settings.web_port else None
    if taken is not None:  # Faust would stop the whole worker on it, in a page of logs
        raise CommandError(
            f"cannot serve Faust's web server on {settings.web_host}:{settings.web_port} ({taken.strerror}); "
            "set RISKFLOW_WEB_PORT to a free port (0: off)"
        )
    # Start-up: waits for the broker, retrying with back-off and a log line per wait
    # ("Kafka at ... not reachable ...; retrying in 2.0s").
    settings = asyncio.run(prepare_topics(settings))
    quiet_aiokafka_retries()
    topo = build_topology(settings, pack, registry, metrics)
    log.info("rule pack %s: %d rules; detectors: %s", pack.version, len(pack.detectors), detectors.build())
    worker = faust.Worker(
        topo.app,
        loglevel=settings.log_level.upper(),
        quiet=True,
        redirect_stdouts=False,
    )
    # No terminal spinner: at log level warning or above Faust would install it as a DEBUG
    # handler on the root logger, which turns on every library's debug records (aiokafka's
    # "Sending ..." for each message produced: ~5% of a busy worker, bench/pipeline.py).
    worker.spinner = None
    worker.execute_from_commandline()
    return 0
