"""Run the feed (and, with a broker, the alert sink beside it) until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import logging
import sys
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CollectorRegistry

from detectors.risk import load_risk_config
from riskflow.core.kafka import client_config
from riskflow.core.settings import Settings
from riskflow.feed.app import KEY_HUB, build_app
from riskflow.feed.auth import Tokens
from riskflow.feed.guard import FeedLimits
from riskflow.sinks.store import run_sink
from riskflow.store import AlertStore, open_store
from riskflow.store.metrics import StoreMetrics

log = logging.getLogger(__name__)


def tokens_from(settings: Settings) -> tuple[Tokens, str | None]:
    """The configured tokens, or one generated admin token for this run (returned to be printed)."""
    if settings.feed_tokens.strip():
        return Tokens.parse(settings.feed_tokens), None
    return Tokens.generated()


def feed_limits(settings: Settings) -> FeedLimits:
    return FeedLimits(
        streams_per_token=settings.feed_max_streams_per_token,
        streams_total=settings.feed_max_streams,
        max_note_bytes=settings.feed_max_note_bytes,
        auth_burst=settings.feed_auth_burst,
        auth_rate=settings.feed_auth_rate,
    )


def feed_runner(app: web.Application) -> web.AppRunner:
    """The feed's runner: a handler is cancelled when its client goes away, so a closed live
    stream gives its slot back at once instead of at its next keep-alive write."""
    return web.AppRunner(app, shutdown_timeout=2.0, access_log=None, handler_cancellation=True)


async def serve_feed(
    settings: Settings,
    stop: asyncio.Event,
    *,
    with_sink: bool = True,
    store: AlertStore | None = None,
    port: int | None = None,
    on_ready: Callable[[str, str | None], None] | None = None,
) -> None:
    """Serve the feed on ``settings.feed_host:feed_port`` (``port`` overrides; 0 picks a free one).

    ``on_ready(url, generated_token)``, when given, is told where the feed listens instead of
    the terminal line (the demo shows it in its banner)."""
    tokens, generated = tokens_from(settings)
    own_store = store is None
    # the in-process sink opens officers' cases with the configured disposal routes and deadlines
    st = store or open_store(settings.store_target(), load_risk_config(settings.risk_config))
    registry = CollectorRegistry()
    app = build_app(
        st,
        tokens,
        max_snooze=_dt.timedelta(days=settings.snooze_max_days),
        registry=registry,
        limits=feed_limits(settings),
    )
    runner = feed_runner(app)
    await runner.setup()
    want = settings.feed_port if port is None else port
    site = web.TCPSite(runner, settings.feed_host, want)
    try:
        await site.start()
    except OSError as e:
        log.warning("feed: port %d unavailable (%s); using a free port", want, e)
        site = web.TCPSite(runner, settings.feed_host, 0)
        await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://{settings.feed_host}:{bound}/"
    if on_ready is not None:
        on_ready(url, generated)
    elif generated:
        # The token goes to the terminal once, never through logging (log files and collectors keep it).
        print(f"feed: {url}#token={generated}  (admin token for this run, not logged)", file=sys.stderr, flush=True)
        log.info("feed: %s  (generated admin token printed on the terminal; RISKFLOW_FEED_TOKENS for fixed ones)", url)
    else:
        log.info("feed: %s  (%d tokens configured); API description at %sopenapi.json", url, len(tokens), url)
    sink: asyncio.Task[object] | None = None
    if with_sink and settings.kafka_bootstrap:
        sink = asyncio.create_task(
            run_sink(
                st,
                client_config(settings),
                settings.topic_alerts,
                settings.store_group_id(),
                stop=stop,
                on_change=app[KEY_HUB].poke,
                session_timeout=settings.session_timeout,
                metrics=StoreMetrics.create(registry),
            )
        )
    try:
        await stop.wait()
    finally:
        if sink:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(sink, timeout=30)
        await runner.cleanup()
        if own_store:
            st.close()
