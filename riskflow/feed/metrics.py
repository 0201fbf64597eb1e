"""Metrics of the live feed, on an injected registry; served by the feed at ``/metrics``.

Label sets are fixed: ``route`` is the matched route's pattern (``/api/alerts/{alert_id}``,
never an id) or ``other``; ``status`` is one of :data:`STATUSES` or ``other``; ``reason`` of
refused streams is ``per_token`` or ``total``; of authentication failures ``missing`` (no token),
``invalid`` (a wrong one) or ``throttled`` (refused by the back-off without being checked).

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
STATUSES: frozenset[str] = frozenset(
    {"200", "304", "400", "401", "403", "404", "405", "409", "413", "429", "500", "503"}
)
STREAM_REFUSALS: tuple[str, ...] = ("per_token", "total")
AUTH_FAILURES: tuple[str, ...] = ("missing", "invalid", "throttled")


@dataclass(frozen=True)
class FeedMetrics:
    clients: Gauge
    events_sent: Counter
    requests: Counter
    streams_refused: Counter
    stream_catchups: Counter
    auth_failures: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> FeedMetrics:
        m = cls(
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
            streams_refused=Counter(
                "riskflow_feed_streams_refused_total",
                "Live streams refused (503) at the per-token or the total limit.",
                ["reason"],
                registry=registry,
            ),
            stream_catchups=Counter(
                "riskflow_feed_stream_catchups_total",
                "Times a live stream fell behind the changes and caught up by paging the store.",
                registry=registry,
            ),
            auth_failures=Counter(
                "riskflow_feed_auth_failures_total",
                "API requests refused for want of a valid token, by reason.",
                ["reason"],
                registry=registry,
            ),
        )
        for reason in STREAM_REFUSALS:  # every series exists from the start, at 0
            m.streams_refused.labels(reason=reason)
        for reason in AUTH_FAILURES:
            m.auth_failures.labels(reason=reason)
        return m

    def request(self, route: str, status: int) -> None:
        code = str(status)
        self.requests.labels(
            route=route if route in ROUTES else "other", status=code if code in STATUSES else "other"
        ).inc()
