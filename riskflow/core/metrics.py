"""RiskFlow's Prometheus metrics, one bundle created against an injected registry
(the pattern of every bundle: riskflow/core/metricskit.py).

Labels come only from small fixed sets (event type, entity kind, region,
reason, rule, severity, mode, topic); never an entity or investor id. Counting
is done per batch by the caller (:meth:`Metrics.count_batch`,
:meth:`Metrics.record_batch`), off the per-event path: no metric call is made
per event.

>>> from prometheus_client import CollectorRegistry
>>> reg = CollectorRegistry()
>>> m = Metrics.create(reg)
>>> m.invalid.labels(reason="malformed_json").inc()
>>> reg.get_sample_value("riskflow_invalid_events_total", {"reason": "malformed_json"})
1.0
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left, bisect_right
from collections import Counter as _Tally
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from riskflow.core.alerts import Alert
from riskflow.core.metricskit import counter, gauge, histogram
from riskflow.core.schema import REASONS, REGIONS

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: End-to-end latency reaches minutes when a backlog builds up; the top buckets see it.
E2E_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
#: Why a pushed rule pack was refused (streams/rules_control.py): not JSON or not the message's
#: shape; a schema other than riskflow.rulepack/v1; rules that fail validation.
RULE_PACK_REJECT_REASONS = ("malformed", "unsupported_schema", "invalid_rules")
#: The dead-letter reason of a message whose processing raised (detectors/pipeline.py
#: ``PROCESSING_ERROR``): a bug, not bad input; its series exists from the start, at 0.
PROCESSING_ERROR = "processing_error"
#: Every reason a message is dead-lettered for: the schema's, then ``processing_error``.
DEAD_LETTER_REASONS = (*REASONS, PROCESSING_ERROR)
#: Why a message on the model control topic was ignored (streams/control.py).
CONTROL_IGNORE_REASONS = ("too_large", "malformed", "unknown_command", "no_model_dir")
#: Why the worker wrote its changed entity states (streams/statecache.py, streams/batchtap.py).
STATE_FLUSH_REASONS = ("batch", "interval", "dirty_limit", "rebalance", "shutdown")


class BulkHistogram(Collector):
    """A label-less histogram that takes a whole batch of observations at once.

    ``prometheus_client.Histogram.observe`` is one locked call per value; a
    worker batch of 1,000 events would make 1,000 of them. Here a batch is
    sorted and bucketed with one bisect per bucket, then added under one lock,
    and the registry reads the totals at scrape time.

    >>> from prometheus_client import CollectorRegistry
    >>> reg = CollectorRegistry()
    >>> h = BulkHistogram("demo_seconds", "Demo.", (0.1, 1.0), reg)
    >>> h.observe_many([0.05, 0.1, 0.5, 3.0])
    >>> reg.get_sample_value("demo_seconds_bucket", {"le": "0.1"}), reg.get_sample_value("demo_seconds_count")
    (2.0, 4.0)
    """

    def __init__(self, name: str, documentation: str, buckets: Sequence[float], registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = tuple(sorted(float(b) for b in buckets))
        self._counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self._sum = 0.0
        self._lock = threading.Lock()
        registry.register(self)

    def observe_many(self, values: Iterable[float]) -> None:
        # Sorted once, each bucket is one bisect (le is inclusive: bisect_right counts v == bound in).
        vals = sorted(values)
        total = math.fsum(vals)
        counts, below = [], 0
        for bound in self.bounds:
            upto = bisect_right(vals, bound)
            counts.append(upto - below)
            below = upto
        counts.append(len(vals) - below)
        with self._lock:
            for i, n in enumerate(counts):
                self._counts[i] += n
            self._sum += total

    def observe_ages(self, stamps_ms: Iterable[int | None], now: float) -> None:
        """Observe ``now - t / 1000`` for each timestamp ``t`` (ms) that is set (not None, > 0),
        clamped at 0: the same as :meth:`observe_many` of those ages, without a per-value
        Python step. The timestamps are sorted once (C); each bucket is one bisect on the
        timestamp at which an age crosses its bound."""
        ts = sorted(filter(None, stamps_ms))  # type: ignore[type-var]  # None and 0 dropped
        lo = bisect_right(ts, 0)  # and negative ones (-1: no timestamp)
        n = len(ts) - lo
        if n <= 0:
            return
        counts, below = [], 0
        for bound in self.bounds:
            # age <= bound  <=>  t >= the least integer stamp c with now - c / 1000 <= bound
            # (the age is decreasing in t; clamped ages of future stamps are 0 <= bound)
            c = math.ceil((now - bound) * 1000.0)
            while now - (c - 1) / 1000 <= bound:
                c -= 1
            while now - c / 1000 > bound:
                c += 1
            upto = len(ts) - max(bisect_left(ts, c), lo)
            counts.append(upto - below)
            below = upto
        counts.append(n - below)
        k = bisect_right(ts, now * 1000.0)  # stamps up to now: positive ages
        total = (k - lo) * now - math.fsum(ts[lo:k]) / 1000.0 if k > lo else 0.0
        with self._lock:
            for i, c in enumerate(counts):
                self._counts[i] += c
            self._sum += total

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self.name, self.documentation)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            counts, total = list(self._counts), self._sum
        cumulative, running = [], 0
        for bound, n in zip((*map(floatToGoString, self.bounds), "+Inf"), counts, strict=True):
            running += n
            cumulative.append((bound, float(running)))
        yield HistogramMetricFamily(self.name, self.documentation, buckets=cumulative, sum_value=total)


@dataclass(frozen=True)
class Metrics:
    events: Counter
    invalid: Counter
    alerts: Counter
    batches: Counter
    batch_seconds: Histogram
    event_time_lag: Gauge
    build: Info
    latency: BulkHistogram
    evaluation_seconds: Histogram
    consumer_lag: Gauge
    regions: Gauge
    levels: LevelBoard
    model_scored: Counter
    model_drift: Gauge
    model: Info
    model_reloads: Counter
    rule_pack_rejected: Counter
    control_ignored: Counter
    late: Counter
    ahead: Counter
    state_flushes: Counter
    states_written: Counter
    already_applied: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> Metrics:
        return cls(
            events=counter(
                registry,
                "riskflow_events_total",
                "Valid events processed, by event type, entity kind and region.",
                open_labels=("event_type", "entity_kind", "region"),
            ),
            invalid=counter(
                registry,
                "riskflow_invalid_events_total",
                "Messages sent to the dead-letter topic, by reason.",
                fixed={"reason": (PROCESSING_ERROR,)},
            ),
            alerts=counter(
                registry,
                "riskflow_alerts_total",
                "Alerts emitted, by rule, severity, region and mode (live or shadow).",
                open_labels=("rule", "severity", "region", "mode"),
            ),
            batches=counter(registry, "riskflow_batches_total", "Batches processed by the worker."),
            batch_seconds=histogram(
                registry,
                "riskflow_batch_processing_seconds",
                "Wall time to process one batch (parse, detect, emit).",
                LATENCY_BUCKETS,
            ),
            event_time_lag=gauge(
                registry, "riskflow_event_time_lag_seconds", "Wall clock minus the latest event time processed."
            ),
            build=Info("riskflow_build", "RiskFlow version and rule pack version.", registry=registry),
            latency=BulkHistogram(
                "riskflow_processing_latency_seconds",
                "Per event: Kafka message timestamp (when produced) to the decision on it "
                "(its batch's alerts delivered). Recorded per batch.",
                E2E_BUCKETS,
                registry,
            ),
            evaluation_seconds=histogram(
                registry,
                "riskflow_detector_evaluation_seconds",
                "Wall time of one batch in the detectors (parse, dedup, every detector), without I/O.",
                LATENCY_BUCKETS,
            ),
            consumer_lag=gauge(
                registry,
                "riskflow_consumer_lag_messages",
                "Messages on the input topic behind the last one processed (high watermark minus position), "
                "summed over this worker's partitions.",
                open_labels=("topic",),
            ),
            regions=_region_info(registry),
            levels=LevelBoard(registry),
            model_scored=counter(
                registry,
                "riskflow_model_scored_total",
                "Entity-weeks scored by the peer-group model, by entity kind.",
                open_labels=("entity_kind",),
            ),
            model_drift=gauge(
                registry,
                "riskflow_model_score_psi",
                "Population stability index of recent peer-group scores against the training scores, "
                "by entity kind (above ~0.25: the model has gone stale; retrain).",
                open_labels=("entity_kind",),
            ),
            model=Info("riskflow_model", "Version of the loaded peer-group model.", registry=registry),
            model_reloads=counter(
                registry,
                "riskflow_model_reloads_total",
                "Peer-group model loads, by reason (loaded; load_failed: missing, unreadable or malformed; "
                "refused: outside the model directory, or its HMAC does not verify).",
                open_labels=("reason",),
            ),
            rule_pack_rejected=counter(
                registry,
                "riskflow_rule_pack_rejected_total",
                "Messages on the rules control topic that were not a valid rule pack (the running pack stays), "
                "by reason (malformed, unsupported_schema, invalid_rules).",
                fixed={"reason": RULE_PACK_REJECT_REASONS},
            ),
            control_ignored=counter(
                registry,
                "riskflow_control_messages_ignored_total",
                "Messages on the model control topic that were ignored, by reason (too_large, malformed, "
                "unknown_command, no_model_dir).",
                fixed={"reason": CONTROL_IGNORE_REASONS},
            ),
            late=counter(
                registry,
                "riskflow_late_events_total",
                "Events beyond the allowed lateness, sent to the late-event ledger, by event type.",
                open_labels=("event_type",),
            ),
            ahead=counter(
                registry,
                "riskflow_events_ahead_total",
                "Events that ran more than RISKFLOW_MAX_EVENT_SKEW ahead of their partition's event time "
                "(processed for their own entity, not moving the partition's time; ledgered with ahead: true), "
                "by event type.",
                open_labels=("event_type",),
            ),
            state_flushes=counter(
                registry,
                "riskflow_state_flushes_total",
                "Writes of the changed entity states to the changelog, by reason (batch: every batch, "
                "interval, dirty_limit, rebalance, shutdown; streams/statecache.py).",
                fixed={"reason": STATE_FLUSH_REASONS},
            ),
            states_written=counter(
                registry,
                "riskflow_states_written_total",
                "Entity states written to the changelog (one per changed entity per flush).",
            ),
            already_applied=counter(
                registry,
                "riskflow_already_applied_total",
                "Input messages skipped because their entity's state already held them (read again "
                "after a crash or a rebalance: at or below the offset the state records for their partition).",
            ),
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

    def count_late(self, event_types: Iterable[str], counter: Counter | None = None) -> None:
        """Add one batch's late events (their event types) to ``riskflow_late_events_total`` (or
        to ``counter``, e.g. ``riskflow_events_ahead_total``)."""
        counter = self.late if counter is None else counter
        for etype, n in _Tally(event_types).items():
            counter.labels(event_type=etype).inc(n)

    def record_batch(
        self,
        *,
        produced_at_ms: Iterable[int | None],
        decided_at: float,
        evaluation_seconds: float,
        lag_by_topic: Mapping[str, int],
    ) -> None:
        """Per-batch timings: Kafka timestamps (ms) of its messages, when they were decided
        (POSIX s), the detectors' time, and each input topic's consumer lag."""
        self.latency.observe_ages(produced_at_ms, decided_at)
        self.evaluation_seconds.observe(evaluation_seconds)
        for topic, lag in lag_by_topic.items():
            self.consumer_lag.labels(topic=topic).set(max(0, lag))

    def observe_model_scores(self, scores: Iterable[tuple[str, float]], psi: dict[str, float]) -> None:
        """One batch of peer-group scores ((entity kind, score) pairs) and the drift index per kind."""
        for kind, n in _Tally(kind for kind, _ in scores).items():
            self.model_scored.labels(entity_kind=kind).inc(n)
        for kind, value in psi.items():
            self.model_drift.labels(entity_kind=kind).set(value)


#: Risk levels above green (detectors/risk: green < yellow < orange < red).
LEVELS_AT_RISK = ("yellow", "orange", "red")


class LevelBoard:
    """``riskflow_entities_at_level{level, region}``: this worker's entities at each risk level
    above green, kept from the entity states each batch changed (no per-event work).

    Only entities above green are held (entity id -> level, region, table partition), so the
    board stays small. :meth:`rebuild` recounts from the table after a rebalance, over the
    partitions the worker now owns; all 33 (level, region) series exist from the start at 0.

    >>> from prometheus_client import CollectorRegistry
    >>> reg = CollectorRegistry()
    >>> b = LevelBoard(reg)
    >>> b.update([("PF-1", "red", "330100", 0), ("PF-2", "red", "330100", 1), ("PF-3", "green", "330100", 1)])
    >>> b.update([("PF-2", "yellow", "330100", 1)])
    >>> reg.get_sample_value("riskflow_entities_at_level", {"level": "red", "region": "330100"})
    1.0
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.gauge = gauge(
            registry,
            "riskflow_entities_at_level",
            "Entities at each risk level above green, by region, on this worker (sum over workers).",
            fixed={"level": LEVELS_AT_RISK, "region": REGIONS},
        )
        self._at: dict[str, tuple[str, str, int]] = {}
        self._n: _Tally[tuple[str, str]] = _Tally()

    def update(self, changes: Iterable[tuple[str, str, str, int]]) -> None:
        """(entity id, level, region, partition) of each entity whose state a batch changed."""
        touched = set()
        at, n = self._at, self._n
        for eid, level, region, partition in changes:
            new = (level, region, partition) if level in LEVELS_AT_RISK and region in REGIONS else None
            old = at.get(eid)
            if old == new:
                continue
            if old is not None:
                del at[eid]
                n[old[:2]] -= 1
                touched.add(old[:2])
            if new is not None:
                at[eid] = new
                n[new[:2]] += 1
                touched.add(new[:2])
        for level, region in touched:
            self.gauge.labels(level=level, region=region).set(n[level, region])

    def rebuild(self, entries: Iterable[tuple[str, str, str, int]]) -> None:
        """Start over from ``entries`` (as :meth:`update`): the states of the partitions owned now."""
        stale = set(self._n)
        self._at.clear()
        self._n.clear()
        self.update(entries)
        for level, region in stale - set(self._n):
            self.gauge.labels(level=level, region=region).set(0)


def _region_info(registry: CollectorRegistry) -> Gauge:
    """``riskflow_region_info{region, city, city_zh} 1``: lets dashboards name a region code's city
    (``* on (region) group_left (city) riskflow_region_info``)."""
    g = gauge(
        registry,
        "riskflow_region_info",
        "City of each region code (GB/T 2260) of Zhejiang; always 1.",
        open_labels=("region", "city", "city_zh"),
    )
    for code, (en, zh) in REGIONS.items():
        g.labels(region=code, city=en, city_zh=zh).set(1)
    return g
