"""The rule pack: contract (every file, every rule) and each rule at the edge of its threshold.

``CASES`` is the table: for every rule id, a positive and a negative history
(``(day, event_type, payload overrides)``), the negative one just on the
other side of the threshold. Each rule runs alone through the batch
pipeline, so a case proves that rule, not a neighbour.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from detectors.engine import Engine
from detectors.pipeline import BatchProcessor, RawMessage
from detectors.rules import PACK_DIR, RULE_KINDS, load_texts
from detectors.rules.base import DIMENSIONS, OPTIONAL, REQUIRED
from riskflow.core.alerts import SEVERITIES
from riskflow.core.schema import CATALOGUE, ENTITY_KINDS, Event, InvalidEvent, PrudentialReport, parse_event
from tests.support.pack_tools import BASE, PACK, RULES, T0, event  # noqa: F401

Hist = list[tuple[float, str, dict[str, Any]]]


def one(event_type: str, **payload: Any) -> Hist:
    return [(0, event_type, payload)]


def many(n: int, event_type: str, every: float = 1.0, start: float = 0, **payload: Any) -> Hist:
    return [(start + i * every, event_type, payload) for i in range(n)]


def investors(n: int, every: float = 0.0, prefix: str = "I", **extra: Any) -> Hist:
    return [(i * every, "fund.subscription", {"investor_id": f"{prefix}{i}", **extra}) for i in range(n)]


def payers(n: int, every: float = 0.0) -> Hist:
    return [(i * every, "flow.transfer", {"counterparty_id": f"P{i}"}) for i in range(n)]


def prud(**ratios: Any) -> Hist:
    return one("report.prudential", **ratios)


def navs(values: list[float]) -> Hist:
    return [(7.0 * i, "fund.nav_reported", {"nav": v}) for i, v in enumerate(values)]


def smooth(n: int, step: float, wobble: float = 0.0) -> list[float]:
    out, v = [], 1.0
    for i in range(n):
        v *= 1 + step + (wobble if i % 2 else -wobble)
        out.append(round(v, 8))
    return out


PARTNERSHIP = [(0.0, "fund.registered", {"structure": "partnership"})]
CONTRACTUAL = [(0.0, "fund.registered", {"structure": "contractual"})]
PUBLIC = {"channel": "wechat"}
# (day, "tick", {}): another entity on the same partition moves event time to that day
CASES: dict[str, tuple[Hist, Hist]] = {
    "pf.guaranteed_return": (
        one("advertisement.published", guaranteed=True),
        one("advertisement.published", guaranteed=False),
    ),
    "pf.unqualified_investor": (
        one("fund.subscription", amount=999_999.99),
        one("fund.subscription", amount=1_000_000),
    ),
    "pf.amac_lost_contact": (one("amac.notice", notice="lost_contact"), one("amac.notice", notice="cancelled")),
    "pf.amac_abnormal_operation": (
        one("amac.notice", notice="abnormal_operation"),
        one("amac.notice", notice="lost_contact"),
    ),
    "pf.amac_false_filing": (one("amac.notice", notice="false_filing"), one("amac.notice", notice="material_omission")),
    "pf.amac_material_omission": (
        one("amac.notice", notice="material_omission"),
        one("amac.notice", notice="false_filing"),
    ),
    "pf.amac_bottom_line": (one("amac.notice", notice="bottom_line_violation"), one("amac.notice", notice="cancelled")),
    "pf.investors_over_200": (investors(201, every=1.0), investors(200, every=1.0) + investors(5, prefix="I")),
    "pf.investors_over_50_partnership": (PARTNERSHIP + investors(51), CONTRACTUAL + investors(51)),
    "pf.return_above_4lpr": (
        one("advertisement.published", promised_return=0.1201),
        one("advertisement.published", promised_return=0.12),
    ),
    "pf.public_promotion": (
        one("advertisement.published", **PUBLIC),
        one("advertisement.published", channel="roadshow"),
    ),
    "pf.missed_quarterly_filings": (
        # seen 2025-01-06; Q1 and Q2 2025 not filed; Q2's due date is 2025-07-20 (20 days' grace)
        [(0, "grid.report", {}), (196, "tick", {})],
        [(0, "grid.report", {}), (100, "filing.submitted", {"period_end": "2025-06-30"}), (196, "tick", {})],
    ),
    "pf.redemption_unpaid": (
        [(0, "fund.redemption_requested", {}), (30.001, "tick", {})],
        [(0, "fund.redemption_requested", {}), (30, "fund.redemption_paid", {}), (40, "tick", {})],
    ),
    "pf.nav_jump": (navs([1.0, 1.2001]), navs([1.0, 1.2])),
    "pf.nav_too_smooth": (navs(smooth(13, 0.01, 0.0015)), navs(smooth(13, 0.01, 0.0025))),
    "pf.related_party_outflow": (
        [
            (0, "flow.transfer", {"direction": "out", "amount": 600_001.0, "related_party": True}),
            (1, "flow.transfer", {"direction": "out", "amount": 600_000.0, "related_party": False}),
        ],
        [
            (0, "flow.transfer", {"direction": "out", "amount": 600_000.0, "related_party": True}),
            (1, "flow.transfer", {"direction": "out", "amount": 600_000.0, "related_party": False}),
        ],
    ),
    "pf.ad_then_subscription_burst": (
        [(0, "advertisement.published", {"promised_return": 0.08}), *investors(10, every=3.0)],
        [(0, "advertisement.published", {"promised_return": 0.08}), *investors(10, every=3.34)],
    ),
    "ent.illegal_fundraising_ad": (
        one("advertisement.published", promised_return=0.06, **PUBLIC),
        one("advertisement.published", promised_return=0.06, channel="roadshow"),
    ),
    "ent.fanin_150_people": (payers(150, every=89 / 149), payers(150, every=90 / 149)),
    "ent.fanin_1m_small_tickets": (
        many(5, "flow.transfer", amount=200_000.0, channel="personal_account"),
        many(4, "flow.transfer", amount=200_000.0, channel="personal_account")
        + one("flow.transfer", amount=200_000.01, channel="personal_account"),
    ),
    "bank.car_below_minimum": (prud(capital_adequacy_ratio=0.0799), prud(capital_adequacy_ratio=0.08)),
    "bank.car_below_buffer": (prud(capital_adequacy_ratio=0.08), prud(capital_adequacy_ratio=0.105)),
    "bank.npl_above_5pct": (prud(npl_ratio=0.0501), prud(npl_ratio=0.05)),
    "bank.lcr_below_100pct": (prud(liquidity_coverage_ratio=0.999), prud(liquidity_coverage_ratio=1.0)),
    "bank.liquidity_ratio_below_25pct": (prud(liquidity_ratio=0.2499), prud(liquidity_ratio=0.25)),
    "fg.leverage_over_10x": (prud(guarantee_leverage=10.01), prud(guarantee_leverage=10.0)),
    "fg.leverage_over_15x": (prud(guarantee_leverage=15.01), prud(guarantee_leverage=15.0)),
    "fg.single_client_over_10pct": (prud(largest_borrower_share=0.1001), prud(largest_borrower_share=0.10)),
    "slc.borrowed_funds_over_1x": (
        prud(borrowed_funds=100.01, net_assets=100.0),
        prud(borrowed_funds=100.0, net_assets=100.0),
    ),
    "slc.single_borrower_over_10pct": (prud(largest_borrower_share=0.1001), prud(largest_borrower_share=0.10)),
    "fl.risk_assets_over_8x": (prud(loan_balance=801.0, net_assets=100.0), prud(loan_balance=800.0, net_assets=100.0)),
    "cf.risk_assets_over_10x": (
        prud(loan_balance=1001.0, net_assets=100.0),
        prud(loan_balance=1000.0, net_assets=100.0),
    ),
    "inst.negative_net_assets": (prud(net_assets=-0.01), prud(net_assets=0.0)),
    "inst.missed_prudential_reports": (
        # seen 2025-01-06; Q1, Q2 2025 unreported; Q2's due date is 2025-07-30 (30 days' grace)
        [(0, "grid.report", {}), (206, "tick", {})],
        [(0, "grid.report", {}), (205, "tick", {})],
    ),
    "p2p.withdrawal_run": (
        many(3, "complaint.filed", every=3.0, category="redemption_refused"),
        many(3, "complaint.filed", every=3.5, category="lost_contact"),
    ),
    "all.complaints_30d": (many(5, "complaint.filed", every=29 / 4), many(5, "complaint.filed", every=30 / 4)),
    "all.complaint_surge": (
        # baseline: 3 complaints in the prior 90 days (0.23 a week): 3 in a week is a surge
        many(3, "complaint.filed", every=20.0) + many(3, "complaint.filed", start=90, every=1.0),
        # baseline: 10 (0.78 a week, x3 = 2.33): the floor of 3 is met but 2 is not
        many(10, "complaint.filed", every=8.0) + many(2, "complaint.filed", start=92, every=1.0),
    ),
    "all.lawsuit_defendant_surge": (
        many(3, "lawsuit.filed", every=5.0),
        many(2, "lawsuit.filed", every=5.0) + many(1, "lawsuit.filed", start=11, role="plaintiff"),
    ),
    "all.negative_opinion_surge": (
        many(3, "opinion.published", sentiment=-0.5),
        many(2, "opinion.published", sentiment=-0.5) + one("opinion.published", sentiment=-0.49),
    ),
    "all.opinion_risk_keywords": (
        one("opinion.published", sentiment=-0.2, keywords=["新闻", "提现困难"]),
        one("opinion.published", sentiment=-0.2, keywords=["新闻", "提现"]),
    ),
    "all.frequent_key_changes": (
        [
            (0, "entity.changed", {"field": "legal_rep"}),
            (90, "entity.changed", {"field": "address"}),
            (179, "entity.changed", {"field": "executive"}),
        ],
        [
            (0, "entity.changed", {"field": "legal_rep"}),
            (90, "entity.changed", {"field": "address"}),
            (180, "entity.changed", {"field": "executive"}),
            (181, "entity.changed", {"field": "business_scope"}),
        ],
    ),
    "grid.office_closed": (one("grid.report", observation="office_closed"), one("grid.report", observation="normal")),
    "grid.crowd_gathering": (
        one("grid.report", observation="crowd_gathering"),
        one("grid.report", observation="office_closed"),
    ),
    "grid.staff_evacuated": (
        one("grid.report", observation="signage_removed"),
        one("grid.report", observation="crowd_gathering"),
    ),
    "inst.enforcement_severe": (
        one("enforcement.action", action="licence_revoked"),
        one("enforcement.action", action="fine"),
    ),
    "inst.enforcement_penalty": (
        one("enforcement.action", action="fine"),
        one("enforcement.action", action="suspension"),
    ),
}


def fired(rule_id: str, hist: Hist, rule: Any = None) -> list[Any]:
    """The alerts of ``rule`` (default: the shipped rule ``rule_id``) alone over ``hist``."""
    rule = rule or RULES[rule_id]
    kind = sorted(rule.entity_kinds)[0] if rule.entity_kinds else "enterprise"
    msgs = []
    for n, (day, etype, payload) in enumerate(sorted(hist, key=lambda h: h[0])):
        if etype == "tick":  # another entity on the same partition: event time moves on
            msgs.append(RawMessage(event(n, "OTHER", "bank", day, "grid.report", {}), "t", 0, n, None))
        else:
            msgs.append(RawMessage(event(n, "E-1", kind, day, etype, payload), "t", 0, n, None))
    # one source whose "tick" jumps weeks ahead: no skew limit here (it has its own tests)
    bp = BatchProcessor(Engine([rule], dedup_window=0), max_skew=math.inf)
    res = bp.process(msgs, lambda _: None, now=T0.timestamp() + 9e8)
    assert not res.dead_letters, res.dead_letters
    return [a for a in res.alerts if a.rule_id == rule_id]


# -- contract -------------------------------------------------------------------------------
RULE_FILES = sorted(PACK_DIR.glob("*.yaml"))


def test_pack_has_at_least_25_rules_and_every_rule_a_case() -> None:
    assert len(PACK.detectors) >= 25
    assert set(CASES) == set(RULES), "every rule needs a positive and a negative case"


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_rule_file_contract(path: Path) -> None:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert set(doc) <= {"version", "constants", "rules"} and doc["version"]
    for spec in doc["rules"]:
        for f in REQUIRED:
            assert isinstance(spec.get(f), str) and spec[f].strip(), (path.name, spec.get("id"), f)
        assert set(spec) <= set(REQUIRED) | set(OPTIONAL), (spec["id"], set(spec) - set(REQUIRED) - set(OPTIONAL))
        assert spec["severity"] in SEVERITIES and spec["dimension"] in DIMENSIONS
        assert spec.get("mode", "live") in ("live", "shadow")
        assert set(spec.get("entity_kinds") or ()) <= set(ENTITY_KINDS)
        assert any("\u4e00" <= ch <= "\u9fff" for ch in spec["name_zh"]), spec["id"]
        assert "《" in spec["source"] or "天罗地网" in spec["source"], f"{spec['id']}: cite the regulation"
        assert spec["id"].count(".") == 1 and spec["id"] == spec["id"].lower()


ARTICLE = re.compile(r"第[0-9一二三四五六七八九十百]+条")
NO_ARTICLE = re.compile(r"no article: \S.{20,}")


def cites_article(source: str) -> bool:
    """A document (《…》) and an article (第…条), or an explicit ``no article: <why>``."""
    return "《" in source and bool(ARTICLE.search(source) or NO_ARTICLE.search(source))


def test_every_source_names_an_article_or_says_why_not() -> None:
    missing = [r.id for r in PACK.detectors if not cites_article(r.describe.source)]
    assert not missing, f"cite the article (第…条) or say 'no article: <why>': {missing}"


def test_the_article_check_can_fail() -> None:
    assert cites_article("《融资担保公司监督管理条例》(国务院令第683号) 第15条")
    assert cites_article("《某通知》 — no article: the notice is numbered by items, not articles")
    assert not cites_article("《商业银行风险监管核心指标（试行）》(银监发〔2005〕89号) 信用风险指标")
    assert not cites_article("《某通知》 no article:")  # a reason is required
    assert not cites_article("第15条")  # and a document


def test_every_rule_event_type_is_in_the_catalogue() -> None:
    for r in PACK.detectors:
        assert r.event_types is None or set(r.event_types) <= set(CATALOGUE), r.id


# -- every rule at the edge -----------------------------------------------------------------
@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_rule_fires_on_positive_case(rule_id: str) -> None:
    alerts = fired(rule_id, CASES[rule_id][0])
    assert len(alerts) == 1, alerts
    a = alerts[0]
    assert a.title_zh and a.title_en and a.evidence and a.severity == RULES[rule_id].severity
    assert a.mode == RULES[rule_id].mode


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_rule_silent_on_negative_case(rule_id: str) -> None:
    assert fired(rule_id, CASES[rule_id][1]) == []


def _doc_examples() -> dict[str, list[Any]]:
    """The rules of the worked examples in docs/rules.md, by kind."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "rules.md").read_text(encoding="utf-8")
    out: dict[str, list[Any]] = {}
    for i, example in enumerate(re.findall(r"^```yaml\n(.*?)^```", text, re.M | re.S)):
        for r in load_texts({f"example-{i}.yaml": example}).detectors:
            out.setdefault(r.kind, []).append(r)
    return out


