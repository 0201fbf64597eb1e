"""Every dashboard panel and alerting rule, evaluated by a real Prometheus.

Debian's ``prometheus`` binary is started on loopback (free port, temporary
storage, 1 s scrape and rule intervals) from the deploy configuration, scraping
a real ``riskflow worker`` fed with a simulated stream on the embedded broker
(with a small peer-group model loaded, so that model version and score drift
exist), and a real ``riskflow feed`` whose sink opens officers' cases from the
worker's alerts (red cases due within seconds, so that some are overdue).
Each PromQL expression of ``deploy/grafana/dashboards/*.json`` and
``deploy/prometheus/alerts.yml`` must parse and return at least one series
with a finite value; the case panels must return what the feed's store holds.
No timing is asserted; waits are generous.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from riskflow.broker import free_port
from riskflow.commands.train import train
from riskflow.core.schema import REGIONS, encode_event
from riskflow.replay import route
from riskflow.simulate import simulate
from tests.support.browser_tools import _api, _start_feed
from tests.support.kafka_fixtures import Stack

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROMETHEUS = shutil.which("prometheus")
#: What Grafana substitutes for its built-in variables; long enough to span the whole test.
GRAFANA_VARS = {"$__rate_interval": "2m", "$__range": "1h", "$__interval": "5s"}
_THRESHOLD = re.compile(r"^(?P<query>.*?)\s*(?:==|!=|>=|<=|>|<)\s*[-+0-9.eE]+\s*$", re.S)


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, expr) of every target of every panel of every provisioned dashboard."""
    out = []
    for f in sorted((DEPLOY / "grafana" / "dashboards").glob("*.json")):
        for panel in json.loads(f.read_text(encoding="utf-8"))["panels"]:
            for t in panel.get("targets", []):
                out.append((f"{f.stem}: {panel['title']} [{t['refId']}]", t["expr"]))
    return out


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text(encoding="utf-8"))
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def rule_query(expr: str) -> str:
    """An alerting expression without its final threshold: the part that must return data."""
    m = _THRESHOLD.match(expr.strip())
    assert m, f"alerting rule is not '<query> <op> <number>': {expr}"
    return m["query"]


def grafana(expr: str) -> str:
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr}"
    return expr


class Prom:
    def __init__(self, url: str, log: Path) -> None:
        self.url, self.log = url, log

    def get(self, path: str, **params: str) -> Any:
        q = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with urllib.request.urlopen(f"{self.url}{path}{q}", timeout=10) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as exc:  # a PromQL error is a 400 with a JSON body
            return json.loads(exc.read())

    def query(self, expr: str) -> Any:
        return self.get("/api/v1/query", query=expr)

    def values(self, expr: str) -> list[float]:
        body = self.query(expr)
        assert body["status"] == "success", f"{expr}: {body.get('error')}"
        return [float(r["value"][1]) for r in body["data"]["result"]]

    def wait(self, what: str, cond: Any, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return
            time.sleep(0.5)
        pytest.fail(f"timed out waiting for {what}; Prometheus log tail:\n{self.log.read_text()[-2000:]}")


@contextmanager
def run_prometheus(tmp: Path, targets: dict[str, list[str]]) -> Iterator[Prom]:
    """Prometheus with the deploy config and rules, each RiskFlow job retargeted to
    ``targets[job]`` on loopback (the ``prometheus`` job to Prometheus itself)."""
    assert PROMETHEUS, "the prometheus binary is required (.ci/apt-packages lists it)"
    cfg = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    cfg["global"].update(scrape_interval="1s", evaluation_interval="1s")
    cfg["rule_files"] = [str(DEPLOY / "prometheus" / f) for f in cfg["rule_files"]]
    port = free_port()
    for job in cfg["scrape_configs"]:
        job["static_configs"] = [{"targets": targets.get(job["job_name"], [f"127.0.0.1:{port}"])}]
    assert set(targets) <= {job["job_name"] for job in cfg["scrape_configs"]}, "a job the deploy config lacks"
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(cfg))
    log = tmp / "prometheus.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=out,
            stderr=out,
        )
    prom = Prom(f"http://127.0.0.1:{port}", log)
    try:
        prom.wait("Prometheus ready", lambda: proc.poll() is None and _ready(prom.url), timeout=60)
        yield prom
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _lines(seed: int) -> list[bytes]:
    events, _ = simulate(entities=30, days=40, seed=seed)
    return [encode_event(e) for e in events]


