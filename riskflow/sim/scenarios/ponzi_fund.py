"""Ponzi-style private fund (私募基金庞氏骗局)."""

from __future__ import annotations

from riskflow.sim.normal import filings, nav_series
from riskflow.sim.scenarios.base import Scenario


class PonziFund(Scenario):
    """A private fund that turns into a Ponzi scheme, modelled on the public
    pattern of the 2018-2019 private-fund collapses (fictional names).

    Timeline (fractions of onset → failure):

    - 0.00-0.50 guaranteed high-return ads (15-24 % a year, "保本保息") on open
      channels: WeChat, Douyin, seminars, flyers — 公开宣传, 承诺回报;
    - 0.10-0.65 surge of small retail subscriptions (10k-300k CNY, far below the
      1,000,000 CNY qualified-investor minimum), hundreds of investors (> 200);
    - 0.30-0.90 outflows to related parties (most of the money raised);
    - 0.45 periodic filings stop (missed monthly/quarterly filings);
    - 0.50-1.00 redemption requests: paid late at first, unpaid from 0.60;
    - 0.60-1.00 complaint storm (redemption refused, fraud), negative press;
    - 0.70-0.80 legal representative, address and executives change;
    - 0.75-1.00 lawsuits as defendant;
    - 0.85 AMAC abnormal-operation notice; 0.90+ grid: office closed, crowd
      gathering, staff evacuated; 0.97 AMAC lost-contact; 1.00 collapse.
    """

    name = "ponzi_fund"
    kinds = ("private_fund",)
    share = 0.01
    duration = (90.0, 240.0)

    def story(self) -> None:
        em, ent = self.em, self.em.ent
        nav_series(em, self.at(0), self.at(0.7), 7, 0.002, drift=0.004)
        filings(em, self.cal, self.at(0), self.at(0.45), monthly=ent.attrs.get("fund_type") == "securities")
        self.lure_ads(0.3, 0.0, 0.5, (0.15, 0.24), 0.9, "保本保息，年化收益18%，稳赚不赔，1万元起投")
        self.retail_inflows(5.0, 0.1, 0.65, ent.entity_id, flow=False, subscribe=True)
        self.outflows(0.6, 0.3, 0.9, (300_000, 3_000_000), related=0.85)
        self.redemptions_unpaid(0.8, 0.5, 1.0, paid_until=0.6, delay=(8, 25))
        self.complaints(1.5, 0.6, 1.0, ("redemption_refused", "fraud", "false_promotion"), ramp=4)
        self.bad_press(0.5, 0.65, 1.0, ["爆雷", "兑付困难", "跑路"], ramp=3)
        self.change(0.70, "legal_rep")
        self.change(0.74, "address")
        self.change(0.78, "executive")
        self.sued(0.3, 0.75, 1.0, "私募基金合同纠纷", ramp=3)
        self.notice(0.85, "abnormal_operation")
        self.grid(0.90, "office_closed", "办公场所关闭，人员无法联系")
        self.grid(0.92, "crowd_gathering", "投资人聚集要求兑付")
        self.grid(0.94, "staff_evacuated", "员工已撤离")
        self.notice(0.97, "lost_contact")
