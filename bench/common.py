"""Shared helpers of the benchmarks: broker, simulated history, producer, raw consumer, workers.

Every benchmark measures RiskFlow *side by side* with a reference measured in
the same run on the same data (a raw aiokafka ``getmany`` + orjson consumer),
and reports the ratio: the machine is shared, so absolute figures drift with
the load of others, ratios much less.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from riskflow.broker import EmbeddedBroker, bind_error, free_port
from riskflow.core.kafka import ensure_topics
from riskflow.core.schema import encode_event
from riskflow.core.settings import Settings, prefixed_topics
from riskflow.replay import route
from riskflow.simulate import simulate

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("RISKFLOW_BENCH_CACHE", "/tmp/riskflow-bench"))
#: Events per entity-day of the simulator (measured): sizes the population for ``n`` events.
_RATE = 0.45


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def percentile(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def history(
    n: int, seed: int = 7, days: int = 60, mix: dict[str, float] | None = None, intensity: float = 1.0
) -> list[bytes]:
    """``n`` events of a simulated history (JSON lines, event-time order), cached on disk.

    ``mix`` and ``intensity`` are the simulator's scenario shares and signal rate
    (default: its own base rates).
    """
    CACHE.mkdir(parents=True, exist_ok=True)
    tag = ",".join(f"{k}={v}" for k, v in sorted((mix or {}).items()))
    path = CACHE / f"history-{n}-{seed}-{days}-{tag}-{intensity}.jsonl"
    if path.exists():
        return path.read_bytes().splitlines()[:n]
    entities = max(20, int(n / (days * _RATE)) + 1)
    while True:
        events, _ = simulate(entities=entities, days=days, seed=seed, scenarios=mix, intensity=intensity)
        if len(events) >= n:
            break
        entities = int(entities * n / max(1, len(events)) * 1.1) + 1
    lines = [encode_event(e) for e in events[:n]]
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(b"\n".join(lines) + b"\n")
    tmp.replace(path)
    return lines


@contextmanager
def broker(bootstrap: str | None = None) -> Iterator[str]:
    """An embedded Tansu broker for the benchmark (or an existing cluster's bootstrap)."""
    if bootstrap:
        yield bootstrap
        return
    CACHE.mkdir(parents=True, exist_ok=True)
    with EmbeddedBroker(log_file=str(CACHE / "tansu.log")) as b:
        yield b.bootstrap


def stack_settings(bootstrap: str, name: str | None = None, **extra: str) -> dict[str, str]:
    """RISKFLOW_* environment of one isolated deployment (own topics, own app id)."""
    name = name or f"b{uuid.uuid4().hex[:8]}"
    env = {
        "RISKFLOW_KAFKA_BOOTSTRAP": bootstrap,
        "RISKFLOW_APP_ID": f"riskflow-{name}",
        **prefixed_topics(name),
        "RISKFLOW_WEB_PORT": "0",
        "RISKFLOW_SESSION_TIMEOUT": "6",
        "RISKFLOW_LOG_LEVEL": "warning",
    }
    env.update(extra)
    return env


def settings_of(env: dict[str, str]) -> Settings:
    return Settings(**{k[len("RISKFLOW_") :].lower(): v for k, v in env.items()})


async def _produce(bootstrap: str, records: list[tuple[str, bytes | None, bytes]]) -> None:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=256 * 1024)
    await p.start()
    try:
        for topic, key, value in records:
            await p.send(topic, value, key=key)
        await p.flush()
    finally:
        await p.stop()


def load_topics(env: dict[str, str], lines: list[bytes]) -> int:
    """Create the deployment's topics and write ``lines`` to the input topics, as ``riskflow replay`` does."""
    s = settings_of(env)
    asyncio.run(ensure_topics(s))
    records = [(r.topic, r.key, r.value) for r in route(lines, s)]
    asyncio.run(_produce(s.kafka_bootstrap or "", records))
    return len(records)


def input_topics(env: dict[str, str]) -> list[str]:
    return [env["RISKFLOW_TOPIC_INSTITUTION_EVENTS"], env["RISKFLOW_TOPIC_FUND_EVENTS"]]


