"""Shared by several test modules (moved out of test_browser_feed.py, so no test imports another)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.support.kafka_fixtures import Stack

OFFICER_TOKEN = "br0wser-0fficer-token"
OTHER_OFFICER_TOKEN = "br0wser-0ther-0fficer"
VIEWER_TOKEN = "br0wser-v1ewer-token"
WAIT = 120.0  # generous: the machine is shared; nothing here is a timing assertion


def _start_feed(stack: Stack, store: str, port: int) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ,
        **stack.env,
        RISKFLOW_STORE_URL=store,
        RISKFLOW_FEED_PORT=str(port),
        RISKFLOW_FEED_TOKENS=f"{OFFICER_TOKEN}:officer:li.na,{OTHER_OFFICER_TOKEN}:officer:zhang.san,"
        f"{VIEWER_TOKEN}:viewer:audit.office",
        RISKFLOW_DATA_DIR=str(stack.tmp / "feed-data"),
    )
    with open(stack.tmp / "feed.log", "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "riskflow", "feed"], env=env, stdout=out, stderr=out)
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).read()
            return proc
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.3)
    pytest.fail("the feed did not come up:\n" + (stack.tmp / "feed.log").read_text(errors="replace")[-3000:])


def _api(base: str, path: str, body: dict[str, object] | None = None, token: str = OFFICER_TOKEN) -> Any:
    req = urllib.request.Request(
        f"{base}{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="GET" if body is None else "POST",
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())
