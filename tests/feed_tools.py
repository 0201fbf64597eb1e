"""Serving the feed in-process for tests: an aiohttp test client over a store file."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from riskflow.feed.app import build_app
from riskflow.feed.auth import Tokens
from riskflow.store import open_store

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
