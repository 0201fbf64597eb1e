"""RiskFlow's Prometheus metrics, one bundle created against an injected registry.

Labels come only from small fixed sets (event type, entity kind, region,
reason, rule, severity); never an entity or investor id. Counting is done per
batch by the caller (:meth:`Metrics.count_batch`), off the per-event path.

>>> from prometheus_client import CollectorRegistry
>>> reg = CollectorRegistry()
>>> m = Metrics.create(reg)
>>> m.invalid.labels(reason="malformed_json").inc()
>>> reg.get_sample_value("riskflow_invalid_events_total", {"reason": "malformed_json"})
1.0
"""

from __future__ import annotations

from collections import Counter as _Tally
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from riskflow.alerts import Alert

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True)
class Metrics:
    events: Counter
    invalid: Counter
    alerts: Counter
    batches: Counter
    batch_seconds: Histogram
    event_time_lag: Gauge
    build: Info

    @classmethod
    def create(cls, registry: CollectorRegistry) -> Metrics:
        return cls(
            events=Counter(
                "riskflow_events_total",
                "Valid events processed, by event type, entity kind and region.",
                ["event_type", "entity_kind", "region"],
                registry=registry,
            ),
            invalid=Counter(
                "riskflow_invalid_events_total",
                "Messages sent to the dead-letter topic, by reason.",
                ["reason"],
                registry=registry,
            ),
            alerts=Counter(
                "riskflow_alerts_total",
                "Alerts emitted, by rule, severity, region and mode (live or shadow).",
                ["rule", "severity", "region", "mode"],
                registry=registry,
            ),
            batches=Counter("riskflow_batches_total", "Batches processed by the worker.", registry=registry),
            batch_seconds=Histogram(
                "riskflow_batch_processing_seconds",
                "Wall time to process one batch (parse, detect, emit).",
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            event_time_lag=Gauge(
                "riskflow_event_time_lag_seconds",
                "Wall clock minus the latest event time processed.",
                registry=registry,
            ),
            build=Info("riskflow_build", "RiskFlow version and rule pack version.", registry=registry),
        )

    def count_batch(
        self,
        events: Iterable[tuple[str, str, str]],
        invalid: Iterable[str],
        alerts: Iterable[Alert],
    ) -> None:
        """Add one batch's tallies: (event_type, kind, region) triples, reasons, alerts."""
        for (etype, kind, region), n in _Tally(events).items():
            self.events.labels(event_type=etype, entity_kind=kind, region=region).inc(n)
        for reason, n in _Tally(invalid).items():
            self.invalid.labels(reason=reason).inc(n)
        for (rule, sev, region, mode), n in _Tally((a.rule_id, a.severity, a.region, a.mode) for a in alerts).items():
            self.alerts.labels(rule=rule, severity=sev, region=region, mode=mode).inc(n)
