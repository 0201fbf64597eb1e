"""Normal base-rate activity of every entity kind, for any time span.

Rates are per entity per day (Poisson) unless periodic. They are chosen so that
a normal entity stays clear of every rule in issue 3: qualified subscriptions
(>= 1,000,000 CNY), tens of investors not hundreds, NAV with market-like
volatility, timely filings, prudential ratios well inside the limits, a
complaint or a lawsuit a year, mostly neutral press.

Each kind emits every event type that makes sense for it, so a history covers
the whole catalogue of docs/events.md.
"""

from __future__ import annotations

import math
from typing import Any

from riskflow.sim.calendar import Calendar
from riskflow.sim.emit import Emitter

INSTITUTION_KINDS = (
    "bank",
    "small_loan_company",
    "financing_guarantee",
    "pawnshop",
    "financial_leasing",
    "commercial_factoring",
)
COMPLAINT_RATE = 1 / 365
LAWSUIT_RATE = 1 / 400
OPINION_RATE = 1 / 30
CHANGE_RATE = 1 / 900
GRID_RATE = 1 / 120
AD_RATE = {"enterprise": 1 / 20, "bank": 1 / 15, "trading_venue": 1 / 60, "private_fund_manager": 1 / 180}
FLOW_RATE = {
    "bank": 1.0, "private_fund": 1 / 10, "private_fund_manager": 1 / 15, "enterprise": 1 / 4,
    "small_loan_company": 1 / 3, "financing_guarantee": 1 / 6, "pawnshop": 1 / 5, "financial_leasing": 1 / 5,
    "commercial_factoring": 1 / 4, "trading_venue": 1 / 3, "p2p_platform": 1 / 5,
}  # fmt: skip
SUBSCRIPTION_RATE = {"contractual": 1 / 15, "partnership": 1 / 40, "corporate": 1 / 40}
REDEMPTION_RATE = 1 / 90
NAMES = ("华信", "恒泰", "鼎盛", "金禾", "瑞丰", "汇通", "钱塘", "甬江", "南湖", "之江", "天目", "东海", "瓯越", "兰溪")
SUFFIX = {
    "private_fund": "{}1号私募证券投资基金",
    "private_fund_manager": "{}资产管理有限公司",
    "bank": "{}农村商业银行",
    "small_loan_company": "{}小额贷款股份有限公司",
    "financing_guarantee": "{}融资担保有限公司",
    "pawnshop": "{}典当有限责任公司",
    "financial_leasing": "{}融资租赁有限公司",
    "commercial_factoring": "{}商业保理有限公司",
    "trading_venue": "{}金融资产交易中心",
    "p2p_platform": "{}网络借贷信息中介有限公司",
    "enterprise": "{}财富管理有限公司",
}
REP_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"


def person(em: Emitter) -> str:
    return em.rng.choice(REP_SURNAMES) + em.rng.choice(("伟", "芳", "敏", "静", "强", "磊", "军", "洋", "勇", "艳"))


def register(em: Emitter, t: float) -> None:
    """``entity.registered`` (and ``fund.registered`` for a fund) at ``t``; sets the fund's attributes."""
    ent, rng = em.ent, em.rng
    name = SUFFIX[ent.kind].format(rng.choice(NAMES) + rng.choice(NAMES))
    payload: dict[str, Any] = {
        "name": name,
        "registered_capital": float(rng.choice((1, 2, 5, 10, 20, 50)) * 10_000_000),
        "legal_rep": person(em),
        "address": f"浙江省{ent.region} {rng.randrange(1, 999)}号",
    }
    if ent.kind in ("private_fund", "private_fund_manager"):
        payload["amac_code"] = f"S{rng.randrange(10**5):05d}" if ent.kind == "private_fund" else f"P10{ent.index:05d}"
    if ent.manager_id:
        payload["parent_id"] = ent.manager_id
    ent.attrs.setdefault("legal_rep", payload["legal_rep"])
    em.ev(t, "entity.registered", "market_regulation", payload)
    if ent.kind == "private_fund":
        fund_type = ent.attrs.setdefault(
            "fund_type", rng.choices(("securities", "equity", "venture", "other"), (6, 3, 1, 0.5))[0]
        )
        structure = ent.attrs.setdefault(
            "structure", "contractual" if fund_type == "securities" else rng.choice(("partnership", "contractual"))
        )
        em.ev(
            t + 0.01,
            "fund.registered",
            "amac",
            {
                "fund_id": ent.entity_id,
                "manager_id": ent.manager_id or "",
                "fund_type": fund_type,
                "structure": structure,
                "target_size": float(rng.choice((5, 10, 20, 50)) * 10_000_000),
            },
        )