@dataclass
class Rate:
    """Events counted between the first and the last progress sample."""

    count: int
    seconds: float
    #: CPU seconds (user + system, every thread) the workers spent over the same span, if known
    cpu_seconds: float | None = None

    @property
    def cpu_us_per_event(self) -> float:
        """Worker CPU per event counted: a figure the shared machine's load moves less than the rate."""
        return 1e6 * self.cpu_seconds / self.count if self.cpu_seconds is not None and self.count else float("nan")

    @property
    def per_s(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else float("nan")


def rate_of(samples: list[tuple[float, int]], cpu: list[float] | None = None) -> Rate:
    """Throughput from (time, cumulative count) samples: from the first progress to the last.

    The first sample's own count is excluded (it arrived before the clock started).
    ``cpu``: the workers' cumulative CPU seconds at each sample (then also over that span).
    """
    moving = [i for i, (_, c) in enumerate(samples) if c > 0]
    if len(moving) < 2:
        return Rate(0, 0.0)
    first = moving[0]
    last_c = samples[moving[-1]][1]
    last = next(i for i in moving if samples[i][1] == last_c)
    spent = cpu[last] - cpu[first] if cpu is not None else None
    return Rate(last_c - samples[first][1], samples[last][0] - samples[first][0], spent)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far, all threads (Linux ``/proc``), else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def plain_consumer(bootstrap: str, topics: list[str], fetch_ms: int, **extra: Any) -> AIOKafkaConsumer:
    """A consumer outside any group, from the start of ``topics``, with fetch wait ``fetch_ms``."""
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=fetch_ms,
        **extra,
    )


async def arrivals(
    bootstrap: str, topics: list[str], fetch_ms: int, stop: asyncio.Event
) -> AsyncIterator[tuple[float, ConsumerRecord]]:
    """(arrival time, record) of every record of ``topics`` read by a :func:`plain_consumer`,
    until ``stop`` is set; the arrival time is taken once per fetched batch."""
    c = plain_consumer(bootstrap, topics, fetch_ms)
    await c.start()
    try:
        while not stop.is_set():
            batch = await c.getmany(timeout_ms=100)
            now = time.time()
            for msgs in batch.values():
                for m in msgs:
                    yield now, m
    finally:
        await c.stop()


