"""Offline evaluation: run the live pipeline over a file and score it against labels.

The backtest builds its processor with :func:`detectors.factory.build_processor`
— the one the live worker uses — and feeds it the file in large batches,
keeping entity state as the same msgpack bytes the worker's changelog-backed
table holds (decoded before, encoded after each batch). Each event carries the
topic and partition Kafka would give it (:mod:`riskflow.partitioning`). The
same history therefore yields the same alert ids and levels as a live worker.

Measures (defined precisely in the README, "Backtest"):

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
>>> from riskflow.schema import encode_event
>>> events, labels = simulate(entities=40, days=60, seed=3)
>>> rep = backtest([encode_event(e) for e in events], labels)
>>> 0.0 <= rep.summary()["recall"] <= 1.0
True
"""

from __future__ import annotations

import datetime as _dt
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec

from detectors.engine import decode_state, encode_state
from detectors.pipeline import RawMessage
from detectors.rules import RulePack
from riskflow.alerts import SEVERITIES, Alert
from riskflow.partitioning import partition_for
from riskflow.processing import pack_from_settings, processor_from_settings
from riskflow.schema import topic_role
from riskflow.settings import Settings

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
) -> Report:
    """Run the shared pipeline over ``lines`` (one event each, event-time order) and score it.

    ``on_alert(alert)`` is called for every alert emitted (revisions too), in order.
    """
    settings = settings or Settings()
    pack = pack or pack_from_settings(settings)
    bp = processor_from_settings(settings, pack)
    now = time.time() if now is None else now
    parts = settings.partitions
    fund_topic, inst_topic = settings.topic_fund_events, settings.topic_institution_events
    store: dict[str, bytes] = {}
    placement: dict[str, tuple[str, int, bytes]] = {}
    offsets: Counter[tuple[str, int]] = Counter()
    entities: dict[str, str] = {}
    alerts: dict[str, AlertRecord] = {}
    dead: Counter[str] = Counter()
    events = 0
    t_min, t_max = float("inf"), float("-inf")

    def get_state(eid: str) -> Any:
        raw = store.get(eid)
        return decode_state(raw) if raw is not None else None

    started = time.perf_counter()
    for chunk in _chunks(lines, batch_size):
        msgs = []
        for line in chunk:
            try:
                h = _head.decode(line)
            except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
                h = _Head()  # the processor dead-letters it with its reason (e.g. too_deep)
            place = placement.get(h.entity_id)
            if place is None:
                key = h.entity_id.encode()
                topic = fund_topic if topic_role(h.entity_kind) == "fund" else inst_topic
                place = (topic, partition_for(key, parts), key) if key else (inst_topic, 0, b"")
                if key:
                    placement[h.entity_id] = place
                    # an entity's first event: the earliest one of an event-time ordered file
                    try:
                        when = _time.decode(line).event_time
                        if when is not None and when.tzinfo is not None:
                            t_min = min(t_min, when.timestamp())
                    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, ArithmeticError):
                        pass  # not a valid event: it counts among the dead letters, not the span
            topic, part, key = place
            off = offsets[topic, part]
            offsets[topic, part] = off + 1
            msgs.append(RawMessage(line, topic, part, off, key or None))
        res = bp.process(msgs, get_state, now)
        if res.max_event_ts > t_max:
            t_max = res.max_event_ts
        for eid, (st, _part) in res.states.items():
            store[eid] = encode_state(st)
            if st.entity_kind:  # an entity with events of its own, not only a contagion link target
                entities[eid] = st.entity_kind
        events += len(res.counted)
        for d in res.dead_letters:
            dead[d["reason"]] += 1
        for a in res.alerts:
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
    seconds = time.perf_counter() - started
    span = max((t_max - t_min) / DAY, 1.0) if t_max >= t_min else 1.0
    return Report(alerts, prepare_labels(labels), entities, events, dead, span, seconds, pack.version)


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