def nav_series(em: Emitter, t0: float, t1: float, step: float, weekly_vol: float, drift: float = 0.0015) -> None:
    """NAV reports every ``step`` days, a log-normal random walk (market-like volatility)."""
    ent, rng = em.ent, em.rng
    nav = ent.attrs.get("nav", 1.0)
    scale = math.sqrt(step / 7)
    t = math.floor(t0 / step) * step + step
    while t < t1:
        nav *= math.exp(rng.gauss(drift * step / 7, weekly_vol * scale))
        em.ev(
            em.office_time(t),
            "fund.nav_reported",
            "amac",
            {"fund_id": ent.entity_id, "nav": round(nav, 4), "period_end": em.date(t - 1)},
        )
        t += step
    ent.attrs["nav"] = nav


def subscriptions(em: Emitter, t0: float, t1: float, rate: float) -> None:
    """Qualified investors: institutions, or individuals with >= 3,000,000 CNY of financial assets."""
    ent, rng = em.ent, em.rng
    for t in em.poisson(rate, t0, t1):
        inst = rng.random() < 0.35
        amount = float(rng.randrange(1_000_000, 8_000_000, 100_000) if not inst else rng.randrange(3, 60) * 1_000_000)
        payload: dict[str, Any] = {
            "fund_id": ent.entity_id,
            "investor_id": f"{'ORG' if inst else 'IND'}-{rng.randrange(10**7):07d}",
            "investor_type": "institution" if inst else "individual",
            "amount": amount,
        }
        if not inst:
            payload["investor_financial_assets"] = float(rng.randrange(3, 40) * 1_000_000)
        em.ev(t, "fund.subscription", "amac", payload)


def redemptions(em: Emitter, t0: float, t1: float, rate: float, pay_days: tuple[float, float] = (1, 6)) -> None:
    """Redemption requests, each paid in full a few days later."""
    ent, rng = em.ent, em.rng
    for t in em.poisson(rate, t0, t1):
        rid = f"R-{ent.index}-{int(t * 1000)}"
        amount = float(rng.randrange(5, 200) * 100_000)
        em.ev(
            t,
            "fund.redemption_requested",
            "amac",
            {
                "fund_id": ent.entity_id,
                "request_id": rid,
                "investor_id": f"IND-{rng.randrange(10**7):07d}",
                "amount": amount,
            },
        )
        em.ev(
            t + rng.uniform(*pay_days),
            "fund.redemption_paid",
            "amac",
            {"fund_id": ent.entity_id, "request_id": rid, "amount": amount},
        )


def filings(em: Emitter, cal: Calendar, t0: float, t1: float, *, monthly: bool, skip: float = 0.0) -> None:
    """Periodic filings 5-20 days after each period end due in ``[t0, t1)``; ``skip``: share missed."""
    rng = em.rng
    for p in cal.periods:
        if not t0 <= p.day < t1:
            continue
        kinds = ["monthly"] if monthly else []
        if p.quarter:
            kinds.append("quarterly")
        if p.year:
            kinds.append("annual")
        for kind in kinds:
            if skip and rng.random() < skip:
                continue
            lag = (
                rng.uniform(3, 12)
                if kind == "monthly"
                else rng.uniform(3, 15)
                if kind == "quarterly"
                else rng.uniform(30, 100)
            )
            em.ev(
                em.office_time(p.day + lag),
                "filing.submitted",
                "regulator_report",
                {"filing": kind, "period_end": p.period_end},
            )


