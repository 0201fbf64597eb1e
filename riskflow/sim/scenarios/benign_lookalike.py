"""Benign look-alikes: normal entities with noisy but harmless spikes (必须不报警)."""

from __future__ import annotations

from riskflow.sim.normal import INSTITUTION_KINDS, normal_activity, prudential_base, subscriptions
from riskflow.sim.scenarios.base import Scenario


class BenignLookalike(Scenario):
    """A healthy entity that, for a few weeks, looks busy in ways a naive rule
    could mistake for trouble — and that a good rule pack must NOT alarm on.

    Over a 10-40 day window from onset, on top of its normal life:

    - a burst of qualified subscriptions (institutions, >= 1,000,000 CNY) and a
      big NAV gain (+6 %) for a fund;
    - two ordinary complaints and a wave of *positive*
      press with a large reach;
    - one legal-representative change (a normal succession);
    - lawsuits as *plaintiff* (collecting debts), a large inflow from an institution;
    - for an institution, a quarterly report that moves but stays inside every limit;
    - for an enterprise, a product ad campaign with no promised return and a
      few dozen customer payments (far below the fan-in thresholds).

    Labelled with ``"normal": true`` and ``failure_time: null``: the backtest
    counts any alert on it as a false alert.
    """

    name = "benign_lookalike"
    kinds = (
        "private_fund",
        "private_fund_manager",
        "enterprise",
        "bank",
        "small_loan_company",
        "financing_guarantee",
        "financial_leasing",
        "commercial_factoring",
        "pawnshop",
        "trading_venue",
    )
    share = 0.02
    duration = (10.0, 40.0)
    benign = True

    def run(self) -> None:
        normal_activity(self.em, self.cal, 0.0, self.days)
        self.story()

    def story(self) -> None:
        em, ent, rng = self.em, self.em.ent, self.rng
        if ent.kind == "private_fund":
            subscriptions(em, self.at(0), self.at(0.4), 1.2 * self.k)
            nav = ent.attrs.get("nav", 1.0)
            em.ev(
                em.office_time(self.at(0.5)),
                "fund.nav_reported",
                "amac",
                {"fund_id": ent.entity_id, "nav": round(nav * 1.06, 4), "period_end": em.date(self.at(0.5) - 1)},
            )
        for f in (0.2, 0.7):  # two ordinary complaints, days apart: below any surge floor
            em.ev(self.at(f), "complaint.filed", "complaint_hotline", {"channel": "12345", "category": "other"})
        for t in self.times(0.8, 0.2, 0.6):
            em.ev(
                t,
                "opinion.published",
                "public_opinion",
                {
                    "sentiment": round(rng.uniform(0.4, 0.9), 2),
                    "reach": rng.randrange(50_000, 800_000),
                    "keywords": ["荣获", "创新", "年度"],
                },
            )
        self.change(0.5, "legal_rep")
        for t in self.times(3 / self.span, 0.0, 1.0):
            em.ev(t, "lawsuit.filed", "court", {"role": "plaintiff", "cause": "借款合同纠纷", "amount": 500_000.0})
        em.ev(
            self.at(0.3),
            "flow.transfer",
            "bank_flow",
            {"direction": "in", "amount": 30_000_000.0, "counterparty_id": "ORG-STRATEGIC", "related_party": False},
        )
        if ent.kind in INSTITUTION_KINDS:
            base = dict(ent.attrs.get("prudential") or prudential_base(ent.kind, rng))
            base.update({k: v * 1.15 for k, v in base.items() if k in ("guarantee_leverage", "npl_ratio")})
            if "capital_adequacy_ratio" in base:
                base["capital_adequacy_ratio"] = max(0.108, base["capital_adequacy_ratio"] * 0.9)
            if "guarantee_leverage" in base:
                base["guarantee_leverage"] = min(base["guarantee_leverage"], 8.5)
            em.ev(
                em.office_time(self.at(0.6)),
                "report.prudential",
                "regulator_report",
                {"period_end": em.date(self.at(0.6) - 5), **{k: round(v, 4) for k, v in base.items()}},
            )
        if ent.kind == "enterprise":
            for t in self.times(0.5, 0.0, 1.0):
                em.ev(
                    t,
                    "advertisement.published",
                    "advertising_monitor",
                    {"channel": "douyin", "text": "新品上市，限时优惠"},
                )
            for t in self.times(40 / self.span, 0.0, 1.0):
                em.ev(
                    t,
                    "flow.transfer",
                    "bank_flow",
                    {
                        "direction": "in",
                        "amount": float(rng.randrange(2, 50) * 100),
                        "counterparty_id": f"IND-{rng.randrange(10**6):06d}",
                        "channel": "wechat_pay",
                    },
                )
