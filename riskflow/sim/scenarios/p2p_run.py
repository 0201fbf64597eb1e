"""Run on a legacy P2P lending platform (P2P平台挤兑)."""

from __future__ import annotations

from riskflow.sim.normal import filings
from riskflow.sim.scenarios.base import Scenario


class P2PRun(Scenario):
    """A legacy P2P lending platform that hikes rates, limits withdrawals and
    suffers a run, after the public pattern of the 2018 P2P wave (fictional).

    Timeline (fractions of onset → failure):

    - 0.00-0.40 ads with rising promised rates (10 → 18 % a year), "本息保障";
    - 0.30-1.00 withdrawals surge (outflows), part of them to related parties;
    - 0.40 withdrawal limits announced; negative press ("提现困难", "逾期");
    - 0.45-1.00 complaint storm (withdrawal refused, fraud), rising;
    - 0.50 periodic filings stop; 0.60-1.00 lawsuits as defendant;
    - 0.80 legal representative changes; 0.85-0.90 crowds gather;
    - 0.95 office closed; 0.97 business suspended by the regulator; 1.00 failure.
    """

    name = "p2p_run"
    kinds = ("p2p_platform",)
    share = 0.003
    duration = (60.0, 150.0)

    def story(self) -> None:
        em = self.em
        filings(em, self.cal, self.at(0), self.at(0.5), monthly=True)
        self.lure_ads(0.15, 0.0, 0.2, (0.10, 0.13), 0.3, "年化收益率上调，本息保障")
        self.lure_ads(0.25, 0.2, 0.4, (0.14, 0.18), 0.9, "限时加息，年化18%，本息保障")
        self.outflows(3.0, 0.3, 1.0, (20_000, 400_000), related=0.25)
        em.ev(
            self.at(0.4),
            "advertisement.published",
            "advertising_monitor",
            {"channel": "website", "text": "即日起单日提现限额5000元，提现T+30到账"},
        )
        self.bad_press(0.6, 0.4, 1.0, ["提现困难", "逾期", "限制提现"], ramp=3)
        self.complaints(2.0, 0.45, 1.0, ("redemption_refused", "fraud", "lost_contact"), ramp=5)
        self.sued(0.4, 0.6, 1.0, "网络借贷纠纷", ramp=2)
        self.change(0.80, "legal_rep")
        self.grid(0.85, "crowd_gathering", "出借人聚集")
        self.grid(0.90, "crowd_gathering", "出借人再次聚集")
        self.grid(0.95, "office_closed", "平台办公场所关闭")
        self.enforcement(0.97, "suspension", "暂停网络借贷信息中介业务")
