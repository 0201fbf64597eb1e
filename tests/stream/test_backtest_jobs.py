"""``backtest --jobs N``: the history split over N processes by partition gives what one process gives.

The history holds contagion of every relation whose source and dependent live on partitions
held by different processes: the simulator's related-party transfers (to counterparties
with no events of their own) and a hand-made web of managers whose funds and subsidiaries
have events of their own, some registered after their manager's fall (a ``link`` answered by
a ``push``: two rounds of links in one batch). Alerts are compared whole (all but the
wall-clock ``detected_at``) and in emission order, with the report.
"""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import msgspec
import pytest

from riskflow.backtest import BacktestWorkerError, backtest
from riskflow.core.alerts import Alert
from riskflow.core.partitioning import partition_for
from riskflow.core.schema import encode_event
from riskflow.core.settings import Settings
from riskflow.sim import simulate

START = dt.datetime(2025, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=8)))
NOW = 2_000_000_000.0
BATCH = 300  # many batches: links cross batch boundaries too


def _web(managers: int = 6, funds: int = 4) -> list[dict[str, Any]]:
    """Managers that fall (lost contact, then suspended), each with funds registered before and
    after the fall; odd funds name the next manager as their parent company (another source: a
    fund's manager that is also its parent hears of each fall through the stronger relation only)."""
    out: list[dict[str, Any]] = []

    def ev(day: float, eid: str, kind: str, etype: str, source: str, payload: dict[str, Any]) -> None:
        out.append(
            {
                "schema": "riskflow.event/v1",
                "event_id": f"web-{len(out)}",
                "event_type": etype,
                "entity_id": eid,
                "entity_kind": kind,
                "region": "330100",
                "event_time": (START + dt.timedelta(days=day)).isoformat(),
                "source": source,
                "payload": payload,
            }
        )

    for m in range(managers):
        mid = f"PFM-330100-W{m:04d}"
        reg = {"name": f"W{m}", "registered_capital": 1e7, "legal_rep": "张伟", "address": "杭州"}
        ev(1 + m, mid, "private_fund_manager", "entity.registered", "market_regulation", reg)
        for f in range(funds):
            fid = f"PF-330100-W{m:02d}{f:02d}"
            day = 2 + m + 9 * f  # funds 2 and 3 register after the fall
            parent = {"parent_id": f"PFM-330100-W{(m + 1) % managers:04d}"} if f % 2 else {}
            reg = {"name": fid, "registered_capital": 1e7, "legal_rep": "李强", "address": "杭州", **parent}
            ev(day, fid, "private_fund", "entity.registered", "market_regulation", reg)
            fund = {"fund_id": fid, "manager_id": mid, "fund_type": "securities", "structure": "contractual"}
            ev(day + 0.01, fid, "private_fund", "fund.registered", "amac", {**fund, "target_size": 5e7})
            for k in range(6):
                ad = {"channel": "wechat", "guaranteed": k == 4}
                ev(day + 1 + 3 * k, fid, "private_fund", "advertisement.published", "advertising_monitor", ad)
        ev(12 + m, mid, "private_fund_manager", "amac.notice", "amac", {"notice": "lost_contact"})
        action = {"action": "suspension", "reason": "fraud"}
        ev(13 + m, mid, "private_fund_manager", "enforcement.action", "regulator_report", action)
    return out


def contagion_history() -> tuple[list[bytes], list[dict[str, Any]]]:
    events, labels = simulate(entities=60, days=60, seed=7, start=START)
    merged = sorted(events + _web(), key=lambda e: dt.datetime.fromisoformat(e["event_time"]))
    return [encode_event(e) for e in merged], labels


def whole(a: Alert | dict[str, Any]) -> dict[str, Any]:
    d = msgspec.to_builtins(a) if isinstance(a, Alert) else dict(a)
    d.pop("detected_at")
    return d


def report(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k not in ("seconds", "events_per_second")}


def _process_of(entity_id: str, jobs: int) -> int:
    return partition_for(entity_id.encode(), Settings().partitions) % jobs


def test_jobs_give_the_alerts_and_report_of_one_process() -> None:
    lines, labels = contagion_history()
    runs: dict[int, tuple[list[dict[str, Any]], dict[str, Any], set[int]]] = {}
    for jobs in (1, 2, 3):
        alerts: list[dict[str, Any]] = []
        children: set[int] = set()

        def keep(a: Alert, alerts: list[dict[str, Any]] = alerts, children: set[int] = children) -> None:
            alerts.append(whole(a))
            children.add(len(multiprocessing.active_children()))

        rep = backtest(lines, labels, now=NOW, batch_size=BATCH, jobs=jobs, on_alert=keep)
        runs[jobs] = (alerts, report(rep.summary()), children)

    one, summary, children = runs[1]
    assert children == {0}
    assert runs[2][2] == {2} and runs[3][2] == {3}, "the runs with jobs > 1 ran in that many processes"
    crossing = {
        (a["evidence"]["relation"], bool(a["entity_kind"]))
        for a in one
        if a["rule_id"] == "risk.contagion"
        and _process_of(a["evidence"]["source"], 2) != _process_of(a["entity_id"], 2)
    }
    # every relation crosses processes; the manager's and parent's reach dependents with events
    assert {("manager", True), ("parent", True), ("related_party", False)} <= crossing, crossing
    assert summary["alerts"] > 150 and summary["per_rule"]["risk.contagion"]["alerts"] > 20
    for jobs in (2, 3):
        alerts, rep_n, _ = runs[jobs]
        assert len(alerts) == len(one)
        first = next((i for i, (x, y) in enumerate(zip(alerts, one, strict=True)) if x != y), None)
        assert first is None, f"jobs={jobs}: alert #{first} differs: {alerts[first]} != {one[first]}"
        assert rep_n == summary


