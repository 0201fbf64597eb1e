"""Metrics of the live feed, on an injected registry; served by the feed at ``/metrics``.

Label sets are fixed: ``route`` is the matched route's pattern (``/api/alerts/{alert_id}``,
never an id) or ``other``; ``status`` is one of :data:`STATUSES` or ``other``.

>>> from prometheus_client import CollectorRegistry
>>> reg = CollectorRegistry()
>>> m = FeedMetrics.create(reg)
>>> m.request("/api/alerts", 200); m.request("/api/alerts", 599)
>>> reg.get_sample_value("riskflow_feed_requests_total", {"route": "/api/alerts", "status": "other"})
1.0
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

#: Routes of the feed app (riskflow/feed/app.py build_app); anything else counts as "other".
ROUTES: frozenset[str] = frozenset(
    {
        "/",
        "/healthz",
        "/metrics",
        "/openapi.json",
        "/static",
        "/api/meta",
        "/api/alerts",
        "/api/alerts/{alert_id}",
        "/api/alerts/{alert_id}/{action}",
        "/api/entities/{entity_id}",
        "/api/stream",
    }
)
STATUSES: frozenset[str] = frozenset({"200", "304", "400", "401", "403", "404", "405", "409", "413", "500", "503"})


@dataclass(frozen=True)
class FeedMetrics:
    clients: Gauge
    events_sent: Counter
    requests: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> FeedMetrics:
        return cls(
            clients=Gauge("riskflow_feed_clients", "Open live-stream (SSE) connections.", registry=registry),
            events_sent=Counter(
                "riskflow_feed_events_sent_total", "Alert rows sent to live-stream clients.", registry=registry
            ),
            requests=Counter(
                "riskflow_feed_requests_total",
                "HTTP requests to the feed, by route pattern and status.",
                ["route", "status"],
                registry=registry,
            ),
        )

    def request(self, route: str, status: int) -> None:
        code = str(status)
        self.requests.labels(
            route=route if route in ROUTES else "other", status=code if code in STATUSES else "other"
        ).inc()
