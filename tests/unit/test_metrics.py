"""The metrics bundle: names, fixed label sets, and the per-batch recording."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from riskflow.core.metrics import E2E_BUCKETS, BulkHistogram, Metrics
from riskflow.core.schema import REGIONS

#: The only label names a RiskFlow metric may carry: small fixed sets, never an id.
ALLOWED_LABELS = {
    "event_type",
    "entity_kind",
    "region",
    "city",
    "city_zh",
    "reason",
    "rule",
    "severity",
    "level",
    "mode",
    "topic",
    "detector",
    "version",
    "rule_pack",
    "model",
    "le",
}


def fresh() -> tuple[CollectorRegistry, Metrics]:
    reg = CollectorRegistry()
    return reg, Metrics.create(reg)


def test_names_follow_prometheus_conventions_and_labels_are_fixed_sets() -> None:
    reg, _ = fresh()
    families = list(reg.collect())
    assert families
    for fam in families:
        assert fam.name.startswith("riskflow_"), fam.name
        if fam.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in fam.samples), fam.name
        if fam.type == "histogram":
            assert fam.name.endswith("_seconds"), fam.name
        for s in fam.samples:
            assert set(s.labels) <= ALLOWED_LABELS, (s.name, s.labels)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=1000, allow_nan=False), max_size=200))
def test_bulk_histogram_equals_observing_one_by_one(values: list[float]) -> None:
    reg = CollectorRegistry()
    bulk = BulkHistogram("bulk_seconds", "x", E2E_BUCKETS, reg)
    ref = Histogram("ref_seconds", "x", buckets=E2E_BUCKETS, registry=reg)
    half = len(values) // 2
    bulk.observe_many(values[:half])  # two batches add up
    bulk.observe_many(values[half:])
    for v in values:
        ref.observe(v)
    for le in [*map(str, E2E_BUCKETS), "+Inf"]:
        assert reg.get_sample_value("bulk_seconds_bucket", {"le": le}) == reg.get_sample_value(
            "ref_seconds_bucket", {"le": le}
        ), le
    assert reg.get_sample_value("bulk_seconds_count") == len(values)
    assert reg.get_sample_value("bulk_seconds_sum") == pytest.approx(reg.get_sample_value("ref_seconds_sum"))


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.just(-1), st.integers(min_value=0, max_value=2_000_000)), max_size=200),
    st.floats(min_value=0, max_value=2_000, allow_nan=False),
)
def test_observe_ages_equals_observing_each_age(stamps: list[int | None], now: float) -> None:
    reg = CollectorRegistry()
    ages = BulkHistogram("ages_seconds", "x", E2E_BUCKETS, reg)
    ref = BulkHistogram("ref_seconds", "x", E2E_BUCKETS, reg)
    ages.observe_ages(iter(stamps), now)
    ref.observe_many(max(0.0, now - t / 1000) for t in stamps if t and t > 0)
    for le in [*map(str, E2E_BUCKETS), "+Inf"]:
        assert reg.get_sample_value("ages_seconds_bucket", {"le": le}) == reg.get_sample_value(
            "ref_seconds_bucket", {"le": le}
        ), le
    assert reg.get_sample_value("ages_seconds_sum") == pytest.approx(reg.get_sample_value("ref_seconds_sum"))


def test_record_batch_latency_evaluation_and_lag() -> None:
    reg, m = fresh()
    m.record_batch(
        # 100.5 s is after the decision: clock skew counts as 0; no timestamp (None, -1): not counted
        produced_at_ms=[100_000, 99_000, 40_000, 100_500, None, -1],
        decided_at=100.2,
        evaluation_seconds=0.003,
        lag_by_topic={"fund": 12, "inst": -3},
    )
    get = reg.get_sample_value
    assert get("riskflow_processing_latency_seconds_count") == 4
    assert get("riskflow_processing_latency_seconds_bucket", {"le": "0.25"}) == 2  # 0.2 s and the skewed 0
    assert get("riskflow_processing_latency_seconds_bucket", {"le": "2.5"}) == 3  # + 1.2 s
    assert get("riskflow_processing_latency_seconds_bucket", {"le": "60.0"}) == 3  # 60.2 s is above
    assert get("riskflow_processing_latency_seconds_bucket", {"le": "300.0"}) == 4
    assert get("riskflow_detector_evaluation_seconds_count") == 1
    assert get("riskflow_consumer_lag_messages", {"topic": "fund"}) == 12
    assert get("riskflow_consumer_lag_messages", {"topic": "inst"}) == 0


def test_region_info_names_every_city() -> None:
    reg, _ = fresh()
    for code, (en, zh) in REGIONS.items():
        assert reg.get_sample_value("riskflow_region_info", {"region": code, "city": en, "city_zh": zh}) == 1
    assert sum(1 for fam in reg.collect() if fam.name == "riskflow_region_info" for _ in fam.samples) == 11


def test_level_board_follows_changes_and_rebuilds() -> None:
    reg, m = fresh()

    def red(region: str) -> float | None:
        return reg.get_sample_value("riskflow_entities_at_level", {"level": "red", "region": region})

    assert red("330100") == 0 and red("331100") == 0  # every (level, region) exists from the start
    m.levels.update([("A", "red", "330100", 0), ("B", "red", "330100", 1), ("C", "orange", "330200", 2)])
    m.levels.update(
        [("A", "red", "330100", 0), ("B", "green", "330100", 1), ("X", "red", "", 3)]
    )  # no region: left out
    assert red("330100") == 1
    assert reg.get_sample_value("riskflow_entities_at_level", {"level": "orange", "region": "330200"}) == 1
    # After a rebalance only the states of the partitions owned now count.
    m.levels.rebuild([("D", "red", "330300", 1)])
    assert red("330100") == 0 and red("330300") == 1
    assert reg.get_sample_value("riskflow_entities_at_level", {"level": "orange", "region": "330200"}) == 0
    samples = [s for fam in reg.collect() if fam.name == "riskflow_entities_at_level" for s in fam.samples]
    assert len(samples) == 3 * 11 and {s.labels["level"] for s in samples} == {"yellow", "orange", "red"}


def test_every_metrics_bundle_is_built_by_the_one_pattern() -> None:
    """The worker's, the sink's and the feed's bundles make their metrics through riskflow/core/metricskit.py
    (prefix, _total, fixed label sets pre-created), never with prometheus_client's constructors directly."""
    import inspect

    from prometheus_client import CollectorRegistry

    import riskflow.core.metrics as worker_metrics
    import riskflow.feed.metrics as feed_metrics
    import riskflow.store.metrics as store_metrics

    for module, bundle in (
        (worker_metrics, worker_metrics.Metrics),
        (store_metrics, store_metrics.StoreMetrics),
        (feed_metrics, feed_metrics.FeedMetrics),
    ):
        source = inspect.getsource(module)
        for ctor in ("Counter(", "Gauge(", "Histogram("):
            assert f" {ctor}" not in source and f"={ctor}" not in source, (module.__name__, ctor)
        reg = CollectorRegistry()
        bundle.create(reg)
        names = [m.name for m in reg.collect()]
        assert names and all(n.startswith("riskflow_") for n in names), names
