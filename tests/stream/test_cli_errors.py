"""Every error a user can cause on the command line: one line on stderr, a non-zero exit, no
traceback. Each case runs ``riskflow`` as a process, as a user would in a terminal."""

from __future__ import annotations

import argparse
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from riskflow.cli import build_parser
from tests.support.cli_tools import riskflow


def one_line_error(r: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a failed command (asserting there is exactly one)."""
    assert r.returncode != 0, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, r.stderr
    return lines[0]


@pytest.fixture
def events(tmp_path: Path) -> Path:
    out = tmp_path / "events.jsonl"
    r = riskflow("simulate", "--entities", "20", "--days", "3", "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A loopback port where nothing listens (held bound, never listening, so it stays dead)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["backtest", "nosuch.jsonl"], "riskflow backtest: cannot read nosuch.jsonl: No such file"),
        (["backtest", "{events}", "--labels", "nolabels.jsonl"], "cannot read nolabels.jsonl"),
        (["replay", "nosuch.jsonl"], "riskflow replay: cannot read nosuch.jsonl"),
        (["replay", "{events}", "--from", "yesterday"], "--from yesterday: not a time"),
        (["replay", "{events}", "--speed", "-3"], "--speed -3: give event-time seconds"),
        (["simulate", "--days", "2"], "--out FILE is required"),
        (["simulate", "--out", "x.jsonl", "--entities", "-5"], "--entities -5: give at least 1"),
        (["simulate", "--out", "x.jsonl", "--days", "-1"], "--days -1"),
        (["simulate", "--out", "x.jsonl", "--start", "2025-13-01", "--days", "2"], "--start 2025-13-01"),
        (["simulate", "--out", "x.jsonl", "--days", "100000"], "in the future"),
        (["simulate", "--out", "x.jsonl", "--scenarios", "bogus=1"], "unknown scenario 'bogus'"),
        (["demo", "--duration", "-1"], "--duration -1"),
        (["demo", "--duration", "abc"], "argument --duration: invalid float value: 'abc'"),
        (["demo", "--entities", "0"], "--entities 0"),
        (["feed", "--port", "99999"], "--port 99999: a port is 0..65535"),
        (["broker", "--port", "99999"], "--port 99999: a port is 0..65535"),
        (["broker", "--port", "0", "--host", "192.0.2.1"], "cannot listen on 192.0.2.1"),
        (["--log-level", "loud", "simulate"], "unknown log level 'loud'"),
        (["nosuch"], "invalid choice: 'nosuch'"),
        (["alerts", "list", "--level", "purple"], "invalid choice: 'purple'"),
    ],
)
def test_misuse_is_one_line_and_a_nonzero_exit(args: list[str], expected: str, tmp_path: Path, events: Path) -> None:
    r = riskflow(*[a.replace("{events}", str(events)) for a in args], cwd=tmp_path)
    assert expected in one_line_error(r)


def test_an_invalid_setting_names_it(tmp_path: Path) -> None:
    r = riskflow("simulate", "--out", "x.jsonl", cwd=tmp_path, env={"RISKFLOW_METRICS_PORT": "99999"})
    assert "RISKFLOW_METRICS_PORT" in one_line_error(r)


@pytest.mark.parametrize("args", [["worker"], ["replay", "{events}"], ["alerts", "tail"], ["alerts", "sink"]])
def test_no_broker_configured_says_how_to_start_one(args: list[str], tmp_path: Path, events: Path) -> None:
    r = riskflow(*[a.replace("{events}", str(events)) for a in args], cwd=tmp_path)
    line = one_line_error(r)
    assert "set RISKFLOW_KAFKA_BOOTSTRAP" in line and "`riskflow broker` starts a local one" in line


@pytest.mark.parametrize("args", [["replay", "{events}"], ["alerts", "tail"]])
def test_no_broker_answering_says_where_and_how_to_start_one(
    args: list[str], tmp_path: Path, events: Path, dead_port: int
) -> None:
    env = {"RISKFLOW_KAFKA_BOOTSTRAP": f"127.0.0.1:{dead_port}"}
    r = riskflow(*[a.replace("{events}", str(events)) for a in args], cwd=tmp_path, env=env)
    line = one_line_error(r)
    assert f"cannot reach Kafka at 127.0.0.1:{dead_port}" in line and "`riskflow broker`" in line
    assert r.returncode == 2


@pytest.mark.parametrize(
    ("setting", "says"),
    [("RISKFLOW_METRICS_PORT", "cannot serve metrics"), ("RISKFLOW_WEB_PORT", "Faust's web server")],
)
def test_worker_with_a_port_taken_fails_naming_the_setting(
    tmp_path: Path, dead_port: int, setting: str, says: str
) -> None:
    """The first failure of issue 20: ``start_http_server`` on a taken port was a traceback (and
    Faust's web server on a taken port stopped the worker in a page of logs)."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        env = {"RISKFLOW_KAFKA_BOOTSTRAP": f"127.0.0.1:{dead_port}", "RISKFLOW_METRICS_PORT": "0", setting: str(taken)}
        r = riskflow("worker", cwd=tmp_path, env=env)
    line = one_line_error(r)
    assert f"{says} on 127.0.0.1:{taken}" in line and setting in line
    assert r.returncode == 2


def test_every_option_has_help() -> None:
    missing: list[str] = []

    def walk(parser: argparse.ArgumentParser, name: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    walk(sub, f"{name} {sub_name}")
            elif not isinstance(action, argparse._HelpAction) and not action.help:
                missing.append(f"{name} {'/'.join(action.option_strings) or action.dest}")

    walk(build_parser(), "riskflow")
    assert not missing


def test_scenarios_list_prints_whole_descriptions(tmp_path: Path) -> None:
    from riskflow.sim import SCENARIOS

    r = riskflow("simulate", "--scenarios", "list", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    flat = " ".join(r.stdout.split())
    for name, cls in SCENARIOS.items():
        about = " ".join((cls.__doc__ or "").strip().split("\n\n")[0].split())
        assert about in flat, name
        assert ", ".join(cls.kinds) in flat, name
