"""Metrics of the live feed, on an injected registry (the pattern: riskflow/core/metricskit.py); served by
the feed at ``/metrics``.

Label sets are fixed: ``route`` is the matched route's pattern (``/api/alerts/{alert_id}``,
never an id) or ``other``; ``status`` is one of :data:`STATUSES` or ``other``; ``reason`` of
refused streams is ``per_token`` or ``total``; of authentication failures ``missing`` (no token),
``invalid`` (a wrong one) or ``throttled`` (refused by the back-off without being checked).
Officers' cases are read from the store at each scrape (``refresh_cases``): open cases by
``level`` (red, orange, yellow) and ``region`` (the 11 city codes or ``other``), overdue ones by
``level``, and the time from opening to the first officer action as a histogram. The histogram
counts first actions taken since this feed process started (``started``), each once: a restarted
feed does not count the store's earlier first actions again, so ``increase()`` over a range holds
no restart jump.

>>> from prometheus_client import CollectorRegistry
>>> reg = CollectorRegistry()
>>> m = FeedMetrics.create(reg)
>>> m.request("/api/alerts", 200); m.request("/api/alerts", 599)
>>> reg.get_sample_value("riskflow_feed_requests_total", {"route": "/api/alerts", "status": "other"})
1.0
"""

from __future__ import annotations

import datetime as _dt
from collections import Counter as Counter_
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from riskflow.core.metricskit import counter, gauge, histogram
from riskflow.core.schema import REGIONS

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
        "/api/board",
        "/api/cases",
        "/api/cases/{case_id}",
        "/api/cases/{case_id}/report",
        "/api/cases/{case_id}/{action}",
        "/favicon.ico",
        "/api/rules/quality",
    }
)
STATUSES: frozenset[str] = frozenset(
    {"200", "304", "400", "401", "403", "404", "405", "409", "413", "429", "500", "503"}
)
STREAM_REFUSALS: tuple[str, ...] = ("per_token", "total")
AUTH_FAILURES: tuple[str, ...] = ("missing", "invalid", "throttled")
CASE_LEVELS: tuple[str, ...] = ("red", "orange", "yellow")
#: Time from a case's opening to its first officer action: 5 min to 30 days.
FIRST_ACTION_BUCKETS = (300.0, 900.0, 3600.0, 4 * 3600.0, 86400.0, 3 * 86400.0, 10 * 86400.0, 30 * 86400.0)


class CaseMetricRow(NamedTuple):
    """What the case metrics need of one case (``AlertStore.case_metric_rows``)."""

    case_id: str
    level: str
    region: str
    status: str
    opened_at: str
    due_at: str
    first_action_at: str


@dataclass(frozen=True)
class FeedMetrics:
    clients: Gauge
    events_sent: Counter
    case_events_sent: Counter
    requests: Counter
    streams_refused: Counter
    stream_catchups: Counter
    auth_failures: Counter
    cases_open: Gauge
    cases_overdue: Gauge
    case_first_action: Histogram
    #: when this process started (the store's UTC format): earlier first actions are not observed
    started: str = ""
    #: cases whose first action this process has observed (each is observed once)
    _first_seen: set[str] = field(default_factory=set)

    @classmethod
    def create(cls, registry: CollectorRegistry, started: str = "") -> FeedMetrics:
        return cls(
            started=started,
            clients=gauge(registry, "riskflow_feed_clients", "Open live-stream (SSE) connections."),
            events_sent=counter(registry, "riskflow_feed_events_sent_total", "Alert rows sent to live-stream clients."),
            case_events_sent=counter(
                registry,
                "riskflow_feed_case_events_sent_total",
                "Changed officers' cases sent to live-stream clients.",
            ),
            requests=counter(
                registry,
                "riskflow_feed_requests_total",
                "HTTP requests to the feed, by route pattern and status.",
                open_labels=("route", "status"),
            ),
            streams_refused=counter(
                registry,
                "riskflow_feed_streams_refused_total",
                "Live streams refused (503) at the per-token or the total limit.",
                fixed={"reason": STREAM_REFUSALS},
            ),
            stream_catchups=counter(
                registry,
                "riskflow_feed_stream_catchups_total",
                "Times a live stream fell behind the changes and caught up by paging the store.",
            ),
            auth_failures=counter(
                registry,
                "riskflow_feed_auth_failures_total",
                "API requests refused for want of a valid token, by reason.",
                fixed={"reason": AUTH_FAILURES},
            ),
            cases_open=gauge(
                registry,
                "riskflow_cases_open",
                "Officers' cases not closed, by level and region (store-wide, read at each scrape).",
                fixed={"level": CASE_LEVELS, "region": (*REGIONS, "other")},
            ),
            cases_overdue=gauge(
                registry,
                "riskflow_cases_overdue",
                "Officers' cases not closed and past their due date, by level (read at each scrape).",
                fixed={"level": CASE_LEVELS},
            ),
            case_first_action=histogram(
                registry,
                "riskflow_case_first_action_seconds",
                "Time from a case's opening to its first officer action (first actions since the feed started).",
                FIRST_ACTION_BUCKETS,
            ),
        )

    def request(self, route: str, status: int) -> None:
        code = str(status)
        self.requests.labels(
            route=route if route in ROUTES else "other", status=code if code in STATUSES else "other"
        ).inc()

    def refresh_cases(self, rows: Iterable[CaseMetricRow], now: str) -> None:
        """Set the case gauges from the store's cases and observe first actions not yet seen.
        Labels stay in their fixed sets: a region outside the 11 cities counts as ``other``."""
        open_: Counter_[tuple[str, str]] = Counter_()
        overdue: Counter_[str] = Counter_()
        for r in rows:
            if r.level not in CASE_LEVELS:
                continue
            if r.status != "closed":
                open_[(r.level, r.region if r.region in REGIONS else "other")] += 1
                if r.due_at < now:
                    overdue[r.level] += 1
            if r.first_action_at and r.case_id not in self._first_seen:
                self._first_seen.add(r.case_id)
                if r.first_action_at < self.started:
                    continue  # before this process: counted by the process that was running then
                took = _dt.datetime.fromisoformat(r.first_action_at) - _dt.datetime.fromisoformat(r.opened_at)
                self.case_first_action.observe(max(took.total_seconds(), 0.0))
        for level in CASE_LEVELS:
            self.cases_overdue.labels(level=level).set(overdue[level])
            for region in (*REGIONS, "other"):
                self.cases_open.labels(level=level, region=region).set(open_[(level, region)])
