"""Serving the feed in-process for tests: an aiohttp test client over a store file."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from riskflow.feed.app import build_app
from riskflow.feed.auth import Tokens
from riskflow.feed.guard import FeedLimits
from riskflow.feed.server import feed_runner
from riskflow.store import AlertStore, open_store

#: a viewer, an officer and an admin
TOKENS = "v1ewer-token:viewer:audit.office,0fficer-token:officer:li.na,adm1n-token:admin:chief.zhao"

Scenario = Callable[[TestClient, str], Awaitable[None]]


def serve(target: str, scenario: Scenario, tokens: str = TOKENS) -> None:
    """Run ``scenario(client, target)`` against a feed over the store at ``target``."""

    async def go() -> None:
        store = open_store(target)
        app = build_app(store, Tokens.parse(tokens), poll_interval=0.1)
        async with TestClient(TestServer(app)) as client:
            await scenario(client, target)
        store.close()

    asyncio.run(go())


async def body(resp: Any) -> Any:
    return json.loads(await resp.text())


@asynccontextmanager
async def serving(
    store: AlertStore | str, limits: FeedLimits, clock: Callable[[], float] | None = None
) -> AsyncIterator[tuple[web.Application, str, AlertStore]]:
    """The feed app over ``store`` (or the store at that target, opened and closed here) on a free
    loopback port, run by the production runner; yields (app, base URL, store)."""
    st = open_store(store) if isinstance(store, str) else store
    kw: dict[str, Any] = {"clock": clock} if clock else {}
    app = build_app(st, Tokens.parse(TOKENS), poll_interval=0.05, limits=limits, **kw)
    runner = feed_runner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield app, f"http://{host}:{port}", st
    finally:
        await runner.cleanup()
        if st is not store:
            st.close()
