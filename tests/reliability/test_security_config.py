"""Kafka SASL/SCRAM and TLS settings reach every Kafka client RiskFlow creates.

Unit tests: clients are constructed, never connected (no broker with SASL
here); what is checked is the configuration each client object ends up with.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import CollectorRegistry

import riskflow.core.kafka as rk
from detectors.rules import load_pack
from riskflow.core.settings import Settings
from streams.tables import recovery_consumer
from streams.topology import build_topology

SECRET = "s3cr3t-Pa55word"


def sasl_ssl(**kw: Any) -> Settings:
    return Settings(
        kafka_bootstrap="kafka-1:9093",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-256",
        kafka_sasl_username="riskflow-worker",
        kafka_sasl_password=SECRET,
        kafka_ssl_check_hostname=False,
        **kw,
    )


def auth_of(client: Any) -> dict[str, Any]:
    inner = getattr(client, "client", None) or client._client
    return {
        "protocol": inner._security_protocol,
        "mechanism": inner._sasl_mechanism,
        "user": inner._sasl_plain_username,
        "password": inner._sasl_plain_password,
        "ssl": inner._ssl_context,
    }


WANT = {"protocol": "SASL_SSL", "mechanism": "SCRAM-SHA-256", "user": "riskflow-worker", "password": SECRET}


def check(client: Any) -> None:
    got = auth_of(client)
    assert {k: got[k] for k in WANT} == WANT
    assert isinstance(got["ssl"], ssl.SSLContext) and got["ssl"].check_hostname is False


def test_settings_from_environment_and_secret_is_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RISKFLOW_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("RISKFLOW_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("RISKFLOW_KAFKA_SASL_USERNAME", "rf")
    monkeypatch.setenv("RISKFLOW_KAFKA_SASL_PASSWORD", SECRET)
    s = Settings()
    assert (s.kafka_security_protocol, s.kafka_sasl_mechanism, s.kafka_sasl_username) == (
        "SASL_SSL",
        "SCRAM-SHA-512",
        "rf",
    )
    assert SECRET not in repr(s) and SECRET not in str(s) and SECRET not in s.model_dump_json()
    with pytest.raises(ValueError):
        Settings(kafka_security_protocol="SASL_SSLv2")
    with pytest.raises(ValueError):
        Settings(kafka_sasl_mechanism="GSSAPI")


def test_plaintext_is_the_default_and_sasl_needs_credentials() -> None:
    cfg = rk.client_config(Settings(kafka_bootstrap="k:9092"))
    assert cfg == {"bootstrap_servers": "k:9092", "security_protocol": "PLAINTEXT"}
    assert rk.faust_credentials(Settings(kafka_bootstrap="k:9092")) is None
    with pytest.raises(ValueError, match="SASL_USERNAME"):
        rk.client_config(Settings(kafka_bootstrap="k:9092", kafka_security_protocol="SASL_PLAINTEXT"))


def test_tls_only_gets_an_ssl_context_and_no_sasl() -> None:
    s = Settings(kafka_bootstrap="k:9093", kafka_security_protocol="SSL")
    cfg = rk.client_config(s)
    assert cfg["security_protocol"] == "SSL" and isinstance(cfg["ssl_context"], ssl.SSLContext)
    assert "sasl_mechanism" not in cfg
    assert cfg["ssl_context"].verify_mode == ssl.CERT_REQUIRED and cfg["ssl_context"].check_hostname


def test_plain_aiokafka_clients_get_sasl_and_tls() -> None:
    async def go() -> None:
        cfg = rk.client_config(sasl_ssl())
        p, c = AIOKafkaProducer(**cfg), AIOKafkaConsumer(**cfg)
        a = AIOKafkaAdminClient(**cfg)
        try:
            for client in (p, c, a):
                check(client)
        finally:
            await p.stop()
            await c.stop()
            await a.close()

    asyncio.run(go())


def test_recovery_consumer_gets_sasl_and_tls() -> None:
    async def go() -> None:
        c = recovery_consumer(sasl_ssl())
        try:
            check(c)
        finally:
            await c.stop()

    asyncio.run(go())


def test_admin_client_of_ensure_topics_gets_sasl_and_tls(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []

    class Capture(AIOKafkaAdminClient):
        def __init__(self, **kw: Any) -> None:
            super().__init__(**kw)
            seen.append(self)

        async def start(self) -> None:
            raise RuntimeError("stop here: only the configuration is under test")

    monkeypatch.setattr(rk, "AIOKafkaAdminClient", Capture)
    with pytest.raises(RuntimeError, match="stop here"):
        asyncio.run(rk.ensure_topics(sasl_ssl(), retries=0))
    check(seen[0])


def test_faust_worker_consumer_and_producer_get_sasl_and_tls(tmp_path: Any) -> None:
    """The Faust app's own producer and group consumer (what the worker runs)."""

    async def go() -> None:
        topo = build_topology(sasl_ssl(data_dir=tmp_path, web_port=0), load_pack(), CollectorRegistry(), None)
        app = topo.app
        producer = app.producer._new_producer()
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        try:
            check(producer)
            check(consumer)
        finally:
            await producer.stop()
            await consumer.stop()

    asyncio.run(go())


def test_rule_and_model_control_consumers_get_sasl_and_tls(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's group-less consumers of the rules topic and of the model control topic."""
    import streams.control as sc
    import streams.topology as st

    tasks: list[Any] = []
    seen: list[Any] = []

    def capture_task(*args: Any) -> Any:
        tasks.append(sc.wire_control(*args))
        return tasks[-1]

    class Capture(AIOKafkaConsumer):
        def __init__(self, **kw: Any) -> None:
            super().__init__(**kw)
            seen.append(self)

        async def start(self) -> None:
            raise RuntimeError("stop here: only the configuration is under test")

    monkeypatch.setattr(st, "wire_control", capture_task)
    monkeypatch.setattr(sc, "AIOKafkaConsumer", Capture)

    async def go() -> None:
        # A model directory opts the worker into the peer-group model, and so into its control consumer.
        models = tmp_path / "models"
        models.mkdir()
        settings = sasl_ssl(data_dir=tmp_path, web_port=0, model_dir=models)
        topo = build_topology(settings, load_pack(), CollectorRegistry(), None)
        assert topo.control is not None
        rules = topo.control.consumer()
        try:
            check(rules)
        finally:
            await rules.stop()
        (task,) = tasks  # the model control task, as the app would run it
        with pytest.raises(RuntimeError, match="stop here"):
            await task()
        check(seen[0])
        await seen[0].stop()

    asyncio.run(go())


def test_rules_push_producer_gets_sasl_and_tls(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    import aiokafka

    from riskflow.commands.rules import run_push

    seen: list[Any] = []

    class Capture(AIOKafkaProducer):
        def __init__(self, **kw: Any) -> None:
            super().__init__(**kw)
            seen.append(self)

        async def start(self) -> None:
            await self.stop()  # never started: closes the client, no connection is made
            raise RuntimeError("stop here: only the configuration is under test")

    async def no_topics(settings: Settings) -> None:
        return None

    monkeypatch.setattr(aiokafka, "AIOKafkaProducer", Capture)
    monkeypatch.setattr(rk, "ensure_topics", no_topics)
    with pytest.raises(RuntimeError, match="stop here"):
        run_push(argparse.Namespace(path=None), sasl_ssl())
    check(seen[0])
