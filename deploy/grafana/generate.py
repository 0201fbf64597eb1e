"""RiskFlow's Grafana dashboards, generated from this one description.

``python deploy/grafana/generate.py`` rewrites ``deploy/grafana/dashboards/*.json``
(provisioned into Grafana by ``provisioning/dashboards/riskflow.yml``). Keeping the
panels as data here keeps every dashboard on the same datasource, units and
conventions, and lets the tests list every PromQL expression that Grafana will
run (tests/stream/test_prometheus_live.py evaluates each one against a real Prometheus).

Queries use only Grafana's ``$__rate_interval`` and ``$__range``; regions are
shown by city name through ``riskflow_region_info`` (``* on (region) group_left (city)``, taken
once per region with ``max by (region, city)``: every worker exports the same series, and a
one-to-many join refuses duplicates on its "one" side). Officers' case metrics come from the
feed (scrape job ``riskflow-feed``), the rest from the workers (job ``riskflow``).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
RI = "$__rate_interval"


@dataclass(frozen=True)
class Q:
    expr: str
    legend: str = ""
    instant: bool = False


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[Q, ...]
    kind: str = "timeseries"  # timeseries, stat, table, bargauge
    unit: str = "short"
    description: str = ""
    width: int = 12
    height: int = 8
    options: dict[str, Any] = field(default_factory=dict)


def by_city(inner: str, by: str = "city") -> str:
    """Sum ``inner`` (a vector with a ``region`` label) by city name (and ``by``'s other labels)."""
    return f"sum by ({by}) ({inner} * on (region) group_left (city) max by (region, city) (riskflow_region_info))"


def quantile(q: float, metric: str, over: str = f"rate({{}}[{RI}])") -> str:
    """The ``q`` quantile of histogram ``metric``, its buckets taken through ``over``."""
    return f"histogram_quantile({q}, sum by (le) ({over.format(metric + '_bucket')}))"


#: First actions are rare events: their quantiles are taken over the dashboard's whole range.
OVER_RANGE = "increase({}[$__range])"


OVERVIEW = (
    Panel(
        "Workers up",
        (Q('sum(up{job="riskflow"})', "workers"),),
        kind="stat",
        width=4,
        height=4,
        description="RiskFlow workers Prometheus can scrape.",
    ),
    Panel(
        "Events in (valid, per s)",
        (Q(f"sum(rate(riskflow_events_total[{RI}]))", "events/s"),),
        kind="stat",
        unit="ops",
        width=4,
        height=4,
    ),
    Panel(
        "Alerts (live, per s)",
        (Q(f'sum(rate(riskflow_alerts_total{{mode="live"}}[{RI}]))', "alerts/s"),),
        kind="stat",
        unit="ops",
        width=4,
        height=4,
    ),
    Panel(
        "Entities at risk by level",
        (Q("sum by (level) (riskflow_entities_at_level)", "{{level}}"),),
        kind="stat",
        width=12,
        height=4,
        description="Entities at yellow, orange and red risk level now, all cities.",
    ),
    Panel(
        "Open cases by level and city 未结案件",
        (
            Q(by_city("riskflow_cases_open", "city, level"), "{{city}} {{level}}", instant=True),
            Q('sum by (level) (riskflow_cases_open{region="other"})', "other {{level}}", instant=True),
        ),
        kind="table",
        options={"format": "table"},
        width=10,
        description="Officers' cases not closed, by level (red 红, orange 橙, yellow 黄) and city; cases of "
        "institutions outside the 11 cities are counted as other. Read from the alert store by the feed.",
    ),
    Panel(
        "Overdue cases by level 逾期案件",
        (Q("sum by (level) (riskflow_cases_overdue)", "{{level}}"),),
        kind="stat",
        width=6,
        description="Cases not closed and past the due date their level's deadline set (risk config, "
        "disposal.<level>.deadline_days).",
    ),
    Panel(
        "Time from case open to first action 首次处置用时 (selected range)",
        (
            Q(quantile(0.5, "riskflow_case_first_action_seconds", OVER_RANGE), "p50", instant=True),
            Q(quantile(0.9, "riskflow_case_first_action_seconds", OVER_RANGE), "p90", instant=True),
        ),
        kind="stat",
        unit="s",
        width=8,
        description="From a case's opening to the first thing an officer did on it (assign, note, check or "
        "close), over first actions taken in the selected range.",
    ),
    Panel(
        "Throughput by event type",
        (Q(f"sum by (event_type) (rate(riskflow_events_total[{RI}]))", "{{event_type}}"),),
        unit="ops",
        description="Valid, non-duplicate events processed per second.",
    ),
    Panel(
        "Alerts by level",
        (Q(f'sum by (severity) (rate(riskflow_alerts_total{{mode="live"}}[{RI}]))', "{{severity}}"),),
        unit="ops",
        description="Live alerts per second by severity (red 红 = critical, orange 橙 = high, "
        "yellow 黄 = medium, green 绿 = low).",
    ),
    Panel(
        "Processing latency (message produced → decision)",
        (
            Q(quantile(0.5, "riskflow_processing_latency_seconds"), "p50"),
            Q(quantile(0.99, "riskflow_processing_latency_seconds"), "p99"),
            Q(quantile(0.99, "riskflow_batch_processing_seconds"), "batch p99"),
        ),
        unit="s",
    ),
    Panel(
        "Lag",
        (
            Q("max(riskflow_event_time_lag_seconds)", "event-time lag (s)"),
            Q("sum by (topic) (riskflow_consumer_lag_messages)", "consumer lag {{topic}} (messages)"),
        ),
        unit="short",
        description="Event-time lag: wall clock minus the newest event time processed (a replay of old "
        "history shows its age). Consumer lag: messages waiting on each input topic.",
    ),
    Panel(
        "Invalid events by reason",
        (Q(f"sum by (reason) (rate(riskflow_invalid_events_total[{RI}]))", "{{reason}}"),),
        unit="ops",
    ),
    Panel(
        "Invalid share of input",
        (
            Q(
                f"sum(rate(riskflow_invalid_events_total[{RI}])) / (sum(rate(riskflow_events_total[{RI}]))"
                f" + sum(rate(riskflow_invalid_events_total[{RI}])))",
                "invalid share",
            ),
        ),
        unit="percentunit",
    ),
    Panel(
        "Input offsets per topic (Faust)",
        (
            Q("sum by (topic) (faust_topic_partition_end_offset)", "end {{topic}}"),
            Q("sum by (topic) (faust_topic_partition_offset_commited)", "committed {{topic}}"),
        ),
        description="Faust's own sensors (faust_*): the partitions' end offsets as last fetched, and the "
        "offsets committed after each batch's alerts and states were written.",
    ),
    Panel(
        "Messages sent per topic (Faust)",
        (Q(f"sum by (topic) (rate(faust_topic_messages_sent_total[{RI}]))", "{{topic}}"),),
        unit="ops",
        description="Alerts, risk links and dead letters produced (Faust's producer sensor).",
    ),
)

REGIONAL = (
    Panel(
        "Entities per risk level per city",
        (Q(by_city("riskflow_entities_at_level", "city, level"), "{{city}} {{level}}", instant=True),),
        kind="table",
        options={"format": "table"},
        description="Entities at yellow 黄, orange 橙 and red 红 risk level now, by city (green is not counted).",
    ),
    Panel(
        "Red-level entities per city",
        (Q(by_city('riskflow_entities_at_level{level="red"}'), "{{city}}"),),
    ),
    Panel(
        "Events per city",
        (Q(by_city(f"rate(riskflow_events_total[{RI}])"), "{{city}}"),),
        unit="ops",
    ),
    Panel(
        "Alert rate per city",
        (Q(by_city(f'rate(riskflow_alerts_total{{mode="live"}}[{RI}])'), "{{city}}"),),
        unit="ops",
    ),
    Panel(
        "Alerts by city and severity (selected range)",
        (Q(by_city('increase(riskflow_alerts_total{mode="live"}[$__range])', "city, severity"), instant=True),),
        kind="table",
        options={"format": "table"},
    ),
    Panel(
        "Top rules (selected range)",
        (
            Q(
                'topk(10, sum by (rule) (increase(riskflow_alerts_total{mode="live"}[$__range])))',
                "{{rule}}",
                instant=True,
            ),
        ),
        kind="bargauge",
    ),
    Panel(
        "Entity kinds active per city (events, selected range)",
        (Q(by_city("increase(riskflow_events_total[$__range])", "city, entity_kind"), instant=True),),
        kind="table",
        options={"format": "table"},
    ),
)

DETECTORS = (
    Panel(
        "Hits per rule",
        (Q(f"sum by (rule) (rate(riskflow_alerts_total[{RI}]))", "{{rule}}"),),
        unit="ops",
        width=24,
    ),
    Panel(
        "Shadow vs live",
        (Q(f"sum by (mode) (rate(riskflow_alerts_total[{RI}]))", "{{mode}}"),),
        unit="ops",
        description="Shadow-mode rules fire into the same metric with mode=shadow; their alerts are not "
        "shown to officers.",
    ),
    Panel(
        "Detector evaluation time per batch",
        (
            Q(quantile(0.5, "riskflow_detector_evaluation_seconds"), "p50"),
            Q(quantile(0.99, "riskflow_detector_evaluation_seconds"), "p99"),
        ),
        unit="s",
    ),
    Panel(
        "Rule pack and version",
        (Q("riskflow_build_info", "{{instance}} riskflow {{version}}, rule pack {{rule_pack}}", instant=True),),
        kind="table",
        options={"format": "table"},
        width=16,
        height=5,
    ),
    Panel(
        "Rule packs rejected (selected range)",
        (Q("sum by (reason) (increase(riskflow_rule_pack_rejected_total[$__range]))", "{{reason}}", instant=True),),
        kind="stat",
        width=8,
        height=5,
        description="Messages on the rules topic that were not a valid pack; the running pack stayed. "
        "The worker log names the file, rule id and field.",
    ),
    Panel(
        "Anomaly score drift (PSI) by entity kind",
        (Q("max by (entity_kind) (riskflow_model_score_psi)", "{{entity_kind}}"),),
        description="Population stability index of recent peer-group scores against the training scores. "
        "Above ~0.25 the peer model has gone stale: retrain (riskflow train) and reload.",
    ),
    Panel(
        "Peer-group model: entity-weeks scored",
        (Q(f"sum by (entity_kind) (rate(riskflow_model_scored_total[{RI}]))", "{{entity_kind}}"),),
        unit="ops",
    ),
    Panel(
        "Peer-group model version",
        (Q("riskflow_model_info", "{{instance}} model {{version}}", instant=True),),
        kind="table",
        options={"format": "table"},
        width=12,
        height=5,
    ),
    Panel(
        "Late events (beyond the allowed lateness)",
        (Q(f"sum by (event_type) (rate(riskflow_late_events_total[{RI}]))", "{{event_type}}"),),
        unit="ops",
        height=5,
        description="Events older than RISKFLOW_ALLOWED_LATENESS behind their entity's newest event: "
        "kept out of the detectors and written to the late-event ledger topic.",
    ),
)

DASHBOARDS: dict[str, tuple[str, str, tuple[Panel, ...]]] = {
    "overview": ("riskflow-overview", "RiskFlow · Overview 总览", OVERVIEW),
    "regional-risk": ("riskflow-regional", "RiskFlow · Regional risk 区域风险", REGIONAL),
    "detectors": ("riskflow-detectors", "RiskFlow · Detectors 规则与模型", DETECTORS),
}


def _panel(p: Panel, pid: int, x: int, y: int) -> dict[str, Any]:
    targets = []
    for i, q in enumerate(p.queries):
        t: dict[str, Any] = {
            "datasource": DATASOURCE,
            "expr": q.expr,
            "legendFormat": q.legend or "__auto",
            "refId": chr(ord("A") + i),
            "range": not q.instant,
            "instant": q.instant,
        }
        if p.options.get("format"):
            t["format"] = p.options["format"]
        targets.append(t)
    return {
        "id": pid,
        "type": p.kind,
        "title": p.title,
        "description": p.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": p.height, "w": p.width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": p.unit}, "overrides": []},
        "options": {},
        "targets": targets,
    }


def build(name: str) -> dict[str, Any]:
    uid, title, panels = DASHBOARDS[name]
    out, x, y, row_h = [], 0, 0, 0
    for pid, p in enumerate(panels, start=1):
        if x + p.width > 24:
            x, y, row_h = 0, y + row_h, 0
        out.append(_panel(p, pid, x, y))
        x, row_h = x + p.width, max(row_h, p.height)
    return {
        "uid": uid,
        "title": title,
        "tags": ["riskflow"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": "10s",
        "time": {"from": "now-30m", "to": "now"},
        "templating": {"list": []},
        "annotations": {"list": []},
        "panels": out,
    }


def render(name: str) -> str:
    return json.dumps(build(name), indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    for name in DASHBOARDS:
        (OUT / f"{name}.json").write_text(render(name), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
