"""Offline evaluation: run the live pipeline over a file and score it against labels.

The backtest builds its processor with :func:`detectors.factory.build_processor`
— the one the live worker uses — and feeds it the file in large batches,
keeping entity state as the same msgpack bytes the worker's changelog-backed
table holds (decoded before, encoded after each batch). Each event carries the
topic and partition Kafka would give it (:mod:`riskflow.core.partitioning`). The
same history therefore yields the same alert ids and levels as a live worker.
With ``jobs=N`` the partitions are shared among N processes, with the output of
one (:class:`_Shard` says how).

Measures (defined precisely in docs/backtest.md, "Backtest"):

- an entity is *bad* when it has a label without ``"normal": true``; *normal*
  otherwise (no label, or a benign look-alike label);
- a *true alert* is a live-mode alert on a bad entity whose ``event_time``
  lies in ``[onset_time, failure_time]`` (failure ``null``: no upper bound);
- recall = bad entities with at least one true alert / bad entities;
- precision = true alerts / all live-mode alerts (alerts counted once per
  ``alert_id``);
- false alerts per 1,000 entity-days = alerts on normal entities × 1000 /
  (normal entities × history span in days), the span running from the
  earliest event to the latest valid one;
- lead time of a detected entity = failure_time − its first true alert, days;
  recall 30 days before failure = bad entities with a lead time >= 30 days /
  bad entities with a failure time;
- alerts on entities with no event in the file (e.g. contagion reaching a
  counterparty only named in transfers) are reported apart and not scored.

>>> from riskflow.sim import simulate
>>> from riskflow.core.schema import encode_event
>>> events, labels = simulate(entities=40, days=60, seed=3)
>>> rep = backtest([encode_event(e) for e in events], labels)
>>> 0.0 <= rep.summary()["recall"] <= 1.0
True
"""

from __future__ import annotations

import datetime as _dt
import itertools
import multiprocessing
import pickle
import signal
import statistics
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, NamedTuple

import msgspec

from detectors.engine import EntityState, decode_state, encode_state
from detectors.factory import pack_from_settings, processor_from_settings
from detectors.pipeline import BatchProcessor, RawMessage
from detectors.risk.contagion import decode_link, encode_link
from detectors.rules import RulePack
from riskflow.core.alerts import SEVERITIES, Alert
from riskflow.core.partitioning import partition_for
from riskflow.core.schema import topic_role
from riskflow.core.settings import Settings

DAY = 86400.0
#: lead time that counts as an early warning for ``recall_30d_before_failure``
EARLY_DAYS = 30.0


class _Head(msgspec.Struct):
    entity_id: str = ""
    entity_kind: str = ""


class _Time(msgspec.Struct):
    event_time: _dt.datetime | None = None


_head = msgspec.json.Decoder(_Head)
_time = msgspec.json.Decoder(_Time)


@dataclass
class AlertRecord:
    """One alert id as a sink would keep it: the highest revision, and when it first fired."""

    alert: Alert
    first_ts: float