@pytest.mark.parametrize("kind", sorted(RULE_KINDS))
def test_every_rule_kind_has_a_worked_example_that_fires(kind: str) -> None:
    """Found through ``RULE_KINDS``: a new kind needs an example in docs/rules.md, one of the
    shipped pack's rules (so it has a case here), and the example as written fires on it."""
    examples = _doc_examples().get(kind)
    assert examples, f"rule kind {kind!r} has no worked example in docs/rules.md"
    for rule in examples:
        assert rule.id in CASES, f"{rule.id}: an example is one of the shipped pack's rules, with a case"
        assert len(fired(rule.id, CASES[rule.id][0], rule)) == 1, rule.id
        assert fired(rule.id, CASES[rule.id][1], rule) == [], rule.id


# -- liquidity ratio: a backward-compatible extension of v1 report.prudential -----------------
def test_liquidity_ratio_is_an_optional_extension_of_v1() -> None:
    without = event(0, "B-1", "bank", 0, "report.prudential", {"liquidity_coverage_ratio": 0.9})
    got = parse_event(without)
    assert isinstance(got, Event) and isinstance(got.payload, PrudentialReport)
    assert got.payload.liquidity_ratio is None  # v1 events still parse
    with_it = parse_event(event(1, "B-1", "bank", 0, "report.prudential", {"liquidity_ratio": 0.3}))
    assert isinstance(with_it, Event) and isinstance(with_it.payload, PrudentialReport)
    assert with_it.payload.liquidity_ratio == 0.3
    with pytest.raises(InvalidEvent):  # validated like every other ratio
        parse_event(event(2, "B-1", "bank", 0, "report.prudential", {"liquidity_ratio": -0.1}))

    # a v1 report without the field cannot breach the liquidity-ratio rule; the LCR rule still fires
    assert fired("bank.liquidity_ratio_below_25pct", prud(liquidity_coverage_ratio=0.5)) == []
    assert len(fired("bank.lcr_below_100pct", prud(liquidity_coverage_ratio=0.5))) == 1


def test_lcr_and_liquidity_ratio_are_separate_rules_with_their_own_cites() -> None:
    lcr, lr = RULES["bank.lcr_below_100pct"], RULES["bank.liquidity_ratio_below_25pct"]
    assert lcr.describe.source != lr.describe.source
    assert "第39条" in lr.describe.source and "25%" in lr.describe.name_en
    both = prud(liquidity_coverage_ratio=0.99, liquidity_ratio=0.2)
    assert len(fired("bank.lcr_below_100pct", both)) == 1 and len(fired("bank.liquidity_ratio_below_25pct", both)) == 1
