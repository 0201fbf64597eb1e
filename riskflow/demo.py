"""``riskflow demo``: broker, worker, a simulated stream and the alerts, in one command.

The screen shows a short banner (what runs, the feed's URL with its token, the
metrics URL, where the logs are), then one alert a line. Client logs (aiokafka,
Faust's start-up tables) go to log files under ``RISKFLOW_DATA_DIR`` unless
``--verbose``. The demo watches every process and task it started: if the
broker, the worker, the feed or the replay dies, it stops the rest and exits
non-zero with one line saying which and why, never "0 alerts, exit 0".
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from riskflow.broker import BrokerError, EmbeddedBroker, child_setup, free_port, last_line, port_in_use
from riskflow.core.errors import CommandError
from riskflow.core.kafka import check_reachable, client_config, ensure_topics
from riskflow.core.schema import encode_event
from riskflow.core.settings import Settings
from riskflow.feed.server import serve_feed
from riskflow.feedprint import tail_alerts, terminal_width
from riskflow.replay import produce, route
from riskflow.sim import DEFAULT_START, simulate

log = logging.getLogger(__name__)

CHUNK_DAYS = 60
CHUNK_SECONDS = 40.0  # wall seconds to replay one simulated chunk
WATCH_EVERY = 0.5  # seconds between checks that every child still runs


def _chunks(entities: int, seed: int) -> Iterator[list[bytes]]:
    """Endless simulated history, CHUNK_DAYS at a time, as encoded lines."""
    k = 0
    while True:
        start = DEFAULT_START + _dt.timedelta(days=CHUNK_DAYS * k)
        events, _ = simulate(entities=entities, days=CHUNK_DAYS, seed=seed + k, start=start)
        yield [encode_event(e) for e in events]
        k += 1


@dataclass
class DemoLogs:
    """Where the demo's own, the broker's and the worker's logs go: files (default) or stderr."""

    verbose: bool
    main: Path | None = None
    worker: Path | None = None
    _handler: logging.Handler | None = field(default=None, repr=False)

    @classmethod
    def open(cls, data_dir: Path, verbose: bool) -> DemoLogs:
        if verbose:
            return cls(verbose=True)
        data_dir.mkdir(parents=True, exist_ok=True)
        main, worker = data_dir / "demo.log", data_dir / "demo-worker.log"
        for p in (main, worker):
            p.write_bytes(b"")  # this run's logs only
        logs = cls(verbose=False, main=main, worker=worker)
        root = logging.getLogger()
        for h in list(root.handlers):
            if isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) in (sys.stderr, sys.stdout):
                root.removeHandler(h)
        handler = logging.FileHandler(main, mode="a", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        logging.captureWarnings(True)
        logs._handler = handler
        return logs

    def where(self) -> str:
        if self.verbose:
            return "on this terminal (--verbose)"
        return f"{self.main}, {self.worker}  (-v shows them here)"

    def close(self) -> None:
        """Flush; the file keeps what clients log at interpreter exit (unclosed connections)."""
        if self._handler is not None:
            self._handler.flush()


def _worker_reason(proc: subprocess.Popen[bytes], logs: DemoLogs) -> str:
    """One line on a worker that has exited: its code and the line of its log that says why."""
    why = ""
    if logs.worker is not None:
        why = last_line(str(logs.worker), prefer=("riskflow worker:", "Error:", "Exception:"))
    where = f"; log: {logs.worker}" if logs.worker else ""
    code = proc.returncode
    how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
    return f"the worker {how}" + (f" ({why})" if why else "") + where


def _metrics_port(settings: Settings) -> tuple[int, str]:
    """The port the demo's worker serves /metrics on: the configured one, or a free one when
    another process holds it (the demo is a try-out; a production worker fails instead)."""
    want = settings.metrics_port
    if want and port_in_use(settings.metrics_host, want):
        return free_port(settings.metrics_host), f" (port {want} is taken: RISKFLOW_METRICS_PORT)"
    return want, ""


async def _run(
    settings: Settings,
    broker: EmbeddedBroker | None,
    logs: DemoLogs,
    duration: float | None,
    as_json: bool,
    entities: int,
    seed: int,
) -> int:
    """Run until ``duration``, Ctrl-C or SIGTERM; returns the alerts printed. Raises
    :class:`CommandError` when a child dies."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if broker is None:
        await check_reachable(settings)
    await ensure_topics(settings, retries=3)

    metrics_port, metrics_note = _metrics_port(settings)
    env = dict(
        os.environ,
        RISKFLOW_KAFKA_BOOTSTRAP=str(settings.kafka_bootstrap),
        RISKFLOW_METRICS_PORT=str(metrics_port),
    )
    if settings.web_port and port_in_use(settings.web_host, settings.web_port):
        env["RISKFLOW_WEB_PORT"] = "0"  # the demo does not use Faust's web server; a taken port must not kill it
    out = open(logs.worker, "ab") if logs.worker else sys.stderr.buffer  # noqa: SIM115
    try:
        worker = subprocess.Popen(
            [sys.executable, "-m", "riskflow", "worker"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # stopped by the demo, in order, not by the terminal's Ctrl-C
            preexec_fn=child_setup,
        )
    finally:
        if logs.worker:
            out.close()

    feed_ready = asyncio.Event()
    feed_at: list[tuple[str, str | None]] = []

    def on_feed(url: str, token: str | None) -> None:
        feed_at.append((url, token))
        feed_ready.set()

    web = asyncio.create_task(serve_feed(settings, stop, on_ready=on_feed))
    ready = asyncio.create_task(feed_ready.wait())
    printer: asyncio.Task[int] | None = None
    feeder: asyncio.Task[None] | None = None
    failure: str | None = None
    try:
        await asyncio.wait([web, ready], return_when=asyncio.FIRST_COMPLETED)
        if not feed_at:
            ready.cancel()
            raise CommandError(f"the feed did not start: {_task_error(web)}")
        url, token = feed_at[0]
        metrics = f"http://{settings.metrics_host}:{metrics_port}/metrics{metrics_note}" if metrics_port else "off"
        _banner(settings, broker, worker.pid, url, token, metrics, logs, duration, entities, seed)

        printer = asyncio.create_task(
            tail_alerts(
                client_config(settings),
                settings.topic_alerts,
                as_json=as_json,
                stop=stop,
                width=None if as_json else terminal_width(sys.stdout),
            )
        )
        speed = CHUNK_DAYS * 86400 / CHUNK_SECONDS

        async def feed() -> None:
            for lines in _chunks(entities, seed):
                n = await produce(route(lines, settings), client_config(settings), speed=speed, stop=stop)
                log.info("demo: replayed %d simulated events", n)
                if stop.is_set():
                    return

        feeder = asyncio.create_task(feed())
        deadline = None if duration is None else loop.time() + duration
        tasks = {"feed (officers' page and alert store)": web, "alert printer": printer, "replay": feeder}
        while not stop.is_set():
            if worker.poll() is not None:
                failure = _worker_reason(worker, logs)
            elif broker is not None and not broker.alive():
                failure = f"the embedded broker {broker.exit_reason()}"
            else:
                failure = next((f"the {n} stopped: {_task_error(t)}" for n, t in tasks.items() if t.done()), None)
            if failure or (deadline is not None and loop.time() >= deadline):
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), WATCH_EVERY)
    finally:
        stop.set()
        if feeder is not None:
            feeder.cancel()
        pending = [t for t in (printer, feeder, web) if t is not None]
        done, _ = await asyncio.wait(pending, timeout=30) if pending else (set(), set())
        for t in done:  # retrieved, so that asyncio does not log them again at exit
            if not t.cancelled() and t.exception() is not None:
                log.warning("demo: %s", _task_error(t))
        _stop_process(worker)
    if failure:
        raise CommandError(failure)
    return printer.result() if printer is not None and printer in done and not printer.exception() else 0


def _task_error(task: asyncio.Task[Any]) -> str:
    if not task.done():
        return "still running"
    if task.cancelled():
        return "cancelled"
    exc = task.exception()
    if exc is None:
        return "ended"
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]


def _stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _banner(
    settings: Settings,
    broker: EmbeddedBroker | None,
    worker_pid: int,
    feed_url: str,
    token: str | None,
    metrics: str,
    logs: DemoLogs,
    duration: float | None,
    entities: int,
    seed: int,
) -> None:
    """What runs and where, on stderr, once, before the first alert (stdout stays alerts only)."""
    runs = f"runs for {duration:g} s" if duration is not None else "runs until Ctrl-C"
    where = (
        f"embedded Tansu on {settings.kafka_bootstrap} (in memory; stopped with the demo)"
        if broker is not None
        else f"Kafka at {settings.kafka_bootstrap} (RISKFLOW_KAFKA_BOOTSTRAP)"
    )
    feed = f"{feed_url}#token={token}  (admin token for this run)" if token else f"{feed_url}  (RISKFLOW_FEED_TOKENS)"
    lines = [
        f"RiskFlow demo 风险监测演示: {entities} simulated entities (seed {seed}), "
        f"{CHUNK_DAYS} days of events every {CHUNK_SECONDS:g} s; {runs}",
        f"  broker   {where}",
        f"  worker   pid {worker_pid}: rules, anomaly detectors, risk index",
        f"  feed     {feed}",
        f"  metrics  {metrics}",
        f"  store    {settings.store_target()}",
        f"  logs     {logs.where()}",
        "Alerts 预警 follow: event time, severity, level 风险等级, region, entity, rule (↑↓↻: a later revision)",
    ]
    sys.stderr.write("\n".join(lines) + "\n")
    sys.stderr.flush()


def run_demo(
    settings: Settings,
    duration: float | None,
    as_json: bool,
    entities: int = 300,
    seed: int = 7,
    verbose: bool = False,
) -> int:
    if duration is not None and duration <= 0:
        raise CommandError(f"--duration {duration:g}: give a number of seconds above 0")
    if entities < 1:
        raise CommandError(f"--entities {entities}: give at least 1")
    logs = DemoLogs.open(settings.data_dir, verbose)
    broker: EmbeddedBroker | None = None
    started = time.monotonic()
    try:
        if not settings.kafka_bootstrap:
            broker = EmbeddedBroker()  # its own log: the reason quoted if it dies is its own
            try:
                broker.start()
            except BrokerError as exc:
                raise CommandError(str(exc)) from None
            settings = settings.model_copy(update={"kafka_bootstrap": broker.bootstrap})
        shown = asyncio.run(_run(settings, broker, logs, duration, as_json, entities, seed))
    finally:
        if broker is not None:
            broker.stop()
        logs.close()
    sys.stderr.write(
        f"riskflow demo: stopped after {time.monotonic() - started:.0f} s; {shown} alerts shown; "
        f"alert store {settings.store_target()}\n"
    )
    return 0