@dataclass
class Report:
    """Everything the backtest learned; :meth:`summary` is the ``--json`` document."""

    alerts: dict[str, AlertRecord]
    labels: dict[str, dict[str, Any]]
    entities: dict[str, str]  # entity id -> kind, every entity with an event in the file
    events: int
    dead_letters: Counter[str]
    span_days: float
    seconds: float
    pack_version: str
    extra: dict[str, Any] = field(default_factory=dict)

    def _score(self, min_rank: int = 0, level_field: str = "severity", only: Any = None) -> dict[str, Any]:
        ranks = {s: i for i, s in enumerate(SEVERITIES if level_field == "severity" else LEVELS)}
        bad = {e: lab for e, lab in self.labels.items() if not lab.get("normal")}
        normal = [e for e in self.entities if e not in bad]
        entity_days = max(len(normal) * self.span_days, 1e-9)
        by_entity: dict[str, list[AlertRecord]] = defaultdict(list)
        for rec in self.alerts.values():
            a = rec.alert
            if (
                a.mode == "live"
                and ranks.get(getattr(a, level_field), -1) >= min_rank
                and (only is None or a.rule_id in only)
                and a.entity_id in self.entities
            ):
                by_entity[a.entity_id].append(rec)
        true_alerts = 0
        total = sum(len(v) for v in by_entity.values())
        per_scenario: dict[str, dict[str, Any]] = {}
        leads_all: list[float] = []
        detected_all = early_all = with_failure_all = 0
        for name in sorted({lab["scenario"] for lab in self.labels.values()}):
            members = [e for e, lab in self.labels.items() if lab["scenario"] == name]
            rules: Counter[str] = Counter()
            if all(self.labels[e].get("normal") for e in members):
                n_alerts = sum(len(by_entity.get(e, ())) for e in members)
                for e in members:
                    rules.update(r.alert.rule_id for r in by_entity.get(e, ()))
                per_scenario[name] = {
                    "normal": True,
                    "entities": len(members),
                    "alerted_entities": sum(1 for e in members if by_entity.get(e)),
                    "false_alerts": n_alerts,
                    "false_alerts_per_1000_entity_days": round(
                        n_alerts * 1000 / max(len(members) * self.span_days, 1e-9), 3
                    ),
                    "rule_hits": dict(rules.most_common()),
                }
                continue
            leads: list[float] = []
            detected = early = late = in_window = 0
            for e in members:
                lab = bad[e]
                onset, failure = lab["_onset"], lab["_failure"]
                first: float | None = None
                for rec in by_entity.get(e, ()):
                    rules[rec.alert.rule_id] += 1
                    if rec.first_ts < onset:
                        early += 1
                    elif failure is not None and rec.first_ts > failure:
                        late += 1
                    else:
                        in_window += 1
                        first = rec.first_ts if first is None else min(first, rec.first_ts)
                if first is not None:
                    detected += 1
                    if failure is not None:
                        leads.append((failure - first) / DAY)
            true_alerts += in_window
            detected_all += detected
            leads_all += leads
            with_failure = sum(1 for e in members if bad[e]["_failure"] is not None)
            early_all += sum(1 for x in leads if x >= EARLY_DAYS)
            with_failure_all += with_failure
            per_scenario[name] = {
                "entities": len(members),
                "detected": detected,
                "recall": round(detected / len(members), 4),
                "precision": round(in_window / max(in_window + early + late, 1), 4),
                "alerts_in_window": in_window,
                "alerts_before_onset": early,
                "alerts_after_failure": late,
                "median_lead_days": round(statistics.median(leads), 2) if leads else None,
                "worst_lead_days": round(min(leads), 2) if leads else None,
                "recall_30d_before_failure": round(sum(1 for x in leads if x >= EARLY_DAYS) / with_failure, 4)
                if with_failure
                else None,
                "rule_hits": dict(rules.most_common()),
            }
        false_alerts = sum(len(by_entity.get(e, ())) for e in normal)
        alerted = [e for e in by_entity if by_entity[e]]
        return {
            "recall": round(detected_all / len(bad), 4) if bad else None,
            "precision": round(true_alerts / total, 4) if total else None,
            "entity_precision": round(
                sum(1 for e in alerted if e in bad and any(r for r in by_entity[e])) / len(alerted), 4
            )
            if alerted
            else None,
            "false_alerts": false_alerts,
            "false_alerts_per_1000_entity_days": round(false_alerts * 1000 / entity_days, 3),
            "median_lead_days": round(statistics.median(leads_all), 2) if leads_all else None,
            "worst_lead_days": round(min(leads_all), 2) if leads_all else None,
            "recall_30d_before_failure": round(early_all / with_failure_all, 4) if with_failure_all else None,
            "per_scenario": per_scenario,
        }

    def summary(self, rule_ids: Any = None) -> dict[str, Any]:
        """The report; ``rule_ids``: score only alerts of these rules (default: all)."""
        out = self._score(only=rule_ids)
        rules: dict[str, Counter[str]] = defaultdict(Counter)
        flagged: dict[str, set[str]] = defaultdict(set)
        bad = {e for e, lab in self.labels.items() if not lab.get("normal")}
        for rec in self.alerts.values():
            a = rec.alert
            if rule_ids is not None and a.rule_id not in rule_ids:
                continue
            c = rules[a.rule_id]
            c["alerts"] += 1
            flagged[a.rule_id].add(a.entity_id)
            if a.entity_id not in self.entities:
                c["on_unseen_entities"] += 1
            else:
                c["on_bad_entities" if a.entity_id in bad else "on_normal_entities"] += 1
            if a.mode != "live":
                c["shadow"] += 1
        points = []
        for i, sev in enumerate(SEVERITIES):
            s = self._score(i, only=rule_ids)
            points.append(
                {
                    "min_severity": sev,
                    "recall": s["recall"],
                    "precision": s["precision"],
                    "false_alerts_per_1000_entity_days": s["false_alerts_per_1000_entity_days"],
                }
            )
        if any(r.alert.risk_level for r in self.alerts.values()):
            for i, lvl in enumerate(LEVELS):
                s = self._score(i, "risk_level", rule_ids)
                points.append(
                    {
                        "min_risk_level": lvl,
                        "recall": s["recall"],
                        "precision": s["precision"],
                        "false_alerts_per_1000_entity_days": s["false_alerts_per_1000_entity_days"],
                    }
                )
        unseen = Counter(
            r.alert.rule_id
            for r in self.alerts.values()
            if r.alert.entity_id not in self.entities and (rule_ids is None or r.alert.rule_id in rule_ids)
        )
        return {
            **out,
            "alerts_on_unseen_entities": dict(unseen),
            "events": self.events,
            "dead_letters": dict(self.dead_letters),
            "entities": len(self.entities),
            "labelled_entities": len(self.labels),
            "span_days": round(self.span_days, 3),
            "alerts": sum(1 for r in self.alerts.values() if rule_ids is None or r.alert.rule_id in rule_ids),
            "per_rule": {k: {**v, "entities": len(flagged[k])} for k, v in sorted(rules.items())},
            "alerted_entities": len(set().union(*flagged.values())),
            "operating_points": points,
            "rule_pack_version": self.pack_version,
            "seconds": round(self.seconds, 3),
            "events_per_second": round(self.events / self.seconds) if self.seconds else None,
            **self.extra,
        }


