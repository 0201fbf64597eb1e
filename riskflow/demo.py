"""``riskflow demo``: broker, worker, a simulated stream and the alerts, in one command."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import logging
import os
import signal
import subprocess
import sys
import time

from riskflow.broker import EmbeddedBroker
from riskflow.feed.server import serve_feed
from riskflow.feedprint import tail_alerts
from riskflow.kafka import client_config, ensure_topics
from riskflow.replay import produce, route
from riskflow.schema import encode_event
from riskflow.settings import Settings
from riskflow.sim import DEFAULT_START, simulate

log = logging.getLogger(__name__)

CHUNK_DAYS = 60
CHUNK_SECONDS = 40.0  # wall seconds to replay one simulated chunk


def _chunks(entities: int, seed: int) -> object:
    """Endless simulated history, CHUNK_DAYS at a time, as encoded lines."""
    k = 0
    while True:
        start = DEFAULT_START + _dt.timedelta(days=CHUNK_DAYS * k)
        events, _ = simulate(entities=entities, days=CHUNK_DAYS, seed=seed + k, start=start)
        yield [encode_event(e) for e in events]
        k += 1


async def _run(settings: Settings, duration: float | None, as_json: bool, entities: int, seed: int) -> None:
    assert settings.kafka_bootstrap
    await ensure_topics(settings)
    env = dict(os.environ, RISKFLOW_KAFKA_BOOTSTRAP=settings.kafka_bootstrap)
    worker = subprocess.Popen([sys.executable, "-m", "riskflow", "worker"], env=env, stdout=sys.stderr)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    printer = asyncio.create_task(
        tail_alerts(client_config(settings), settings.topic_alerts, as_json=as_json, stop=stop)
    )
    web = asyncio.create_task(serve_feed(settings, stop))  # officers' feed + alert store sink
    speed = CHUNK_DAYS * 86400 / CHUNK_SECONDS

    async def feed() -> None:
        for lines in _chunks(entities, seed):  # type: ignore[attr-defined]
            n = await produce(route(lines, settings), client_config(settings), speed=speed)
            log.info("demo: replayed %d simulated events", n)

    feeder = asyncio.create_task(feed())
    log.info(
        "demo: worker pid %d; metrics on http://%s:%d/metrics; alerts follow",
        worker.pid,
        settings.metrics_host,
        settings.metrics_port,
    )
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=duration)
    stop.set()
    feeder.cancel()
    await asyncio.gather(printer, feeder, web, return_exceptions=True)
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(20)
    except subprocess.TimeoutExpired:
        worker.kill()


def run_demo(settings: Settings, duration: float | None, as_json: bool, entities: int = 300, seed: int = 7) -> int:
    broker: EmbeddedBroker | None = None
    if not settings.kafka_bootstrap:
        broker = EmbeddedBroker().start()
        settings = settings.model_copy(update={"kafka_bootstrap": broker.bootstrap})
        log.info("demo: embedded Tansu broker on %s", broker.bootstrap)
    started = time.monotonic()
    try:
        asyncio.run(_run(settings, duration, as_json, entities, seed))
    finally:
        if broker:
            broker.stop()
    log.info("demo: finished after %.0fs", time.monotonic() - started)
    return 0
