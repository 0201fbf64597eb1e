"""Kafka helpers for entry points: client security config and topic creation.

Every Kafka client RiskFlow creates takes its connection and security options
from :func:`client_config` (aiokafka keyword arguments) or, for Faust,
:func:`faust_credentials`, so SASL/SCRAM and TLS configured once in
:class:`~riskflow.core.settings.Settings` reach them all.

>>> cfg = client_config(Settings(kafka_bootstrap="k:9093", kafka_security_protocol="SASL_SSL",
...                              kafka_sasl_username="rf", kafka_sasl_password="pw"))
>>> cfg["security_protocol"], cfg["sasl_mechanism"], cfg["sasl_plain_username"]
('SASL_SSL', 'SCRAM-SHA-512', 'rf')
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Iterator
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError

from riskflow.core.errors import CommandError
from riskflow.core.settings import Settings

log = logging.getLogger(__name__)


#: What to do when no broker is configured or reachable.
LOCAL_BROKER_HINT = "`riskflow broker` starts a local one (then RISKFLOW_KAFKA_BOOTSTRAP=127.0.0.1:9092)"


class KafkaUnreachable(CommandError):
    """No Kafka to talk to: not configured, or not answering. The message is one line that
    says which address was tried and how to get a broker."""


def require_bootstrap(settings: Settings) -> str:
    """``RISKFLOW_KAFKA_BOOTSTRAP``, or :class:`KafkaUnreachable` saying how to set one."""
    if not settings.kafka_bootstrap:
        raise KafkaUnreachable(f"set RISKFLOW_KAFKA_BOOTSTRAP to your Kafka cluster; {LOCAL_BROKER_HINT}")
    return settings.kafka_bootstrap


def unreachable_text(settings: Settings, exc: BaseException) -> str:
    why = "no broker answered" if isinstance(exc, (KafkaConnectionError, OSError)) else f"{type(exc).__name__}: {exc}"
    return (
        f"cannot reach Kafka at {settings.kafka_bootstrap} ({why}); check RISKFLOW_KAFKA_BOOTSTRAP, "
        f"or start a broker: {LOCAL_BROKER_HINT}"
    )


@contextlib.contextmanager
def _quiet_client_logs() -> Iterator[None]:
    """aiokafka logs each failed attempt at ERROR; during a reachability check the check's
    own one-line verdict replaces them."""
    logger = logging.getLogger("aiokafka")
    before = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(before)


async def check_reachable(settings: Settings) -> None:
    """Connect once (the client's own bootstrap attempts) and close; :class:`KafkaUnreachable`
    with a one-line reason when no broker answers, so a command fails with a sentence instead
    of a client's traceback."""
    require_bootstrap(settings)
    admin = AIOKafkaAdminClient(**client_config(settings))
    with _quiet_client_logs():
        try:
            await admin.start()
        except Exception as exc:
            raise KafkaUnreachable(unreachable_text(settings, exc)) from None
        finally:
            await admin.close()


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context for SSL / SASL_SSL protocols (``None`` for plaintext)."""
    if "SSL" not in settings.kafka_security_protocol:
        return None
    ctx = ssl.create_default_context(cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None)
    ctx.check_hostname = settings.kafka_ssl_check_hostname
    if settings.kafka_ssl_certfile:
        keyfile = str(settings.kafka_ssl_keyfile) if settings.kafka_ssl_keyfile else None
        ctx.load_cert_chain(str(settings.kafka_ssl_certfile), keyfile)
    return ctx


def client_config(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for any aiokafka client (producer, consumer, admin)."""
    if not settings.kafka_bootstrap:
        raise ValueError("RISKFLOW_KAFKA_BOOTSTRAP is not set")
    proto = settings.kafka_security_protocol
    cfg: dict[str, Any] = {"bootstrap_servers": settings.kafka_bootstrap, "security_protocol": proto}
    ctx = ssl_context(settings)
    if ctx is not None:
        cfg["ssl_context"] = ctx
    if proto.startswith("SASL_"):
        if not settings.kafka_sasl_username or settings.kafka_sasl_password is None:
            raise ValueError(f"{proto} needs RISKFLOW_KAFKA_SASL_USERNAME and RISKFLOW_KAFKA_SASL_PASSWORD")
        cfg["sasl_mechanism"] = settings.kafka_sasl_mechanism
        cfg["sasl_plain_username"] = settings.kafka_sasl_username
        cfg["sasl_plain_password"] = settings.kafka_sasl_password.get_secret_value()
    return cfg


def faust_credentials(settings: Settings) -> Any:
    """``broker_credentials`` for :class:`faust.App` (``None`` for plaintext)."""
    import faust

    cfg = client_config(settings)
    if "sasl_mechanism" in cfg:
        return faust.SASLCredentials(
            username=cfg["sasl_plain_username"],
            password=cfg["sasl_plain_password"],
            ssl_context=cfg.get("ssl_context"),
            mechanism=cfg["sasl_mechanism"],
        )
    if "ssl_context" in cfg:
        return faust.SSLCredentials(cfg["ssl_context"])
    return None


def topic_specs(settings: Settings) -> dict[str, int]:
    """Topic name -> partition count for every topic RiskFlow creates at start-up."""
    return {
        settings.topic_institution_events: settings.partitions,
        settings.topic_fund_events: settings.partitions,
        settings.topic_alerts: settings.partitions,
        settings.topic_risk_links: settings.partitions,
        settings.topic_deadletter: 1,
        settings.topic_late: 1,
        settings.topic_rules: 1,
        settings.topic_shadow_alerts: settings.partitions,
        settings.topic_control: 1,
    }


async def ensure_topics(settings: Settings, retries: int = 30, delay: float = 1.0, *, create: bool = True) -> None:
    """Create missing topics with the configured partition counts (idempotent).

    Retries with back-off while the broker is unreachable, logging each wait
    (``create=False``: only that wait, for a caller that looks at the topics first).
    """
    attempt = 0
    while True:
        admin = AIOKafkaAdminClient(**client_config(settings))
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            new = [
                NewTopic(name, n, settings.replication_factor)
                for name, n in topic_specs(settings).items()
                if name not in existing
            ]
            if new and create:
                await admin.create_topics(new)
                log.info("created topics %s", ", ".join(t.name for t in new))
            return
        except Exception as exc:
            attempt += 1
            if attempt > retries:
                if isinstance(exc, (KafkaConnectionError, OSError)):
                    raise KafkaUnreachable(unreachable_text(settings, exc)) from exc
                raise
            wait = min(delay * 2 ** min(attempt - 1, 4), 10.0)
            log.warning(
                "Kafka at %s not reachable (%s); retrying in %.1fs (no broker yet? %s)",
                settings.kafka_bootstrap,
                exc,
                wait,
                LOCAL_BROKER_HINT,
            )
            await asyncio.sleep(wait)
        finally:
            await admin.close()
