"""Fixtures for stream tests: one embedded Tansu broker per test session, and
workers started as real ``riskflow worker`` processes against it.

Every test gets its own app id and topic names (``Stack``), so tests sharing
the broker never see each other's messages or consumer groups.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from riskflow.broker import EmbeddedBroker, free_port
from riskflow.core.kafka import ensure_topics
from riskflow.core.settings import Settings, prefixed_topics
from streams.tables import changelog_topic

_ids = itertools.count(1)


def free_port_range(n: int) -> int:
    """A base port whose ``n`` consecutive ports (``riskflow worker --processes n`` serves process
    i on base + i) are free now, taken below Linux's ephemeral range (32768-60999): a port in
    that range that is free now may be a client socket's local port a moment later, which is
    how a test once found base + 1 taken."""
    for _ in range(500):
        base = random.randrange(20000, 32768 - n)
        socks: list[socket.socket] = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no {n} consecutive free ports below 32768")


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_file=str(log)) as b:
        yield b


async def create_topics(settings: Settings) -> None:
    """The deployment's topics and its state changelog, with the configured partition counts.
    The changelog too: a test reading it before the worker has started (a consumer's metadata
    request) would have the broker auto-create it with its default count, which the worker
    then refuses as a mismatch with the inputs."""
    await ensure_topics(settings)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        changelog = changelog_topic(settings.app_id)
        if changelog not in await admin.list_topics():
            compact = {"cleanup.policy": "compact"}
            await admin.create_topics([NewTopic(changelog, settings.partitions, 1, topic_configs=compact)])
    finally:
        await admin.close()


@dataclass
class Worker:
    proc: subprocess.Popen[bytes]
    log: Path
    metrics_port: int

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def kill(self) -> None:
        """``kill -9``: no shutdown, no final commit."""
        self.stop(signal.SIGKILL)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Stack:
    """Topic names and settings of one test's RiskFlow deployment on the shared broker."""

    bootstrap: str
    tmp: Path
    name: str
    env: dict[str, str] = field(default_factory=dict)
    workers: list[Worker] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return Settings(**{k[len("RISKFLOW_") :].lower(): v for k, v in self.env.items()})

    def start_worker(self, *args: str, extra_env: dict[str, str] | None = None) -> Worker:
        """A ``riskflow worker`` process. Before the first, the deployment's topics are created with
        their configured counts (as a deployment does, docs/operations.md): a test that produces
        before the worker has created them would otherwise have the broker auto-create the inputs
        with its own default count (Tansu: 4), which the worker then adopts."""
        if not self.workers:  # on the broker itself: the worker's address may be a proxy that is cut
            asyncio.run(create_topics(self.settings.model_copy(update={"kafka_bootstrap": self.bootstrap})))
        n = len(self.workers)
        log = self.tmp / f"worker-{n}.log"
        procs = int(args[args.index("--processes") + 1]) if "--processes" in args else 1
        port = free_port() if procs <= 1 else free_port_range(procs)
        env = dict(os.environ, **self.env, RISKFLOW_METRICS_PORT=str(port), **(extra_env or {}))
        env["RISKFLOW_DATA_DIR"] = str(self.tmp / f"data-{n}")
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "riskflow", "worker", *args], env=env, stdout=out, stderr=out
            )
        w = Worker(proc, log, port)
        self.workers.append(w)
        return w

    def produce(self, records: list[tuple[str, bytes | None, bytes]]) -> None:
        """Send (topic, key, value) records and wait until the broker has them."""

        async def go() -> None:
            p = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5)
            await p.start()
            try:
                for topic, key, value in records:
                    await p.send(topic, value, key=key)
                await p.flush()
            finally:
                await p.stop()

        asyncio.run(go())

    def consume(self, topic: str, *, min_count: int = 0, timeout: float = 60.0, settle: float = 3.0) -> list[bytes]:
        """Every value on ``topic`` from the start: waits until ``min_count`` arrived,
        then ``settle`` more seconds of quiet, so that extra (unexpected) messages show up too."""

        async def go() -> list[bytes]:
            c = AIOKafkaConsumer(
                topic,
                bootstrap_servers=self.bootstrap,
                group_id=None,
                auto_offset_reset="earliest",
                enable_auto_commit=False,
                fetch_max_wait_ms=100,
            )
            await c.start()
            got: list[bytes] = []
            deadline = time.monotonic() + timeout
            quiet_since = time.monotonic()
            try:
                while time.monotonic() < deadline:
                    batch = await c.getmany(timeout_ms=200)
                    n = sum(len(v) for v in batch.values())
                    for msgs in batch.values():
                        got.extend(m.value for m in msgs)
                    if n:
                        quiet_since = time.monotonic()
                    elif len(got) >= min_count and time.monotonic() - quiet_since >= settle:
                        break
            finally:
                await c.stop()
            return got

        return asyncio.run(go())

    def close(self) -> None:
        for w in self.workers:
            w.stop()


@pytest.fixture
def stack(broker: EmbeddedBroker, tmp_path: Path) -> Iterator[Stack]:
    n = next(_ids)
    name = f"t{n}-{os.getpid()}"
    env = {
        "RISKFLOW_KAFKA_BOOTSTRAP": broker.bootstrap,
        "RISKFLOW_APP_ID": f"riskflow-{name}",
        **prefixed_topics(name),  # no topic shared between tests (e.g. a pushed rule pack)
        "RISKFLOW_WEB_PORT": "0",
        "RISKFLOW_SESSION_TIMEOUT": "6",
        "RISKFLOW_LOG_LEVEL": "info",
    }
    s = Stack(broker.bootstrap, tmp_path, name, env)
    yield s
    s.close()
