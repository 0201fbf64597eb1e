"""Live rule packs: every worker follows the rules control topic and switches packs without restart.

``riskflow rules push FILE`` writes a pack (its YAML texts, JSON-wrapped) to
``RISKFLOW_TOPIC_RULES`` (one partition). Each worker reads that topic with
its own **group-less** consumer (``group_id=None``, partition assigned by
hand, from the beginning), so every worker sees every push — a Faust agent
in the app's consumer group would hand each message to one worker only.

At start-up the worker reads the topic until a fetch comes back empty
(not "to the end offset": the embedded broker reports end offsets short,
docs/operations.md, "Broker notes") and only then lets the detection agent process its
first batch, so a restarted worker starts on the latest pushed pack. After
that a background task keeps following the topic; the agent picks up a new
pack between two batches (one attribute check per batch), swapping the
engine of its :class:`~detectors.pipeline.BatchProcessor`. A message that is
not a valid pack is logged (one line), counted in ``riskflow_rule_pack_rejected_total{reason}``
(:data:`REJECT_REASONS`) and ignored: the running pack stays. "Not valid" is anything
:func:`parse_pushed` refuses (larger than :data:`MAX_MESSAGE_BYTES`, not the message's shape,
a pack :func:`~detectors.rules.load_texts` rejects: too large or deep, non-finite numbers, no
rules without ``allow_empty``) and any pack whose engine cannot be built; no exception of a
message's making leaves this module, so a bad push can neither stop a worker nor make it
crash again on every restart (workers re-read the topic from the start).

The consumer is built from ``riskflow.core.kafka.client_config`` (the ``client``
argument), so SASL/SCRAM and TLS settings reach it as they reach the worker's own.

The same hook also rebuilds the processor's event-time lanes (watermarks and
deadline index of timed rules) from the entity-state table after start-up,
after each rebalance, and after a pack switch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import msgspec
from aiokafka import AIOKafkaConsumer, TopicPartition

from detectors.engine import EntityState
from detectors.pipeline import BatchProcessor
from detectors.rules import RuleError, RulePack, load_texts
from riskflow.core.metrics import RULE_PACK_REJECT_REASONS, Metrics

log = logging.getLogger(__name__)

PACK_SCHEMA = "riskflow.rulepack/v1"
#: Largest control message a worker decodes: the broker's default limit (1 MB); a pack of
#: :data:`~detectors.rules.MAX_PACK_BYTES` of YAML encodes well under it.
MAX_MESSAGE_BYTES = 1_000_000

#: Why a pushed message was refused (the fixed label set of ``riskflow_rule_pack_rejected_total``):
#: not JSON or not the message's shape; a schema other than ``riskflow.rulepack/v1``; rules that
#: fail validation (:class:`~detectors.rules.RuleError`: file, rule id and field are logged).
REJECT_REASONS = RULE_PACK_REJECT_REASONS


class PushedPack(msgspec.Struct, kw_only=True):
    """The control-topic message: a pack's YAML files as loaded by ``riskflow rules push``."""

    schema: str = PACK_SCHEMA
    version: str
    files: dict[str, str]
    pushed_at: str = ""
    #: ``riskflow rules push --allow-empty``: a pack without rules is meant (detection by rules off).
    allow_empty: bool = False


def encode_pack(pack: RulePack, pushed_at: str = "", *, allow_empty: bool = False) -> bytes:
    """>>> from detectors.rules import load_pack
    >>> decode_pack(encode_pack(load_pack())).files.keys() == load_pack().files.keys()
    True
    """
    return msgspec.json.encode(
        PushedPack(version=pack.version, files=pack.files, pushed_at=pushed_at, allow_empty=allow_empty)
    )


def decode_pack(data: bytes) -> PushedPack:
    msg = msgspec.json.decode(data, type=PushedPack)
    if msg.schema != PACK_SCHEMA:
        raise ValueError(f"unsupported schema {msg.schema!r}")
    return msg