def prudential_base(kind: str, rng: Any) -> dict[str, float]:
    """Healthy prudential figures for an institution kind (ratios as fractions)."""
    net = float(rng.randrange(2, 40) * 50_000_000)
    if kind == "bank":
        net *= 10
        return {
            "capital_adequacy_ratio": rng.uniform(0.12, 0.16),
            "npl_ratio": rng.uniform(0.008, 0.025),
            "liquidity_coverage_ratio": rng.uniform(1.3, 2.4),
            "provision_coverage_ratio": rng.uniform(1.6, 3.2),
            "loan_balance": net * rng.uniform(6, 10),
            "net_assets": net,
        }
    if kind == "financing_guarantee":
        return {
            "guarantee_leverage": rng.uniform(2.5, 6.5),
            "net_assets": net,
            "largest_borrower_share": rng.uniform(0.02, 0.07),
        }
    if kind == "small_loan_company":
        return {
            "net_assets": net,
            "loan_balance": net * rng.uniform(0.9, 1.4),
            "borrowed_funds": net * rng.uniform(0.1, 0.6),
            "largest_borrower_share": rng.uniform(0.02, 0.07),
            "npl_ratio": rng.uniform(0.01, 0.04),
        }
    if kind == "pawnshop":
        return {"net_assets": net, "loan_balance": net * rng.uniform(0.5, 1.0), "npl_ratio": rng.uniform(0.01, 0.05)}
    if kind == "financial_leasing":
        return {
            "net_assets": net,
            "loan_balance": net * rng.uniform(3, 6),
            "largest_borrower_share": rng.uniform(0.03, 0.08),
        }
    if kind == "commercial_factoring":
        return {
            "net_assets": net,
            "loan_balance": net * rng.uniform(3, 7),
            "largest_borrower_share": rng.uniform(0.03, 0.08),
        }
    return {"net_assets": net}


def prudential(em: Emitter, cal: Calendar, t0: float, t1: float, base: dict[str, float] | None = None) -> None:
    """Quarterly ``report.prudential`` within 10-25 days of each quarter end, figures wobbling slightly."""
    ent, rng = em.ent, em.rng
    base = base or ent.attrs.setdefault("prudential", prudential_base(ent.kind, rng))
    for p in cal.periods:
        if p.quarter and t0 <= p.day < t1:
            fig = {k: round(v * rng.uniform(0.97, 1.03), 4 if v < 100 else 0) for k, v in base.items()}
            em.ev(
                em.office_time(p.day + rng.uniform(10, 25)),
                "report.prudential",
                "regulator_report",
                {"period_end": p.period_end, **fig},
            )


def flows(em: Emitter, t0: float, t1: float, rate: float, scale: float, related_share: float = 0.03) -> None:
    rnd = em.rng.random
    for t in em.poisson(rate, t0, t1):
        out = rnd() < 0.5
        related = out and rnd() < related_share
        em.ev(
            t,
            "flow.transfer",
            "bank_flow",
            {
                "direction": "out" if out else "in",
                "amount": round(scale * (0.2 + 2.5 * rnd() * rnd()), -2),
                "counterparty_id": f"ORG-{int(rnd() * 1e6):06d}",
                "related_party": related,
                "channel": "corporate_account",
            },
        )