def _records(stack: Stack, lines: list[bytes], bad: list[bytes]) -> list[tuple[str, bytes | None, bytes]]:
    s = stack.settings
    good = [(r.topic, r.key, r.value) for r in route(lines, s)]
    return good + [(s.topic_fund_events, b"PF-1", line) for line in bad]


def _risk_config(tmp: Path) -> Path:
    """The shipped risk config with red cases due 0.0001 days (~9 s) after opening."""
    doc = yaml.safe_load((ROOT / "detectors" / "risk" / "risk.yaml").read_text(encoding="utf-8"))
    doc["disposal"]["red"]["deadline_days"] = 0.0001
    path = tmp / "risk.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


def _series(prom: Prom, expr: str, *labels: str) -> dict[tuple[str, ...], float]:
    body = prom.query(grafana(expr))
    assert body["status"] == "success", f"{expr}: {body.get('error')}"
    return {tuple(r["metric"].get(k, "") for k in labels): float(r["value"][1]) for r in body["data"]["result"]}


def _panel_exprs(title_start: str) -> list[str]:
    found = [e for w, e in dashboard_queries() if w.startswith(f"overview: {title_start}")]
    assert found, f"no overview panel titled {title_start}..."
    return found


def test_every_dashboard_and_alert_query_returns_data(
    stack: Stack, tmp_path: Path, invalid_examples: list[tuple[str, bytes]]
) -> None:
    bad = [line for _, line in invalid_examples]
    lines1, lines2 = _lines(3), _lines(8)
    # A small peer-group model, so that the model's version and score-drift series exist.
    model = train(lines1, tmp_path / "models", trees=5, min_rows=5, seed=1)
    stack.env["RISKFLOW_MODEL_DIR"] = str(tmp_path / "models")
    worker = stack.start_worker()
    # The feed (and its sink) only: officers' cases from the worker's alerts, red ones due at once.
    stack.env["RISKFLOW_RISK_CONFIG"] = str(_risk_config(tmp_path))
    feed_port = free_port()
    feed = _start_feed(stack, str(tmp_path / "alerts.sqlite3"), feed_port)
    try:
        with run_prometheus(
            tmp_path, {"riskflow": [f"127.0.0.1:{worker.metrics_port}"], "riskflow-feed": [f"127.0.0.1:{feed_port}"]}
        ) as prom:
            _check_every_query(prom, stack, model.version, bad, lines1, lines2)
            _check_case_panels(prom, feed_port)
    finally:
        feed.terminate()
        feed.wait(30)
    assert worker.proc.poll() is None, worker.log_text()[-2000:]


def _check_every_query(
    prom: Prom, stack: Stack, model_version: str, bad: list[bytes], lines1: list[bytes], lines2: list[bytes]
) -> None:
    prom.wait("worker and feed scraped", lambda: prom.values('up{job=~"riskflow|riskflow-feed"}') == [1.0, 1.0])
    # Two waves, several scrapes apart: the first creates the series, the second
    # moves them, so rates and quantiles come out as numbers, not NaN.
    wave1, wave2 = _records(stack, lines1, bad), _records(stack, lines2, bad)
    stack.produce(wave1)
    prom.wait(
        "wave 1 scraped",
        lambda: (
            prom.values("sum(riskflow_invalid_events_total)") == [float(len(bad))]
            and prom.values('count(riskflow_alerts_total{severity="critical"})') != []
        ),
    )
    time.sleep(3)
    stack.produce(wave2)
    prom.wait(
        "wave 2 scraped",
        lambda: prom.values("sum(riskflow_invalid_events_total)") == [2.0 * len(bad)],
    )
    # Wave 2 shares a few entity ids with wave 1 and starts 40 days earlier: their events
    # land beyond the allowed lateness, in the late-event ledger.
    prom.wait("late events", lambda: sum(prom.values("sum(riskflow_late_events_total)")) > 0)
    prom.wait("score drift", lambda: prom.values("count(riskflow_model_score_psi)") != [], timeout=30)
    assert prom.values(f'count(riskflow_model_info{{version="{model_version}"}})') == [1.0]
    # Open cases exist before the first officer action (which the first-action panel needs).
    prom.wait("open cases scraped", lambda: sum(prom.values("sum(riskflow_cases_open)")) > 0)

    exprs = [(w, grafana(e)) for w, e in dashboard_queries()]
    exprs += [(f"alert {r['alert']}", rule_query(r["expr"])) for r in alert_rules()]
    assert len(exprs) >= 20

    failures: dict[str, str] = {}

    def all_return_data() -> bool:
        failures.clear()
        for where, expr in exprs:
            body = prom.query(expr)
            if body["status"] != "success":
                failures[where] = f"{expr}: {body.get('error')}"
                continue
            vals = [float(r["value"][1]) for r in body["data"]["result"]]
            if not any(math.isfinite(v) for v in vals):
                failures[where] = f"{expr}: no finite value in {vals}"
        return not failures

    # (the first-action quantiles have data only once officers act: _check_case_panels)
    exprs = [(w, e) for w, e in exprs if "first action" not in w]
    deadline = time.monotonic() + 60
    while not all_return_data() and time.monotonic() < deadline:
        time.sleep(1)
    assert not failures, json.dumps(failures, indent=1, ensure_ascii=False)

    # The full alerting expressions (with thresholds) are loaded and evaluated without error.
    prom.wait(
        "rules evaluated",
        lambda: all(r.get("lastEvaluation", "").startswith("20") for r in _loaded_rules(prom)),
        timeout=30,
    )
    loaded = _loaded_rules(prom)
    assert {r["name"] for r in loaded} == {r["alert"] for r in alert_rules()}
    assert all(r["health"] == "ok" for r in loaded), loaded

    # The risk levels reached by the simulated failures show up per city.
    prom.wait("red-level entities", lambda: sum(prom.values('riskflow_entities_at_level{level="red"}')) > 0)

    # Faust's own sensors are exported next to RiskFlow's.
    assert prom.values("count(faust_topic_partition_end_offset)") != []


