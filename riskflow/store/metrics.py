"""Metrics of the alert sink (store writes), on an injected registry (the pattern: riskflow/core/metricskit.py).

Per batch, never per alert: one counter increment and one histogram
observation for each batch the sink writes. Rejects are counted by reason, from
the fixed set ``REJECT_REASONS``.

>>> from prometheus_client import CollectorRegistry
>>> reg = CollectorRegistry()
>>> m = StoreMetrics.create(reg)
>>> m.wrote(alerts=3, changed=2, seconds=0.01)
>>> reg.get_sample_value("riskflow_store_upserts_total"), reg.get_sample_value("riskflow_store_write_seconds_count")
(3.0, 1.0)
>>> reg.get_sample_value("riskflow_store_rejected_total", {"reason": "bad_text"})
0.0
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram

from riskflow.core.metricskit import counter, histogram
from riskflow.store.base import REJECT_REASONS

WRITE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class StoreMetrics:
    upserts: Counter
    changed: Counter
    write_seconds: Histogram
    write_errors: Counter
    invalid: Counter
    rejected: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> StoreMetrics:
        return cls(
            upserts=counter(registry, "riskflow_store_upserts_total", "Alerts the sink upserted into the store."),
            changed=counter(
                registry,
                "riskflow_store_changed_total",
                "Upserted alerts that changed a stored row (new id or higher revision).",
            ),
            write_seconds=histogram(
                registry,
                "riskflow_store_write_seconds",
                "Time to upsert one sink batch (one transaction).",
                WRITE_BUCKETS,
            ),
            write_errors=counter(
                registry, "riskflow_store_write_errors_total", "Sink batch writes that failed (then retried)."
            ),
            invalid=counter(registry, "riskflow_store_invalid_total", "Undecodable messages the sink skipped."),
            rejected=counter(
                registry,
                "riskflow_store_rejected_total",
                "Records the sink wrote to the store-rejects ledger instead of the store, by reason.",
                fixed={"reason": REJECT_REASONS},
            ),
        )

    def wrote(self, *, alerts: int, changed: int, seconds: float) -> None:
        self.upserts.inc(alerts)
        self.changed.inc(changed)
        self.write_seconds.observe(seconds)