def background(em: Emitter, t0: float, t1: float) -> None:
    """Complaints, lawsuits, press, registration changes, grid patrols, ads: the noise of a normal life."""
    ent, rng = em.ent, em.rng
    kind = ent.kind
    for t in em.poisson(COMPLAINT_RATE, t0, t1):
        em.ev(
            t,
            "complaint.filed",
            "complaint_hotline",
            {"channel": rng.choice(("12345", "12378", "email")), "category": "other"},
        )
    for t in em.poisson(LAWSUIT_RATE * (4 if kind in ("small_loan_company", "pawnshop", "bank") else 1), t0, t1):
        plaintiff = kind in ("small_loan_company", "pawnshop", "bank") or rng.random() < 0.5
        em.ev(
            t,
            "lawsuit.filed",
            "court",
            {
                "role": "plaintiff" if plaintiff else "defendant",
                "cause": "合同纠纷",
                "amount": float(rng.randrange(1, 300) * 10_000),
            },
        )
    for t in em.poisson(OPINION_RATE, t0, t1):
        em.ev(
            t,
            "opinion.published",
            "public_opinion",
            {
                "sentiment": round(rng.uniform(-0.3, 0.8), 2),
                "reach": rng.randrange(10, 5000),
                "keywords": ["业绩", "发布会"],
            },
        )
    for t in em.poisson(CHANGE_RATE, t0, t1):
        field = rng.choice(("address", "shareholder", "executive", "business_scope", "registered_capital", "legal_rep"))
        em.ev(t, "entity.changed", "market_regulation", {"field": field, "old": "旧", "new": "新"})
    for t in em.poisson(GRID_RATE, t0, t1):
        em.ev(t, "grid.report", "grid_report", {"observation": "normal", "note": "例行走访，经营正常"})
    ad = AD_RATE.get(kind, 0.0)
    for t in em.poisson(ad, t0, t1):
        payload: dict[str, Any] = {"channel": rng.choice(("newspaper", "website", "wechat")), "text": "品牌推广"}
        if kind == "private_fund_manager":
            # private funds may only be promoted to qualified investors, never on open channels
            payload = {"channel": "qualified_investor_roadshow", "text": "合格投资者路演"}
        elif kind == "bank":
            payload.update(promised_return=round(rng.uniform(0.018, 0.032), 4), text="定期存款利率")
        em.ev(t, "advertisement.published", "advertising_monitor", payload)


def normal_activity(em: Emitter, cal: Calendar, t0: float, t1: float, *, register_at: float | None = 0.0) -> None:
    """Everything a healthy entity of ``em.ent.kind`` does on ``[t0, t1)``."""
    ent, rng = em.ent, em.rng
    kind = ent.kind
    if register_at is not None:
        register(em, register_at + rng.random() * 0.3)
    if kind == "private_fund":
        structure = ent.attrs["structure"]
        if ent.attrs["fund_type"] == "securities":
            nav_series(em, t0, t1, 7, 0.022)
        else:
            nav_series(em, t0, t1, 91, 0.015)  # quarterly NAV: about 5 % a quarter
        subscriptions(em, t0, t1, SUBSCRIPTION_RATE[structure])
        redemptions(em, t0, t1, REDEMPTION_RATE)
        filings(em, cal, t0, t1, monthly=ent.attrs["fund_type"] == "securities")
    elif kind == "private_fund_manager":
        filings(em, cal, t0, t1, monthly=False)
    elif kind in INSTITUTION_KINDS:
        prudential(em, cal, t0, t1)
        filings(em, cal, t0, t1, monthly=kind in ("bank", "small_loan_company"))
    elif kind in ("trading_venue", "p2p_platform"):
        filings(em, cal, t0, t1, monthly=True)
    scale = {"bank": 5e7, "private_fund": 2e6, "enterprise": 3e5}.get(kind, 1e6)
    # Funds and their managers move money to related parties only when something is wrong.
    related = 0.0 if kind in ("private_fund", "private_fund_manager") else 0.03
    flows(em, t0, t1, FLOW_RATE.get(kind, 0.1), scale, related)
    background(em, t0, t1)
