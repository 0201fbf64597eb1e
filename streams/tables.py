"""Changelog-backed tables. Entity state is stored as msgpack bytes keyed by entity id."""

from __future__ import annotations

import faust

from riskflow.settings import Settings


def declare_tables(app: faust.App, settings: Settings) -> faust.Table:
    return app.Table(
        "entity-state",
        default=None,
        partitions=settings.partitions,
        key_type=bytes,
        value_type=bytes,
    )