def _check_case_panels(prom: Prom, feed_port: int) -> None:
    """The three case panels return what the feed's store holds, series by series."""
    feed = f"http://127.0.0.1:{feed_port}"
    city = {code: en for code, (en, _) in REGIONS.items()}
    by_city, other = _panel_exprs("Open cases by level and city")
    (overdue,) = _panel_exprs("Overdue cases by level")
    p50, p90 = _panel_exprs("Time from case open to first action")
    want: dict[str, Any] = {}
    got: dict[str, Any] = {}

    def agree() -> bool:
        cases = [c for c in _api(feed, "/api/cases?limit=5000")["cases"] if c["status"] != "closed"]
        want["open"] = {}
        want["other"] = {}
        want["overdue"] = {lv: 0.0 for lv in ("red", "orange", "yellow")}
        for c in cases:
            if c["region"] in city:
                k = (city[c["region"]], c["level"])
                want["open"][k] = want["open"].get(k, 0.0) + 1
            else:
                want["other"][(c["level"],)] = want["other"].get((c["level"],), 0.0) + 1
            want["overdue"][c["level"]] += c["overdue"]
        got["open"] = {k: v for k, v in _series(prom, by_city, "city", "level").items() if v}
        got["other"] = {k: v for k, v in _series(prom, other, "level").items() if v}
        got["overdue"] = {k[0]: v for k, v in _series(prom, overdue, "level").items()}
        return want == got

    def red_open() -> float:
        return sum(v for (_, lv), v in want["open"].items() if lv == "red") + want["other"].get(("red",), 0.0)

    # Red cases are due ~9 s after opening: wait until every open red case is overdue and the
    # store and Prometheus agree (the sink may still be storing the last alerts).
    prom.wait(
        "case panels agree with the store",
        lambda: agree() and 0 < want["overdue"]["red"] == red_open(),
        timeout=120,
    )
    assert want["overdue"] == {"red": red_open(), "orange": 0.0, "yellow": 0.0}, want
    assert sum(want["open"].values()) > 0 and all(c for c, _ in want["open"]), want

    # Officers act on (up to) three open cases: first actions within seconds of the opening.
    opened = _api(feed, "/api/cases?open=1&limit=3")["cases"]
    assert opened
    for c in opened:
        assert _api(feed, f"/api/cases/{c['case_id']}/assign", {"assignee": "li.na"})["status"] == "assigned"
    prom.wait(
        "first actions scraped",
        lambda: prom.values("sum(riskflow_case_first_action_seconds_count)") == [float(len(opened))],
    )
    for expr in (p50, p90):
        (q,) = _series(prom, expr).values()
        # all within the first bucket (5 min): the quantile interpolates inside it
        assert 0 < q <= 300, (expr, q)


def _loaded_rules(prom: Prom) -> list[dict[str, Any]]:
    body = prom.get("/api/v1/rules")
    return [r for g in body["data"]["groups"] for r in g["rules"]]