#: Risk levels of the risk index, lowest first (风险等级: 绿 黄 橙 红).
LEVELS = ("green", "yellow", "orange", "red")


def _ts(text: str) -> float:
    return _dt.datetime.fromisoformat(text).timestamp()


def prepare_labels(labels: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {}
    for lab in labels:
        lab = dict(lab)
        lab["_onset"] = _ts(lab["onset_time"])
        lab["_failure"] = _ts(lab["failure_time"]) if lab.get("failure_time") else None
        out[lab["entity_id"]] = lab
    return out


def backtest(
    lines: Iterable[bytes],
    labels: Iterable[dict[str, Any]] = (),
    pack: RulePack | None = None,
    settings: Settings | None = None,
    *,
    batch_size: int = 20_000,
    now: float | None = None,
    on_alert: Any = None,
    jobs: int = 1,
    progress: Callable[[str], object] | None = None,
    progress_every: float = 5.0,
) -> Report:
    """Run the shared pipeline over ``lines`` (one event each, event-time order) and score it.

    ``on_alert(alert)`` is called for every alert emitted (revisions too), in order.
    ``jobs``: processes sharing the input partitions (at most ``settings.partitions``); the
    alerts, their order and the report are the same for every value (see :class:`_Shard`).
    A history of a single batch runs in this process. ``progress(text)`` receives a line
    after a batch when ``progress_every`` seconds have passed since the last one.
    """
    settings = settings or Settings.defaults()
    pack = pack or pack_from_settings(settings)
    bp = processor_from_settings(settings, pack, links_topic=_LINKS)
    now = time.time() if now is None else now
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, not {jobs}")
    started = time.perf_counter()
    chunks = _chunks(lines, batch_size)
    head = list(itertools.islice(chunks, 2))
    jobs = min(jobs, settings.partitions) if len(head) > 1 else 1
    layout = _Layout(settings.partitions, settings.topic_fund_events, settings.topic_institution_events, jobs)
    alerts: dict[str, AlertRecord] = {}
    read = 0
    last = started
    risk = bp.engine.risk
    window = risk.config.contagion_delay if risk is not None else 0.0
    with _shards(bp, layout, now) as shards:
        for n, batch_alerts in shards.run(itertools.chain(head, chunks), window):
            for a in batch_alerts:
                if on_alert is not None:
                    on_alert(a)
                ts = _ts(a.event_time)
                rec = alerts.get(a.alert_id)
                if rec is None:
                    alerts[a.alert_id] = AlertRecord(a, ts)
                else:
                    if a.revision >= rec.alert.revision:
                        rec.alert = a
                    rec.first_ts = min(rec.first_ts, ts)
            read += n
            if progress is not None and time.perf_counter() - last >= progress_every:
                last = time.perf_counter()
                secs = last - started
                progress(f"{read:,} events read in {secs:.0f}s ({read / secs:,.0f}/s), {jobs} process(es)")
        totals = shards.totals()
    seconds = time.perf_counter() - started
    t_min = min((t.t_min for t in totals), default=float("inf"))
    t_max = max((t.t_max for t in totals), default=float("-inf"))
    entities: dict[str, str] = {}
    dead: Counter[str] = Counter()
    for t in totals:
        entities.update(t.entities)
        dead.update(t.dead)
    span = max((t_max - t_min) / DAY, 1.0) if t_max >= t_min else 1.0
    events = sum(t.events for t in totals)
    return Report(alerts, prepare_labels(labels), entities, events, dead, span, seconds, pack.version)


#: The links topic of an offline run. With it, a batch's contagion links come out of
#: ``BatchProcessor.process`` as messages and go back in as messages on it, in the order the
#: in-process delivery (``links_topic=None``) would take them, to whichever process holds
#: their target (:class:`_Shard`).
_LINKS = "riskflow.backtest-links"

#: Where an output of a batch stands in the order of one process over the whole history:
#: (phase: 0 for the events, n for the n-th round of links; the position in that phase of the
#: first message of the ``process`` call that emitted it; its index in that call's output).
_Key = tuple[int, int, int]


class _Layout(NamedTuple):
    """How the history is split: Kafka's placement of each entity, and which process holds
    each partition (partition ``p`` belongs to process ``p % jobs``)."""

    partitions: int
    fund_topic: str
    inst_topic: str
    jobs: int

    def owner(self, entity_id: str) -> int:
        return partition_for(entity_id.encode(), self.partitions) % self.jobs if entity_id else 0


@dataclass
class _Totals:
    events: int
    dead: Counter[str]
    entities: dict[str, str]
    t_min: float
    t_max: float


class _Shard:
    """The entities of the partitions one process holds, and their processing, batch by batch.

    Every process reads every batch of the history (the same batches as ``jobs=1``) and
    processes its own events of it, in order. Its events form *runs*, stretches of the batch
    with no event of another process; one ``process`` call per run, so each alert and link
    carries its place in the single-process order (:data:`_Key`). The links of a batch are
    then delivered in rounds, as ``BatchProcessor`` delivers them in-process: round n holds
    the links round n-1 produced, in the order it produced them, each at the process holding
    its target. Entity state and event-time lanes are per partition, so every entity sees the
    same events, links and order as in one process, and the merged alerts are identical.
    States go back to bytes at each batch boundary, as in one process.
    """

    def __init__(self, bp: BatchProcessor, layout: _Layout, now: float, index: int = 0) -> None:
        self.bp, self.layout, self.now, self.index = bp, layout, now, index
        self.store: dict[str, bytes] = {}
        self.held: dict[str, EntityState] = {}  # states the current batch changed, as objects
        self.placement: dict[str, tuple[str, int, bytes] | None] = {}  # None: another process's
        self.offsets: Counter[tuple[str, int]] = Counter()
        self.totals = _Totals(0, Counter(), {}, float("inf"), float("-inf"))

    def get_state(self, eid: str) -> EntityState | None:
        st = self.held.get(eid)
        if st is not None:
            return st
        raw = self.store.get(eid)
        return decode_state(raw) if raw is not None else None

    def flush(self) -> None:
        """A batch boundary: the states it changed are written back as the worker's table would."""
        for eid, st in self.held.items():
            self.store[eid] = encode_state(st)
            if st.entity_kind:  # an entity with events of its own, not only a contagion link target
                self.totals.entities[eid] = st.entity_kind
        self.held = {}

    def _place(self, line: bytes) -> tuple[str, int, bytes] | None:
        try:
            h = _head.decode(line)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            h = _Head()  # the processor dead-letters it with its reason (e.g. too_deep)
        eid = h.entity_id
        if eid in self.placement:
            return self.placement[eid]
        lay = self.layout
        if not eid:
            return (lay.inst_topic, 0, b"") if self.index == 0 else None
        key = eid.encode()
        part = partition_for(key, lay.partitions)
        if part % lay.jobs != self.index:
            self.placement[eid] = None
            return None
        topic = lay.fund_topic if topic_role(h.entity_kind) == "fund" else lay.inst_topic
        place = self.placement[eid] = (topic, part, key)
        # an entity's first event: the earliest one of an event-time ordered file
        try:
            when = _time.decode(line).event_time
            if when is not None and when.tzinfo is not None:
                self.totals.t_min = min(self.totals.t_min, when.timestamp())
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, ArithmeticError):
            pass  # not a valid event: it counts among the dead letters, not the span
        return place

    def events(self, chunk: list[bytes]) -> tuple[list[tuple[_Key, Alert]], list[tuple[tuple[int, int], bytes]]]:
        """Process this process's events of a batch; its alerts and links, keyed."""
        self.flush()
        runs: list[tuple[int, list[RawMessage]]] = []
        run: list[RawMessage] | None = None
        offsets = self.offsets
        for i, line in enumerate(chunk):
            place = self._place(line)
            if place is None:
                run = None
                continue
            topic, part, key = place
            off = offsets[topic, part]
            offsets[topic, part] = off + 1
            if run is None:
                run = []
                runs.append((i, run))
            run.append(RawMessage(line, topic, part, off, key or None))
        return self._run(0, runs)

    def links(self, phase: int, items: list[tuple[int, bytes]]) -> tuple[list[tuple[_Key, Alert]], list]:
        """Deliver round ``phase`` of a batch's links: ``(position in the round, message)``."""
        runs: list[tuple[int, list[RawMessage]]] = []
        prev = -2
        offsets = self.offsets
        for pos, value in items:
            if pos != prev + 1:
                runs.append((pos, []))
            # The offset rises with every link delivered, as on a real links topic: an entity
            # state records the last offset applied per lane and skips any at or below it.
            off = offsets[_LINKS, 0]
            offsets[_LINKS, 0] = off + 1
            runs[-1][1].append(RawMessage(value, _LINKS, 0, off, None))
            prev = pos
        return self._run(phase, runs)

    def _run(
        self, phase: int, runs: list[tuple[int, list[RawMessage]]]
    ) -> tuple[list[tuple[_Key, Alert]], list[tuple[tuple[int, int], bytes]]]:
        alerts: list[tuple[_Key, Alert]] = []
        links: list[tuple[tuple[int, int], bytes]] = []
        held, tot = self.held, self.totals
        for start, msgs in runs:
            res = self.bp.process(msgs, self.get_state, self.now)
            for eid, (st, _part) in res.states.items():
                held[eid] = st
            alerts += [((phase, start, j), a) for j, a in enumerate(res.alerts)]
            links += [((start, j), encode_link(m)) for j, m in enumerate(res.links)]
            tot.events += len(res.counted)
            for d in res.dead_letters:
                tot.dead[d["reason"]] += 1
            if res.max_event_ts > tot.t_max:
                tot.t_max = res.max_event_ts
        return alerts, links

    def finish(self) -> _Totals:
        self.flush()
        return self.totals