def test_more_jobs_than_partitions_and_a_single_batch() -> None:
    """Jobs beyond the partitions are not started; a one-batch history runs in this process."""
    lines, labels = contagion_history()
    settings = Settings(partitions=2)
    seen: list[int] = []
    want = backtest(lines, labels, settings=settings, now=NOW, batch_size=BATCH, jobs=1).summary()
    got = backtest(
        lines,
        labels,
        settings=settings,
        now=NOW,
        batch_size=BATCH,
        jobs=8,
        on_alert=lambda a: seen.append(len(multiprocessing.active_children())),
    ).summary()
    assert set(seen) == {2}
    assert report(got) == report(want)
    seen.clear()
    backtest(
        lines,
        labels,
        now=NOW,
        batch_size=len(lines),
        jobs=4,
        on_alert=lambda a: seen.append(len(multiprocessing.active_children())),
    )
    assert seen and set(seen) == {0}


def test_progress_lines_count_the_events_read() -> None:
    """One line per batch at ``progress_every=0``: what the command prints to stderr every 5 s."""
    lines, labels = contagion_history()
    said: list[str] = []
    backtest(lines, labels, now=NOW, batch_size=BATCH, jobs=2, progress=said.append, progress_every=0)
    assert len(said) == -(-len(lines) // BATCH)
    counts = [int(x.split(" events read")[0].replace(",", "")) for x in said]
    assert counts == [min((i + 1) * BATCH, len(lines)) for i in range(len(said))]
    assert all(x.endswith("2 process(es)") for x in said), said[-1]


def _started(pid: int) -> str:
    """How process ``pid`` began: a spawned child runs ``multiprocessing.spawn``, a fork runs
    the parent's command line."""
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    return "spawn" if b"multiprocessing.spawn" in cmdline else "fork"


def _how_started(lines: list[bytes], labels: list[dict[str, Any]]) -> tuple[dict[str, Any], set[str]]:
    """The report of a ``jobs=2`` run, and how its processes began."""
    how: set[str] = set()
    rep = backtest(
        lines,
        labels,
        now=NOW,
        batch_size=BATCH,
        jobs=2,
        on_alert=lambda a: how.update(_started(p.pid or 0) for p in multiprocessing.active_children()),
    )
    return report(rep.summary()), how


def test_forked_or_spawned_processes_give_the_same_report() -> None:
    """From a single-threaded caller the processes are forked; from one with threads, spawned
    (the processor travels pickled): the same report."""
    lines, labels = contagion_history()
    want = report(backtest(lines, labels, now=NOW, batch_size=BATCH).summary())
    # (another test's broker may have left a thread running in this process)
    alone = threading.active_count() == 1
    assert _how_started(lines, labels) == (want, {"fork" if alone else "spawn"})
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert _how_started(lines, labels) == (want, {"spawn"})
    finally:
        stop.set()
        other.join()


def test_a_killed_process_ends_the_run_with_one_error() -> None:
    """A process killed mid-run (as by the OOM killer): the run stops with an error naming it,
    promptly, and leaves no process behind."""
    lines, labels = contagion_history()
    killed: list[int] = []

    def kill_one(a: Alert) -> None:
        if not killed:
            victim = multiprocessing.active_children()[0]
            os.kill(victim.pid or 0, signal.SIGKILL)
            killed.append(victim.pid or 0)

    with pytest.raises(BacktestWorkerError, match=r"backtest process \d of 2 was killed by signal 9"):
        backtest(lines, labels, now=NOW, batch_size=BATCH, jobs=2, on_alert=kill_one)
    assert killed
    assert multiprocessing.active_children() == []


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "riskflow", "backtest", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def test_cli_jobs_2_writes_what_jobs_1_writes(tmp_path: Path) -> None:
    lines, labels = contagion_history()
    (tmp_path / "events.jsonl").write_bytes(b"".join(x + b"\n" for x in lines))
    (tmp_path / "labels.jsonl").write_text("".join(json.dumps(x) + "\n" for x in labels))
    outs = {}
    for jobs in ("1", "2"):
        alerts = tmp_path / f"alerts-{jobs}.jsonl"
        args = ["events.jsonl", "--labels", "labels.jsonl", "--json", "--batch-size", str(BATCH)]
        proc = _cli(*args, "--jobs", jobs, "--alerts-out", alerts.name, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr
        written = [whole(json.loads(x)) for x in alerts.read_text().splitlines()]
        outs[jobs] = (written, report(json.loads(proc.stdout)))
    assert outs["1"][0] and any(a["rule_id"] == "risk.contagion" for a in outs["1"][0])
    assert outs["2"] == outs["1"]


@pytest.mark.parametrize("value", ["0", "abc", "-2", "1.5"])
def test_cli_rejects_a_bad_jobs_count_in_one_line(value: str, tmp_path: Path) -> None:
    (tmp_path / "events.jsonl").write_bytes(b"")
    proc = _cli("events.jsonl", f"--jobs={value}", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("riskflow backtest: --jobs"), proc.stderr