class PackRejected(ValueError):
    """A control message that is not a valid rule pack; ``reason`` is one of :data:`REJECT_REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def parse_pushed(data: bytes, constants: Mapping[str, float] | None = None) -> RulePack:
    """The rule pack in one control message, or :class:`PackRejected` saying why not.

    >>> from detectors.rules import load_pack
    >>> parse_pushed(encode_pack(load_pack())).version == load_pack().version
    True
    >>> for bad in (b"{nope", b'{"schema": "x/v9", "version": "1", "files": {}}'):
    ...     try:
    ...         parse_pushed(bad)
    ...     except PackRejected as exc:
    ...         print(exc.reason)
    malformed
    unsupported_schema
    """
    if len(data) > MAX_MESSAGE_BYTES:
        raise PackRejected("malformed", f"message of {len(data)} bytes; at most {MAX_MESSAGE_BYTES} are read")
    try:
        msg = decode_pack(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise PackRejected("malformed", str(exc)) from None
    except ValueError as exc:
        raise PackRejected("unsupported_schema", str(exc)) from None
    except Exception as exc:  # e.g. RecursionError on deeply nested JSON
        raise PackRejected("malformed", f"{type(exc).__name__}: {exc}") from None
    try:
        return load_texts(msg.files, constants, allow_empty=msg.allow_empty)
    except RuleError as exc:
        raise PackRejected("invalid_rules", str(exc)) from None
    except Exception as exc:  # load_texts turns every failure into RuleError; this is the backstop
        raise PackRejected("invalid_rules", f"{type(exc).__name__}: {exc}") from None


class RuleControl:
    """Follows the control topic; applies new packs and lane rebuilds between batches."""

    def __init__(
        self,
        client: Mapping[str, Any],
        topic: str,
        processor: BatchProcessor,
        make_engine: Callable[[RulePack], Any],
        states: Callable[[], Iterable[EntityState]],
        *,
        constants: dict[str, float] | None = None,
        on_switch: Callable[[RulePack], None] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        """``client``: aiokafka keyword arguments (``riskflow.core.kafka.client_config``: bootstrap, SASL, TLS)."""
        self.client, self.topic = dict(client), topic
        self.metrics = metrics
        self.processor = processor
        self.make_engine = make_engine
        self.states = states
        self.constants = constants or {}
        self.on_switch = on_switch
        self.ready = asyncio.Event()
        self.pending: RulePack | None = None
        self.rebuild = True  # start-up: lanes come from the recovered table

    def load(self, value: bytes | None, offset: int = -1) -> RulePack | None:
        """The pack in one control message, or None (logged and counted) if it is not a valid one."""
        if not value:
            return None
        try:
            return parse_pushed(value, self.constants)
        except PackRejected as exc:
            self.reject(exc.reason, str(exc), offset)
        except Exception as exc:  # parse_pushed should have said why; whatever it missed is a rejection
            self.reject("invalid_rules", f"invalid_rules: {type(exc).__name__}: {exc}", offset)
        return None

    def reject(self, reason: str, detail: str, offset: int) -> None:
        """One log line and one count per refused pack; the running pack stays."""
        detail = " ".join(detail.split())[:1000]
        log.error(
            "rules topic %s offset %d: rule pack rejected, the running pack stays: %s", self.topic, offset, detail
        )
        if self.metrics is not None:
            self.metrics.rule_pack_rejected.labels(reason=reason).inc()

    def consumer(self) -> AIOKafkaConsumer:
        """The group-less consumer of the control topic (not started)."""
        return AIOKafkaConsumer(
            **self.client,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=200,
        )

    async def run(self) -> None:
        """Catch up with the control topic, release the agent, then follow it forever."""
        consumer = self.consumer()
        await consumer.start()
        try:
            consumer.assign([TopicPartition(self.topic, 0)])
            await consumer.seek_to_beginning()
            latest: RulePack | None = None
            while True:  # catch up: until a fetch returns nothing
                batch = await consumer.getmany(timeout_ms=1000)
                records = [m for msgs in batch.values() for m in msgs]
                if not records:
                    break
                for m in records:
                    latest = self.load(m.value, m.offset) or latest
            if latest is not None:
                self.pending = latest
            self.ready.set()
            while True:
                batch = await consumer.getmany(timeout_ms=1000)
                for msgs in batch.values():
                    for m in msgs:
                        pack = self.load(m.value, m.offset)
                        if pack is not None:
                            log.info("rule pack %s received (%d rules)", pack.version, len(pack.detectors))
                            self.pending = pack
        finally:
            self.ready.set()
            await consumer.stop()

    async def before_batch(self) -> None:
        """Called by the agent before each batch: wait for start-up, switch packs, rebuild lanes."""
        if not self.ready.is_set():
            await self.ready.wait()
        pack, self.pending = self.pending, None
        if pack is not None and pack.version != self.processor.engine.pack_version:
            try:
                engine = self.make_engine(pack)
            except Exception as exc:  # a pack that validates but cannot run: refuse it, keep running
                self.reject("invalid_rules", f"invalid_rules: engine not built: {type(exc).__name__}: {exc}", -1)
            else:
                self.processor.engine = engine
                self.rebuild = True
                log.info("switched to rule pack %s (%d rules)", pack.version, len(pack.detectors))
                if self.on_switch is not None:
                    self.on_switch(pack)
        if self.rebuild:
            self.rebuild = False
            self.processor.rebuild(self.states())