class _Shards:
    """The processes of a run; :meth:`run` takes the batches through events and link rounds."""

    def __init__(self, layout: _Layout) -> None:
        self.layout = layout

    def run(self, chunks: Iterator[list[bytes]], window: float = 0.0) -> Iterator[tuple[int, list[Alert]]]:
        """(lines, alerts) of each batch, the alerts in the order one process emits them.

        ``window`` (event-time seconds, 0: none): each batch goes through the processes in
        stretches spanning less than that, each followed by its rounds of links. With the
        contagion delay as the window, every push reaches its dependent before the
        dependent's time passes the push's ``at`` (``detectors/pipeline.py``), as live when
        the links topic keeps up: contagion lands by event time, whatever the batch size.

        The next stretch is read while the processes work on one, and handed to them before
        the caller takes the alerts of the one before: reading and the caller's handling of
        alerts overlap the processing."""
        pieces = _pieces(chunks, window)
        piece = next(pieces, None)
        if piece is not None:
            self.submit([("events", piece[0])] * self.layout.jobs)
        alerts: list[Alert] = []
        while piece is not None:
            following = next(pieces, None)
            alerts += self._finish_batch()
            if following is not None:
                self.submit([("events", following[0])] * self.layout.jobs)
            if piece[1] >= 0:
                yield piece[1], alerts
                alerts = []
            piece = following

    def _finish_batch(self) -> list[Alert]:
        outs = self.collect()
        alerts = [a for out in outs for a in out[0]]
        links = [m for out in outs for m in out[1]]
        phase = 1
        while links:
            links.sort(key=lambda m: m[0])
            work: list[list[tuple[int, bytes]]] = [[] for _ in range(self.layout.jobs)]
            for pos, (_key, value) in enumerate(links):
                work[self.layout.owner(decode_link(value).to) if self.layout.jobs > 1 else 0].append((pos, value))
            self.submit([("links", phase, items) if items else None for items in work])
            outs = self.collect()
            alerts += [a for out in outs for a in out[0]]
            links = [m for out in outs for m in out[1]]
            phase += 1
        alerts.sort(key=lambda ka: ka[0])
        return [a for _key, a in alerts]

    def submit(self, requests: list[Any]) -> None:
        """Send request ``i`` (None: nothing) to process ``i``."""
        raise NotImplementedError

    def collect(self) -> list[Any]:
        """The answers to the last :meth:`submit`, in process order."""
        raise NotImplementedError

    def totals(self) -> list[_Totals]:
        self.submit([("finish",)] * self.layout.jobs)
        return self.collect()

    def __enter__(self) -> _Shards:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        pass


