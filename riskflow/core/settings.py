"""RiskFlow's one settings object. Only entry points (CLI, worker, demo) read it.

Every field is read from an environment variable ``RISKFLOW_<FIELD>`` (upper
case); docs/operations.md's configuration table lists them all.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


class Settings(BaseSettings):
    """Immutable runtime configuration.

    >>> Settings(kafka_bootstrap="k1:9092").kafka_bootstrap
    'k1:9092'
    """

    model_config = SettingsConfigDict(env_prefix="RISKFLOW_", frozen=True, extra="ignore")

    kafka_bootstrap: str | None = Field(
        None,
        description="RISKFLOW_KAFKA_BOOTSTRAP: host:port[,host:port] of the Kafka cluster. "
        "Unset: `riskflow demo` starts the embedded Tansu broker on a free loopback port.",
    )
    # Kafka security (see docs/operations.md, "Configuration"). Every Kafka client
    # RiskFlow creates (Faust's consumer/producer, admin, replay and recovery
    # clients) is configured from these through riskflow.core.kafka.client_config.
    kafka_security_protocol: str = Field(
        "PLAINTEXT",
        pattern="^(PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL)$",
        description="RISKFLOW_KAFKA_SECURITY_PROTOCOL: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.",
    )
    kafka_sasl_mechanism: str = Field(
        "SCRAM-SHA-512",
        pattern="^(SCRAM-SHA-256|SCRAM-SHA-512|PLAIN)$",
        description="RISKFLOW_KAFKA_SASL_MECHANISM: SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN (SASL_* protocols only).",
    )
    kafka_sasl_username: str | None = Field(None, description="RISKFLOW_KAFKA_SASL_USERNAME: SASL user.")
    kafka_sasl_password: SecretStr | None = Field(
        None, description="RISKFLOW_KAFKA_SASL_PASSWORD: SASL password (never logged; shown as '**********')."
    )
    kafka_ssl_cafile: Path | None = Field(
        None, description="RISKFLOW_KAFKA_SSL_CAFILE: CA bundle to verify the brokers (default: system CAs)."
    )
    kafka_ssl_certfile: Path | None = Field(
        None, description="RISKFLOW_KAFKA_SSL_CERTFILE: client certificate for mutual TLS."
    )
    kafka_ssl_keyfile: Path | None = Field(
        None, description="RISKFLOW_KAFKA_SSL_KEYFILE: key of the client certificate."
    )
    kafka_ssl_check_hostname: bool = Field(
        True, description="RISKFLOW_KAFKA_SSL_CHECK_HOSTNAME: verify the broker's host name against its certificate."
    )
    app_id: str = Field("riskflow", description="RISKFLOW_APP_ID: Faust app id = consumer group and changelog prefix.")
    topic_institution_events: str = Field(
        "riskflow.institution-events", description="RISKFLOW_TOPIC_INSTITUTION_EVENTS: input topic, institutions."
    )
    topic_fund_events: str = Field(
        "riskflow.fund-events", description="RISKFLOW_TOPIC_FUND_EVENTS: input topic, private fund managers and funds."
    )
    topic_alerts: str = Field("riskflow.alerts", description="RISKFLOW_TOPIC_ALERTS: output topic of alerts.")
    topic_risk_links: str = Field(
        "riskflow.risk-links",
        description="RISKFLOW_TOPIC_RISK_LINKS: internal topic of linked-entity contagion messages "
        "(keyed by entity id, as many partitions as the inputs).",
    )
    topic_rules: str = Field(
        "riskflow.rules",
        description="RISKFLOW_TOPIC_RULES: control topic of rule packs (`riskflow rules push`); "
        "every worker follows it.",
    )
    topic_shadow_alerts: str = Field(
        "riskflow.alerts-shadow",
        description="RISKFLOW_TOPIC_SHADOW_ALERTS: alerts of rules in shadow mode (never on the officers' topic).",
    )
    lpr_1y: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="RISKFLOW_LPR_1Y: one-year LPR as a fraction (e.g. 0.03) for rules citing it; "
        "unset: the pack's value.",
    )
    topic_control: str = Field(
        "riskflow.control",
        description="RISKFLOW_TOPIC_CONTROL: control messages every worker reads, e.g. "
        '`{"command": "reload_model"}` to load the newest model from RISKFLOW_MODEL_DIR.',
    )
    topic_deadletter: str = Field(
        "riskflow.deadletter", description="RISKFLOW_TOPIC_DEADLETTER: rejected messages with their reason."
    )
    topic_late: str = Field(
        "riskflow.late",
        description="RISKFLOW_TOPIC_LATE: late-event ledger: events beyond the allowed lateness, with the "
        "rules they would have touched and what was re-evaluated (detectors/lateness.py).",
    )
    allowed_lateness: float = Field(
        7 * 86400.0,
        ge=0,
        description="RISKFLOW_ALLOWED_LATENESS: event-time seconds an event may trail its entity's latest "
        "event time and still be processed as usual; older events go to the late-event ledger "
        "(re-evaluated where the rule state allows). Default 7 days.",
    )
    max_event_skew: float = Field(
        7 * 86400.0,
        gt=0,
        description="RISKFLOW_MAX_EVENT_SKEW: event-time seconds an event may run ahead of its input "
        "partition's event time and still move it; an event further ahead is processed for its own "
        "entity, ledgered on the late-event topic (ahead: true), and moves the partition's time only "
        "once a second entity runs ahead with no event in time between them, so that one producer's "
        "clock cannot fire every other entity's deadlines. Default 7 days.",
    )
    partitions: int = Field(
        12,
        ge=1,
        description="RISKFLOW_PARTITIONS: partitions of the input topics and tables when RiskFlow creates them; "
        "a worker uses the count existing input topics have. 12 divides evenly among 1, 2, 3, 4, 6 and 12 worker "
        'processes, so a deployment grows to 12 without re-partitioning (docs/operations.md, "Scaling out").',
    )
    replication_factor: int = Field(1, ge=1, description="RISKFLOW_REPLICATION_FACTOR: of topics RiskFlow creates.")
    metrics_port: int = Field(
        9464, ge=0, le=65535, description="RISKFLOW_METRICS_PORT: port of the Prometheus /metrics endpoint (0: none)."
    )
    metrics_host: str = Field("127.0.0.1", description="RISKFLOW_METRICS_HOST: address /metrics listens on.")
    web_port: int = Field(6066, ge=0, le=65535, description="RISKFLOW_WEB_PORT: Faust's web server port (0: off).")
    web_host: str = Field(
        "127.0.0.1", description="RISKFLOW_WEB_HOST: address Faust's web server listens on (loopback by default)."
    )
    batch_size: int = Field(
        5000,
        ge=1,
        description="RISKFLOW_BATCH_SIZE: most events taken from the stream (one fetch) and processed as one batch. "
        "A batch is only as large as what is waiting, so this bounds a backlog's batches, not a steady stream's; "
        "5,000 rather than 1,000 amortises the per-batch hand-off from Faust's consumer thread and the alert "
        "delivery round trip (bench/pipeline.py: worker 30.6k -> 36.6k ev/s, steady-state latency unchanged).",
    )
    session_timeout: float = Field(
        10.0,
        gt=0,
        description="RISKFLOW_SESSION_TIMEOUT: group session timeout, s (Tansu waits half of it on join).",
    )
    fetch_max_wait: float = Field(
        0.05, gt=0, description="RISKFLOW_FETCH_MAX_WAIT: longest a fetch may wait at the broker, seconds."
    )
    state_cache: int = Field(
        10_000,
        ge=0,
        description="RISKFLOW_STATE_CACHE: decoded entity states the worker keeps in memory in front of the "
        "table's msgpack bytes (~5 KB each; dropped on a rebalance; 0: off; streams/statecache.py).",
    )
    state_flush_interval: float = Field(
        1.0,
        ge=0,
        description="RISKFLOW_STATE_FLUSH_INTERVAL: seconds a changed entity state may stay in memory before it "
        "is written to the changelog (one record per changed entity per flush); a batch's offsets are "
        "committed only after the flush that covers it. 0: every batch (streams/statecache.py).",
    )
    state_flush_max: int = Field(
        10_000,
        ge=1,
        description="RISKFLOW_STATE_FLUSH_MAX: changed entity states held in memory at most (~5 KB each); "
        "a batch that leaves more flushes at once.",
    )
    max_fetch_bytes: int = Field(
        1 << 20,
        ge=1024,
        description="RISKFLOW_MAX_FETCH_BYTES: most bytes fetched per partition per request (bounds the worker's "
        "read-ahead memory; table recovery reads in steps of this size).",
    )
    max_event_bytes: int = Field(65536, ge=256, description="RISKFLOW_MAX_EVENT_BYTES: larger messages are rejected.")
    max_future_seconds: float = Field(
        86400.0, ge=0, description="RISKFLOW_MAX_FUTURE_SECONDS: event_time this far beyond the wall clock is rejected."
    )
    dedup_window: int = Field(
        64, ge=0, description="RISKFLOW_DEDUP_WINDOW: recent event ids remembered per entity to drop re-sent events."
    )
    model_dir: Path | None = Field(
        None,
        description="RISKFLOW_MODEL_DIR: directory of peer-group model artefacts (`riskflow train --out`); "
        "the worker loads the newest at start-up and on a reload control message. Unset: no peer model.",
    )
    model_key: SecretStr | None = Field(
        None,
        description="RISKFLOW_MODEL_KEY: secret (16+ characters) for model artefacts' HMAC-SHA256: "
        "`riskflow train` signs with it, and a worker with it set loads only artefacts whose signature "
        "verifies. Unset: artefacts are checked against their content hash only (a warning is logged).",
    )

    @field_validator("model_key")
    @classmethod
    def _model_key_long_enough(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and len(v.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (a random secret)")
        return v

    risk_config: Path | None = Field(
        None,
        description="RISKFLOW_RISK_CONFIG: YAML file of risk-index weights, decay, level thresholds and "
        "episode settings (default: detectors/risk/risk.yaml).",
    )
    data_dir: Path = Field(Path(".riskflow"), description="RISKFLOW_DATA_DIR: local state (Faust data, alert store).")
    log_level: str = Field("info", description="RISKFLOW_LOG_LEVEL: debug, info, warning or error.")
    # Alert store and live feed (riskflow/store, riskflow/feed).
    store_url: str | None = Field(
        None,
        description="RISKFLOW_STORE_URL: alert store, `postgresql://user:pass@host/db` or a SQLite file path. "
        "Unset: SQLite file `alerts.sqlite3` in the data dir.",
    )
    store_group: str | None = Field(
        None, description="RISKFLOW_STORE_GROUP: consumer group of the alert sink (default: `<app_id>-alert-store`)."
    )
    feed_host: str = Field("127.0.0.1", description="RISKFLOW_FEED_HOST: address the officers' feed listens on.")
    feed_port: int = Field(8080, ge=0, le=65535, description="RISKFLOW_FEED_PORT: port of the feed and its JSON API.")
    feed_tokens: str = Field(
        "",
        description="RISKFLOW_FEED_TOKENS: API tokens, comma-separated `token:role:name` (role viewer, officer "
        "or admin). Unset: `riskflow feed` makes one admin token per run and prints it once on the terminal "
        "(never logged).",
    )
    feed_auth_burst: int = Field(
        10,
        ge=1,
        description="RISKFLOW_FEED_AUTH_BURST: wrong tokens a client address may send at once before the feed "
        "answers it 429 (back-off) without checking its token.",
    )
    feed_auth_rate: float = Field(
        1.0,
        gt=0,
        description="RISKFLOW_FEED_AUTH_RATE: wrong tokens per second an address may send after its burst (the "
        "most guesses per second it gets).",
    )
    feed_max_streams_per_token: int = Field(
        8, ge=1, description="RISKFLOW_FEED_MAX_STREAMS_PER_TOKEN: live streams one token may hold open (503 above)."
    )
    feed_max_streams: int = Field(
        200, ge=1, description="RISKFLOW_FEED_MAX_STREAMS: live streams the feed holds open in all (503 above)."
    )
    feed_max_note_bytes: int = Field(
        4096,
        ge=64,
        description="RISKFLOW_FEED_MAX_NOTE_BYTES: longest note, assignee or reason of an action, in UTF-8 bytes "
        "(413 above; nothing is written).",
    )
    snooze_max_days: float = Field(
        30.0,
        gt=0,
        description="RISKFLOW_SNOOZE_MAX_DAYS: longest snooze an officer may set (nothing is hidden forever).",
    )

    @classmethod
    def defaults(cls, **overrides: object) -> Settings:
        """The shipped defaults with ``overrides``, the environment NOT read: what library code
        uses when its caller passes no settings (only entry points read the environment).

        >>> import os; os.environ["RISKFLOW_PARTITIONS"] = "7"
        >>> Settings().partitions, Settings.defaults().partitions, Settings.defaults(partitions=3).partitions
        (7, 12, 3)
        >>> del os.environ["RISKFLOW_PARTITIONS"]
        """
        return _ShippedDefaults(**overrides)  # type: ignore[arg-type]

    def store_target(self) -> str:
        """Where the alert store is: ``store_url`` or the SQLite file in ``data_dir``."""
        return self.store_url or str(self.data_dir / "alerts.sqlite3")

    def store_group_id(self) -> str:
        return self.store_group or f"{self.app_id}-alert-store"


class _ShippedDefaults(Settings):
    """:class:`Settings` from its arguments only (no environment, no dotenv file)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def prefixed_topics(prefix: str) -> dict[str, str]:
    """``RISKFLOW_TOPIC_*`` variables that put every topic of a deployment under
    ``prefix`` (e.g. several deployments, or test runs, sharing one cluster).
    Derived from the settings themselves, so a topic added later is covered.

    >>> prefixed_topics("t1")["RISKFLOW_TOPIC_RULES"]
    't1.rules'
    """
    return {
        f"RISKFLOW_{name.upper()}": f"{prefix}.{default.removeprefix('riskflow.')}"
        for name, info in Settings.model_fields.items()
        if name.startswith("topic_") and isinstance(default := info.default, str)
    }