async def raw_consume(
    bootstrap: str, topics: list[str], expect: int, *, fetch_max_wait_ms: int = 50, quiet: float = 3.0
) -> Rate:
    """The reference: a raw aiokafka consumer, ``getmany`` + ``orjson.loads`` of every value.

    Reads from the start until ``expect`` events or ``quiet`` seconds without any
    (Tansu reports end offsets short, so the last batch may stay unread).
    """
    c = plain_consumer(bootstrap, topics, fetch_max_wait_ms, max_partition_fetch_bytes=4 * 1024 * 1024)
    max_records = min(10_000, max(50, expect // 20))  # enough progress samples on a small topic too
    await c.start()
    samples: list[tuple[float, int]] = []
    got = 0
    loads = orjson.loads
    try:
        last = time.monotonic()
        while got < expect and time.monotonic() - last < quiet:
            batch = await c.getmany(timeout_ms=200, max_records=max_records)
            for msgs in batch.values():
                for m in msgs:
                    loads(m.value)
                got += len(msgs)
            if batch:
                last = time.monotonic()
                samples.append((last, got))
    finally:
        await c.stop()
    return rate_of(samples)


def scrape(port: int) -> dict[str, float]:
    """Sum of each metric family (over labels) from a worker's /metrics, or {} if unreachable."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        try:
            out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
        except ValueError:
            continue
    return out


def handled(metrics: dict[str, float]) -> int:
    """Input messages a worker has fully handled: valid events plus dead letters."""
    return int(metrics.get("riskflow_events_total", 0) + metrics.get("riskflow_invalid_events_total", 0))


def free_ports(count: int, host: str = "127.0.0.1") -> int:
    """A port ``p`` with ``p .. p + count - 1`` all free (``worker --processes`` uses base + i)."""
    while True:
        port = free_port(host)
        if all(bind_error(host, port + i) is None for i in range(1, count)):
            return port


@dataclass
class WorkerProc:
    """One ``riskflow worker`` command: a worker, or a supervisor of ``processes`` workers."""

    proc: subprocess.Popen[bytes]
    metrics_port: int
    log: Path
    processes: int = 1

    @property
    def metrics_ports(self) -> list[int]:
        return [self.metrics_port + i for i in range(self.processes)]

    def pids(self) -> list[int] | None:
        """The processes doing the work: the worker, or the supervisor and the children it
        reported starting (the latest pid of each); None until every child is reported."""
        if self.processes == 1:
            return [self.proc.pid]
        started = re.findall(r"worker process (\d+): pid (\d+)", self.log.read_text(errors="replace"))
        latest = {int(i): int(pid) for i, pid in started}
        return [self.proc.pid, *latest.values()] if len(latest) == self.processes else None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def tail(self, n: int = 2000) -> str:
        return self.log.read_text(errors="replace")[-n:]


@dataclass
class Workers:
    env: dict[str, str]
    procs: list[WorkerProc] = field(default_factory=list)

    def start(self, count: int = 1, processes: int = 1) -> Workers:
        """``count`` worker commands, each ``riskflow worker --processes <processes>``."""
        CACHE.mkdir(parents=True, exist_ok=True)
        extra = ["--processes", str(processes)] if processes > 1 else []
        for _ in range(count):
            port = free_ports(processes)
            n = len(self.procs)
            tag = self.env["RISKFLOW_APP_ID"]
            log = CACHE / f"{tag}-worker-{n}.log"
            env = dict(os.environ, **self.env, RISKFLOW_METRICS_PORT=str(port))
            env["RISKFLOW_DATA_DIR"] = str(CACHE / f"{tag}-data-{n}")
            env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
            with open(log, "wb") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "riskflow", "worker", *extra], env=env, stdout=out, stderr=out, cwd=ROOT
                )
            self.procs.append(WorkerProc(proc, port, log, processes))
        return self

    def total(self) -> int | None:
        """Messages handled by all workers so far (None while a worker's /metrics is not up)."""
        n = 0
        for w in self.procs:
            if w.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {w.proc.returncode}:\n{w.tail()}")
            for port in w.metrics_ports:
                m = scrape(port)
                if not m:
                    return None
                n += handled(m)
        return n

    def follow(self, expect: int, *, timeout: float = 600.0, quiet: float = 10.0, every: float = 1.0) -> Rate:
        """Sample progress until ``expect`` messages are handled (or no progress for ``quiet`` s).

        Every ``every`` s: a scrape renders all of the worker's series on the worker's CPU
        (profiles of a busy worker: ~19% of its samples at one scrape per 0.5 s); Prometheus
        itself scrapes every 15 s."""
        samples: list[tuple[float, int]] = []
        cpu: list[float] = []
        deadline = time.monotonic() + timeout
        last_change, last_n = time.monotonic(), -1
        while time.monotonic() < deadline:
            n = self.total()
            now = time.monotonic()
            if n is not None:
                samples.append((now, n))
                spent = self.cpu()
                cpu.append(spent if spent is not None else math.nan)
                if n != last_n:
                    last_change, last_n = now, n
                if n >= expect or (n > 0 and now - last_change > quiet):
                    break
            time.sleep(every)
        return rate_of(samples, cpu)

    def cpu(self) -> float | None:
        """The workers' CPU seconds so far (``/proc``: costs them nothing), or None if unknown.
        A supervisor's own CPU counts with its children's: it is part of the product."""
        pids = [w.pids() for w in self.procs]
        spent = [cpu_seconds(pid) for ps in pids for pid in (ps or [])]
        return None if None in pids or None in spent else sum(x for x in spent if x is not None)

    def follow_outside(
        self, expect: int, *, timeout: float = 600.0, quiet: float = 10.0, poll: float = 0.2, idle: float = 1.0
    ) -> Rate:
        """Like :meth:`follow`, with no scrape of ``/metrics`` inside the measured span.

        Before the span, ``/metrics`` is scraped every 0.1 s until the workers have handled
        an event: the span starts at that scrape. Inside it, only the workers' CPU seconds
        are read (``/proc``) every ``poll`` s. Once they have used less than a quarter of a
        core over ``idle`` s, the span ends at the last busy reading and one scrape counts
        what they handled; short of ``expect`` and still moving within ``quiet`` s, the
        watch goes on (a pause mid-run costs one scrape a second)."""
        started = time.monotonic() + 60  # a supervisor names its children's pids once it started them
        while self.cpu() is None and time.monotonic() < started and all(w.proc.poll() is None for w in self.procs):
            time.sleep(0.1)
        if self.cpu() is None:
            return self.follow(expect, timeout=timeout, quiet=quiet)
        deadline = time.monotonic() + timeout
        n0 = self.total()
        while not n0 and time.monotonic() < deadline:
            time.sleep(0.1)
            n0 = self.total()
        t0, cpu0 = time.monotonic(), self.cpu()
        if not n0 or cpu0 is None:
            return Rate(0, 0.0)
        busy_t, busy_cpu = prev_t, prev_cpu = t0, cpu0
        n, last_change = n0, t0
        while time.monotonic() < deadline:
            time.sleep(poll)
            spent = self.cpu()
            now = time.monotonic()
            if spent is None:
                break  # a worker is gone: the caller's next look says why
            if spent - prev_cpu >= 0.25 * (now - prev_t):
                busy_t, busy_cpu = now, spent
            prev_t, prev_cpu = now, spent
            if now - busy_t < idle:
                continue
            count = self.total()
            if count is None:
                continue
            if count != n:
                n, last_change = count, now
            if n >= expect or now - last_change > quiet:
                break
        return Rate(n - n0, busy_t - t0, busy_cpu - cpu0)

    def stop(self) -> None:
        for w in self.procs:
            w.stop()

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def headline(name: str, value: float, digits: int = 3) -> None:
    """The last line of every benchmark: ``name=value``."""
    print(f"{name}={value:.{digits}f}" if isinstance(value, float) else f"{name}={value}", flush=True)