def _answer(shard: _Shard, request: tuple[Any, ...]) -> Any:
    if request[0] == "events":
        return shard.events(request[1])
    if request[0] == "links":
        return shard.links(request[1], request[2])
    return shard.finish()


class _InProcess(_Shards):
    def __init__(self, bp: BatchProcessor, layout: _Layout, now: float) -> None:
        super().__init__(layout)
        self.shard = _Shard(bp, layout, now)
        self.answers: list[Any] = []

    def submit(self, requests: list[Any]) -> None:
        self.answers = [_answer(self.shard, r) for r in requests if r is not None]

    def collect(self) -> list[Any]:
        return self.answers


class BacktestWorkerError(RuntimeError):
    """A backtest process failed (its last words, or how it exited)."""


class _Processes(_Shards):
    """One child process per shard, spoken to over a pipe: pickled requests, pickled answers.
    Forked from a single-threaded caller on Linux (no start-up: the child has the processor
    already), spawned otherwise (a fork of a threaded process may inherit a held lock)."""

    def __init__(self, bp: BatchProcessor, layout: _Layout, now: float) -> None:
        super().__init__(layout)
        fork = sys.platform == "linux" and threading.active_count() == 1
        ctx = multiprocessing.get_context("fork") if fork else multiprocessing.get_context("spawn")
        self.sent: list[int] = []
        self.conns: list[Connection] = []
        self.procs: list[multiprocessing.process.BaseProcess] = []
        try:
            for i in range(layout.jobs):
                mine, theirs = ctx.Pipe()
                proc = ctx.Process(target=_serve, args=(theirs, bp, layout, now, i), daemon=True)
                proc.start()
                theirs.close()
                self.conns.append(mine)
                self.procs.append(proc)
        except BaseException:
            self.close()
            raise

    def submit(self, requests: list[Any]) -> None:
        self.sent = []
        blob: bytes | None = None
        for i, r in enumerate(requests):
            if r is None:
                continue
            # the same events go to every process: pickled once
            data = blob if blob is not None and r[0] == "events" else pickle.dumps(r, protocol=5)
            if r[0] == "events":
                blob = data
            try:
                self.conns[i].send_bytes(data)
            except OSError:
                raise self._gone(i) from None
            self.sent.append(i)

    def collect(self) -> list[Any]:
        return [self._recv(i) for i in self.sent]

    def _gone(self, i: int) -> BacktestWorkerError:
        self.procs[i].join(5)
        code = self.procs[i].exitcode
        how = f"was killed by signal {-code}" if code is not None and code < 0 else f"ended (exit code {code})"
        return BacktestWorkerError(f"backtest process {i + 1} of {len(self.procs)} {how}")

    def _recv(self, i: int) -> Any:
        try:
            status, value = pickle.loads(self.conns[i].recv_bytes())
        except (EOFError, OSError):
            raise self._gone(i) from None
        if status != "ok":
            raise BacktestWorkerError(f"backtest process {i + 1} of {len(self.procs)} failed: {value}")
        return value

    def close(self) -> None:
        for conn in self.conns:
            conn.close()  # a child reading its pipe then ends
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
                proc.join()


