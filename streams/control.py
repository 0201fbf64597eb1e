"""Control messages every worker reads (topic ``RISKFLOW_TOPIC_CONTROL``): model reloads.

A control message must reach *every* worker, whereas a Faust agent would share
the topic's partitions across the group; so each worker reads the control
topic with its own group-less consumer, from the end (a worker that starts
later loads the newest model at start-up anyway). Message:
``{"command": "reload_model"}`` (the newest artefact under
``RISKFLOW_MODEL_DIR``) or ``{"command": "reload_model", "path": "..."}`` (an
artefact, relative to ``RISKFLOW_MODEL_DIR`` or absolute, that must resolve to
a place inside it: symlinks and ``..`` are followed first). With
``RISKFLOW_MODEL_KEY`` set only artefacts whose HMAC verifies load; unset, an
artefact is checked against its content hash only and a warning says so (the
default keeps the demo and older artefacts working; set the key in production).
The swap happens on the event loop between two batches, so a batch is scored
by one model. Any message is either applied or ignored with one log line and a
count (``riskflow_control_messages_ignored_total{reason}``, or
``riskflow_model_reloads_total{reason}`` for a model that was not loaded): no
message can stop the control task. The consumer is built from
``riskflow.core.kafka.client_config`` (SASL/SCRAM, TLS).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition

from detectors.anomaly import PeerGroupDetector
from riskflow.core.metrics import Metrics
from riskflow.core.models import ModelRefused, PeerModel, load_model

log = logging.getLogger(__name__)

#: Largest control message read; a reload command is a few dozen bytes.
MAX_CONTROL_BYTES = 64 * 1024


def load_into(
    det: PeerGroupDetector,
    path: Path,
    metrics: Metrics | None,
    key: bytes | None = None,
    root: Path | None = None,
) -> PeerModel | None:
    """Load the model at ``path`` (a directory of artefacts or one artefact, inside ``root``,
    by default ``path`` itself) into ``det``; ``key``: the artefact's HMAC must verify with it."""
    try:
        model = load_model(path, key=key, root=root if root is not None else path)
    except ModelRefused as exc:
        log.error("model refused, the loaded model stays: %s", exc)
        if metrics is not None:
            metrics.model_reloads.labels(reason="refused").inc()
        return None
    except Exception as exc:  # load_model says ModelError; anything else is no reason to stop either
        log.warning("model not loaded from %s: %s", path, " ".join(str(exc).split())[:500])
        if metrics is not None:
            metrics.model_reloads.labels(reason="load_failed").inc()
        return None
    det.set_model(model)
    if key is None:
        log.warning("peer-group model %s loaded unauthenticated: RISKFLOW_MODEL_KEY is not set", model.version)
    log.info("peer-group model %s loaded (%s)", model.version, ", ".join(model.kinds))
    if metrics is not None:
        metrics.model_reloads.labels(reason="loaded").inc()
        metrics.model.info({"version": model.version})
    return model


def _ignored(reason: str, why: str, metrics: Metrics | None) -> str:
    if metrics is not None:
        metrics.control_ignored.labels(reason=reason).inc()
    return f"ignored: {why}"


def apply_control(
    data: bytes,
    det: PeerGroupDetector,
    model_dir: Path | None,
    metrics: Metrics | None,
    key: bytes | None = None,
) -> str:
    """Apply one control message; returns what was done (for logs and tests). Never raises."""
    if len(data) > MAX_CONTROL_BYTES:
        return _ignored("too_large", f"message of {len(data)} bytes (at most {MAX_CONTROL_BYTES})", metrics)
    try:
        msg: Any = json.loads(data)
    except Exception:  # not UTF-8, not JSON, or nested deeper than the parser's recursion limit
        return _ignored("malformed", "not JSON", metrics)
    if not isinstance(msg, dict):
        return _ignored("malformed", "not a JSON object", metrics)
    if msg.get("command") != "reload_model":
        return _ignored("unknown_command", "unknown command", metrics)
    extra = sorted(str(k) for k in set(msg) - {"command", "path"})
    if extra:
        return _ignored("malformed", f"unknown field {extra[0][:80]!r}", metrics)
    raw = msg.get("path")
    if raw is not None and (not isinstance(raw, str) or not raw or "\0" in raw):
        return _ignored("malformed", "path must be a non-empty string", metrics)
    if model_dir is None:
        return _ignored("no_model_dir", "no model directory (set RISKFLOW_MODEL_DIR)", metrics)
    # An absolute path replaces model_dir here; load_into then refuses it unless it lies inside.
    model = load_into(det, model_dir / raw if raw else model_dir, metrics, key, root=model_dir)
    return f"loaded {model.version}" if model else "error"


def control_consumer(client: Mapping[str, Any]) -> AIOKafkaConsumer:
    """The group-less consumer of the control topic (not started); ``client``: aiokafka
    keyword arguments from ``riskflow.core.kafka.client_config`` (bootstrap, SASL, TLS)."""
    return AIOKafkaConsumer(**client, group_id=None, enable_auto_commit=False, fetch_max_wait_ms=200)


def wire_control(
    app: faust.App,
    client: Mapping[str, Any],
    topic: str,
    det: PeerGroupDetector,
    model_dir: Path | None,
    metrics: Metrics | None,
    key: bytes | None = None,
) -> Callable[[], Awaitable[None]]:
    """Start following the control topic as an app task (returned, for tests); ``key``: see
    :func:`load_into`."""
    client = dict(client)

    async def control() -> None:
        consumer = control_consumer(client)
        await consumer.start()
        try:
            parts = None
            while not parts:
                parts = consumer.partitions_for_topic(topic)
                if not parts:
                    await consumer.force_metadata_update()
                    await asyncio.sleep(1.0)
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            consumer.assign(tps)
            await consumer.seek_to_end(*tps)
            while True:
                batch = await consumer.getmany(timeout_ms=1000)
                for msgs in batch.values():
                    for m in msgs:
                        try:
                            done = apply_control(m.value or b"", det, model_dir, metrics, key)
                        except Exception as exc:  # apply_control never raises; if it did, skip the message
                            done = _ignored("malformed", f"{type(exc).__name__}", metrics)
                        log.info("control message at offset %d: %s", m.offset, done)
        except asyncio.CancelledError:
            raise
        except Exception:  # a broken control channel must not stop detection
            log.exception("control consumer stopped")
        finally:
            await consumer.stop()

    app.task(control)
    return control
