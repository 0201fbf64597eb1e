"""Officers' decisions as labels, and each rule's quality as officers judged it.

``case_labels`` turns closed cases into labels in the simulator's format (shared by
``riskflow backtest --labels``): an institution whose latest closed case found a real
risk (outcome ``confirmed`` 确认风险, ``rectified`` 整改完成 or ``referred`` 已移交) is
labelled with the case's first alert as onset and the close as failure time; one whose
latest closed case was a false alarm 误报 is listed as normal (``"normal": true``);
institutions without a closed case get no label (the backtest counts them as normal).

``rule_quality`` reports per rule: hits (alerts), the cases its alerts opened or joined,
the outcomes of those cases, the share of its closed cases that found a real risk
(``confirmed_share``), the median lead from the rule's first alert in such a case to the
close, and ``precision`` — the backtest's precision against the exported labels (alerts
first seen between onset and failure on a labelled entity / all its alerts on entities
with events), so that exporting the labels and running the backtest shows the same number.

>>> from riskflow.store import open_store
>>> rule_quality(open_store(":memory:"))["all"]["hits"]
0
"""

from __future__ import annotations

import datetime as _dt
import statistics
from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any, Final

from riskflow.store.cases import OUTCOMES, Case

if TYPE_CHECKING:
    from riskflow.store.base import AlertStore

#: Outcomes that found a real risk (the rest, ``false_alarm``, found none).
RISK_OUTCOMES: Final = ("confirmed", "rectified", "referred")
DAY: Final = 86400.0


def _ts(text: str) -> float:
    return _dt.datetime.fromisoformat(text).timestamp()


def case_labels(cases: list[Case]) -> list[dict[str, Any]]:
    """One label per institution with a closed case, from its latest closed case."""
    latest: dict[str, Case] = {}
    for c in cases:
        if c.status == "closed" and c.outcome in OUTCOMES:
            have = latest.get(c.entity_id)
            if have is None or c.closed_at > have.closed_at:
                latest[c.entity_id] = c
    out = []
    for eid in sorted(latest):
        c = latest[eid]
        lab: dict[str, Any] = {
            "entity_id": eid,
            "scenario": f"officer_{c.outcome}",
            "onset_time": c.first_event_time,
            "failure_time": c.closed_at if c.outcome in RISK_OUTCOMES else None,
            "case_id": c.case_id,
        }
        if c.outcome not in RISK_OUTCOMES:
            lab["normal"] = True
        out.append(lab)
    return out


def rule_quality(store: AlertStore) -> dict[str, Any]:
    """Per rule (and ``"all"``): hits, cases, outcomes, confirmed share, median lead, precision."""
    cases = {c.case_id: c for c in store.list_cases(limit=10**9)}
    labels = {lab["entity_id"]: lab for lab in case_labels(list(cases.values()))}
    alerts = store.alert_first_seen()  # (alert_id, entity_id, entity_kind, rule_id, first event time)
    first_ts = {aid: _ts(t) for aid, _, _, _, t in alerts}
    by_alert_cases: dict[str, set[str]] = defaultdict(set)
    case_aids: dict[str, list[str]] = defaultdict(list)
    for cid, aid in store.case_alert_pairs():
        by_alert_cases[aid].add(cid)
        case_aids[cid].append(aid)

    def blank() -> dict[str, Any]:
        return {"hits": 0, "scored": 0, "true": 0, "cases": set(), "opened": 0}

    acc: dict[str, dict[str, Any]] = defaultdict(blank)
    for aid, eid, kind, rule, _ in alerts:
        for key in (rule, "all"):
            a = acc[key]
            a["hits"] += 1
            a["cases"] |= by_alert_cases.get(aid, set())
            if kind:  # an entity with events of its own (contagion may name one that has none)
                a["scored"] += 1
                lab = labels.get(eid)
                if lab is not None and not lab.get("normal"):
                    ts = first_ts[aid]
                    if _ts(lab["onset_time"]) <= ts and (lab["failure_time"] is None or ts <= _ts(lab["failure_time"])):
                        a["true"] += 1
    rule_of = {aid: rule for aid, _, _, rule, _ in alerts}
    for c in cases.values():
        opener = rule_of.get(c.first_alert_id)
        if opener is not None:
            acc[opener]["opened"] += 1
            acc["all"]["opened"] += 1
    out: dict[str, Any] = {}
    for key in sorted(acc, key=lambda k: (k == "all", k)):
        a = acc[key]
        outcomes = Counter(cases[cid].outcome for cid in a["cases"] if cases[cid].status == "closed")
        closed = sum(outcomes.values())
        real = sum(outcomes[o] for o in RISK_OUTCOMES)
        leads = []
        for cid in a["cases"]:
            c = cases[cid]
            if c.status == "closed" and c.outcome in RISK_OUTCOMES:
                firsts = [
                    first_ts[aid] for aid in case_aids[cid] if aid in first_ts and (key == "all" or rule_of[aid] == key)
                ]
                if firsts:
                    leads.append((_ts(c.closed_at) - min(firsts)) / DAY)
        out[key] = {
            "hits": a["hits"],
            "cases": len(a["cases"]),
            "cases_opened": a["opened"],
            "closed": closed,
            "outcomes": {o: outcomes[o] for o in OUTCOMES},
            "confirmed_share": round(real / closed, 4) if closed else None,
            "median_lead_days": round(statistics.median(leads), 2) if leads else None,
            "precision": round(a["true"] / a["scored"], 4) if a["scored"] else None,
        }
    if "all" not in out:
        out["all"] = {
            "hits": 0,
            "cases": 0,
            "cases_opened": 0,
            "closed": 0,
            "outcomes": dict.fromkeys(OUTCOMES, 0),
            "confirmed_share": None,
            "median_lead_days": None,
            "precision": None,
        }
    return out
