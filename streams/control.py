"""Control messages every worker reads (topic ``RISKFLOW_TOPIC_CONTROL``): model reloads.

A control message must reach *every* worker, whereas a Faust agent would share
the topic's partitions across the group; so each worker reads the control
topic with its own group-less consumer, from the end (a worker that starts
later loads the newest model at start-up anyway). Message:
``{"command": "reload_model"}`` (the newest artefact under
``RISKFLOW_MODEL_DIR``) or ``{"command": "reload_model", "path": "..."}``.
The swap happens on the event loop between two batches, so a batch is scored
by one model; a bad message or model is logged and counted, never fatal. The
consumer is built from ``riskflow.kafka.client_config`` (SASL/SCRAM, TLS).
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
from riskflow.metrics import Metrics
from riskflow.models import ModelError, PeerModel, load_model

log = logging.getLogger(__name__)


def load_into(det: PeerGroupDetector, path: Path, metrics: Metrics | None) -> PeerModel | None:
    """Load the model at ``path`` (a directory of artefacts or one artefact) into ``det``."""
    try:
        model = load_model(path)
    except (ModelError, OSError, ValueError, KeyError) as exc:
        log.warning("model not loaded from %s: %s", path, exc)
        if metrics is not None:
            metrics.model_reloads.labels(reason="load_failed").inc()
        return None
    det.set_model(model)
    log.info("peer-group model %s loaded (%s)", model.version, ", ".join(model.kinds))
    if metrics is not None:
        metrics.model_reloads.labels(reason="loaded").inc()
        metrics.model.info({"version": model.version})
    return model


def apply_control(data: bytes, det: PeerGroupDetector, model_dir: Path | None, metrics: Metrics | None) -> str:
    """Apply one control message; returns what was done (for logs and tests)."""
    try:
        msg: Any = json.loads(data)
    except ValueError:
        return "ignored: not JSON"
    if not isinstance(msg, dict) or msg.get("command") != "reload_model":
        return "ignored: unknown command"
    path = Path(msg["path"]) if isinstance(msg.get("path"), str) else model_dir
    if path is None:
        return "ignored: no model path (set RISKFLOW_MODEL_DIR)"
    model = load_into(det, path, metrics)
    return f"loaded {model.version}" if model else "error"


def control_consumer(client: Mapping[str, Any]) -> AIOKafkaConsumer:
    """The group-less consumer of the control topic (not started); ``client``: aiokafka
    keyword arguments from ``riskflow.kafka.client_config`` (bootstrap, SASL, TLS)."""
    return AIOKafkaConsumer(**client, group_id=None, enable_auto_commit=False, fetch_max_wait_ms=200)


def wire_control(
    app: faust.App,
    client: Mapping[str, Any],
    topic: str,
    det: PeerGroupDetector,
    model_dir: Path | None,
    metrics: Metrics | None,
) -> Callable[[], Awaitable[None]]:
    """Start following the control topic as an app task (returned, for tests)."""
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
                        log.info("control message: %s", apply_control(m.value or b"", det, model_dir, metrics))
        except asyncio.CancelledError:
            raise
        except Exception:  # a broken control channel must not stop detection
            log.exception("control consumer stopped")
        finally:
            await consumer.stop()

    app.task(control)
    return control
