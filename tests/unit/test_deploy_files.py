"""deploy/: promtool accepts the Prometheus config and rules; the dashboards are the
generator's output, have the panels the issue asks for, and query only documented metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from deploy.grafana import generate as gen
from riskflow.core.metrics import Metrics
from riskflow.feed.metrics import FeedMetrics
from riskflow.store.metrics import StoreMetrics

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "deploy" / "prometheus"
DASH = ROOT / "deploy" / "grafana" / "dashboards"
PROMTOOL = shutil.which("promtool")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL, "promtool is required (Debian package prometheus, in .ci/apt-packages)"
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60)


def test_promtool_check_config() -> None:
    r = promtool("check", "config", str(PROM / "prometheus.yml"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_promtool_check_rules() -> None:
    r = promtool("check", "rules", str(PROM / "alerts.yml"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 4 rules found" in r.stdout


def test_promtool_rejects_a_broken_rule(tmp_path: Path) -> None:
    """The check above can fail: a rule with bad PromQL is refused."""
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n- name: x\n  rules:\n  - alert: X\n    expr: sum(rate(riskflow_events_total[5m])\n")
    assert promtool("check", "rules", str(bad)).returncode != 0


@pytest.mark.parametrize("name", sorted(gen.DASHBOARDS))
def test_committed_dashboards_are_the_generators_output(name: str) -> None:
    committed = (DASH / f"{name}.json").read_text(encoding="utf-8")
    assert committed == gen.render(name), f"run: python deploy/grafana/generate.py ({name}.json is stale)"


def _titles(name: str) -> list[str]:
    return [p["title"] for p in json.loads((DASH / f"{name}.json").read_text(encoding="utf-8"))["panels"]]


def test_dashboards_have_the_required_views() -> None:
    overview = " | ".join(_titles("overview")).lower()
    for word in ("throughput", "alerts by level", "latency", "lag", "invalid"):
        assert word in overview, word
    regional = " | ".join(_titles("regional-risk")).lower()
    for word in ("per city", "top rules"):
        assert word in regional, word
    detectors = " | ".join(_titles("detectors")).lower()
    for word in (
        "hits per rule",
        "shadow vs live",
        "rule pack and version",
        "rule packs rejected",
        "anomaly score drift",
        "model version",
        "late events",
    ):
        assert word in detectors, word


def test_dashboards_are_consistent() -> None:
    uids = set()
    for f in DASH.glob("*.json"):
        d = json.loads(f.read_text(encoding="utf-8"))
        uids.add(d["uid"])
        ids = [p["id"] for p in d["panels"]]
        assert len(ids) == len(set(ids)), f.name
        for p in d["panels"]:
            assert p["datasource"] == {"type": "prometheus", "uid": "prometheus"}
            assert p["targets"], p["title"]
            g = p["gridPos"]
            assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
    assert len(uids) == 3


def _readme_metrics() -> set[str]:
    """The metrics table of the operators' page (docs/operations.md)."""
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    section = text.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `(riskflow_\w+)`", section, re.M))


def _registered() -> set[str]:
    """Every riskflow_ metric of the worker's bundle and of the feed's and alert sink's."""
    reg = CollectorRegistry()
    Metrics.create(reg)
    FeedMetrics.create(reg)
    StoreMetrics.create(reg)
    out = set()
    for fam in reg.collect():
        out.add(fam.name + ("_total" if fam.type == "counter" else "_info" if fam.type == "info" else ""))
    return out


def test_readme_documents_exactly_the_registered_metrics() -> None:
    assert _readme_metrics() == _registered()


def test_queries_use_only_documented_metrics() -> None:
    documented = _readme_metrics()
    names = set()
    exprs = [t["expr"] for f in DASH.glob("*.json") for p in json.loads(f.read_text())["panels"] for t in p["targets"]]
    exprs += re.findall(r"expr: (.*)", (PROM / "alerts.yml").read_text())
    for e in exprs:
        names |= set(re.findall(r"\b(riskflow_\w+?)(?:_bucket|_count|_sum)?\b(?![\w(])", e))
    assert names, "no RiskFlow metric is queried"
    assert names <= documented, names - documented