def _shards(bp: BatchProcessor, layout: _Layout, now: float) -> _Shards:
    return _InProcess(bp, layout, now) if layout.jobs == 1 else _Processes(bp, layout, now)


def _serve(conn: Connection, bp: BatchProcessor, layout: _Layout, now: float, index: int) -> None:
    """A backtest child: answer requests on ``conn`` until it closes or asks for the totals."""
    from riskflow.core.gctune import tune

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it closes the pipes
    tune()  # this process is an entry point of its own (riskflow/core/gctune.py)
    shard = _Shard(bp, layout, now, index)
    while True:
        try:
            request = pickle.loads(conn.recv_bytes())
        except (EOFError, OSError):
            return
        try:
            answer = ("ok", _answer(shard, request))
        except BaseException as exc:  # told to the parent, which stops the run with it
            answer = ("error", f"{type(exc).__name__}: {exc}")
        try:
            conn.send_bytes(pickle.dumps(answer, protocol=5))
        except OSError:
            return  # the parent is gone (interrupted, or stopped on another process's failure)
        if request[0] == "finish" or answer[0] != "ok":
            return


def _pieces(chunks: Iterable[list[bytes]], window: float) -> Iterator[tuple[list[bytes], int]]:
    """Each chunk cut into stretches of event time shorter than ``window`` (0: whole): ``(lines,
    the chunk's length on its last stretch, else -1)``. A line without a readable time stays in
    the current stretch (it is dead-lettered or placed as any other)."""
    for chunk in chunks:
        if window <= 0:
            yield chunk, len(chunk)
            continue
        start = 0
        end: float | None = None
        for i, line in enumerate(chunk):
            try:
                when = _time.decode(line).event_time
                ts = when.timestamp() if when is not None and when.tzinfo is not None else None
            except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, ArithmeticError, OverflowError):
                ts = None
            if ts is None:
                continue
            if end is None:
                end = ts + window
            elif ts >= end or ts < end - 2 * window:  # (far back: a late event opens a stretch too)
                yield chunk[start:i], -1
                start, end = i, ts + window
        yield chunk[start:], len(chunk)


def _chunks(lines: Iterable[bytes], n: int) -> Iterator[list[bytes]]:
    buf: list[bytes] = []
    for line in lines:
        buf.append(line)
        if len(buf) >= n:
            yield buf
            buf = []
    if buf:
        yield buf


def format_table(s: dict[str, Any]) -> str:
    """The summary as a readable table."""

    def f(v: Any, pct: bool = False) -> str:
        if v is None:
            return "-"
        return f"{v:.1%}" if pct else f"{v:g}" if isinstance(v, float) else str(v)

    dead = s.get("dead_letters") or {}
    lines = [
        f"events {s['events']:,}  entities {s['entities']:,} ({s['labelled_entities']} labelled)  "
        f"span {s['span_days']:g} days  alerts {s['alerts']:,}  rule pack {s['rule_pack_version']}",
        f"dead letters {sum(dead.values()):,}"
        + (" (" + ", ".join(f"{r} {n:,}" for r, n in sorted(dead.items(), key=lambda x: -x[1])) + ")" if dead else ""),
    ]
    if not s["labelled_entities"]:
        # Without ground truth there is no recall or precision to show: what can be shown is
        # what fired, and where.
        lines += ["no labels: detection quality cannot be scored (give --labels); alerts by rule:", ""]
        lines += [f"{'rule':40s} {'alerts':>7s} {'entities':>9s}"]
        for rule, c in s["per_rule"].items():
            lines.append(f"{rule:40s} {c.get('alerts', 0):>7d} {c.get('entities', 0):>9d}")
        lines.append(f"\nentities alerted: {s.get('alerted_entities', 0):,} of {s['entities']:,}")
        if s.get("events_per_second"):
            lines.append(f"{s['events']:,} events in {s['seconds']:g}s ({s['events_per_second']:,} events/s)")
        return "\n".join(lines)
    lines += [
        f"recall {f(s['recall'], True)}  precision {f(s['precision'], True)}  "
        f"entity precision {f(s['entity_precision'], True)}  "
        f"false alerts/1000 entity-days {f(s['false_alerts_per_1000_entity_days'])}  "
        f"lead days median {f(s['median_lead_days'])} worst {f(s['worst_lead_days'])}  "
        f"recall >= 30 days before failure {f(s['recall_30d_before_failure'], True)}",
        "",
        f"{'scenario':26s} {'n':>5s} {'recall':>7s} {'prec':>7s} {'lead med':>8s} {'worst':>7s}  top rules",
    ]
    for name, p in s["per_scenario"].items():
        top = ", ".join(f"{r}×{n}" for r, n in list(p["rule_hits"].items())[:4])
        if p.get("normal"):
            lines.append(
                f"{name:26s} {p['entities']:>5d} {'(normal: alerted ' + str(p['alerted_entities']) + ')':>32s}  "
                f"false/1000 ed {p['false_alerts_per_1000_entity_days']:g}  {top}"
            )
        else:
            lines.append(
                f"{name:26s} {p['entities']:>5d} {f(p['recall'], True):>7s} {f(p['precision'], True):>7s} "
                f"{f(p['median_lead_days']):>8s} {f(p['worst_lead_days']):>7s}  {top}"
            )
    lines += ["", f"{'rule':40s} {'alerts':>7s} {'bad':>6s} {'normal':>7s}"]
    for rule, c in s["per_rule"].items():
        bad, normal = c.get("on_bad_entities", 0), c.get("on_normal_entities", 0)
        lines.append(f"{rule:40s} {c.get('alerts', 0):>7d} {bad:>6d} {normal:>7d}")
    lines += ["", "operating points (alerts at or above a level):"]
    for p in s["operating_points"]:
        lvl = p.get("min_severity") or p.get("min_risk_level")
        lines.append(
            f"  >= {lvl:9s} recall {f(p['recall'], True):>7s}  precision {f(p['precision'], True):>7s}  "
            f"false/1000 entity-days {f(p['false_alerts_per_1000_entity_days'])}"
        )
    if s.get("events_per_second"):
        lines.append(f"\n{s['events']:,} events in {s['seconds']:g}s ({s['events_per_second']:,} events/s)")
    return "\n".join(lines)
