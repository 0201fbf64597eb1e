"""Financing-guarantee company caught in a guarantee-chain default (担保链违约)."""

from __future__ import annotations

from riskflow.sim.normal import prudential_base
from riskflow.sim.scenarios.base import Scenario


class GuaranteeChainDefault(Scenario):
    """A financing-guarantee company whose leverage creeps up until clients
    default in a chain, after the public pattern of the 2012-2014 Zhejiang
    guarantee-chain crises (fictional).

    Timeline (fractions of onset → failure):

    - 0.00-1.00 monthly prudential reports (the regulator tightens reporting):
      guarantee leverage climbs from ~6x to ~14x net assets by 0.70 (limit 10x), the
      largest client's share from ~5 % to ~18 % (limit 10 %), net assets shrink;
    - 0.30-1.00 client defaults: lawsuits as defendant (guarantee liability),
      accelerating; 0.40-1.00 compensation payments flow out;
    - 0.60-1.00 negative press and complaints;
    - 0.85 fine; 0.95 staff evacuated; 1.00 business suspended.
    """

    name = "guarantee_chain_default"
    kinds = ("financing_guarantee",)
    share = 0.004
    duration = (120.0, 300.0)

    def story(self) -> None:
        em, rng = self.em, self.rng
        base = em.ent.attrs.setdefault("prudential", prudential_base("financing_guarantee", rng))
        lev0, share0, net0 = base["guarantee_leverage"], base["largest_borrower_share"], base["net_assets"]
        for p in self.cal.periods:
            if self.at(0) <= p.day < self.at(1.0):
                f = min(1.0, (p.day - self.onset) / (0.7 * self.span))
                em.ev(
                    em.office_time(p.day + rng.uniform(5, 15)),
                    "report.prudential",
                    "regulator_report",
                    {
                        "period_end": p.period_end,
                        "guarantee_leverage": round(lev0 + (14.5 - lev0) * f**1.3 * self.k**0.5, 3),
                        "largest_borrower_share": round(share0 + (0.19 - share0) * f, 4),
                        "net_assets": round(net0 * (1 - 0.4 * f), 0),
                    },
                )
        self.sued(0.25, 0.3, 1.0, "担保合同纠纷（代偿追偿）", ramp=4)
        self.outflows(0.3, 0.4, 1.0, (2_000_000, 20_000_000), related=0.3)
        self.bad_press(0.3, 0.6, 1.0, ["担保链", "代偿", "资金链断裂"], ramp=2)
        self.complaints(0.3, 0.6, 1.0, ("other", "fraud"), ramp=2)
        self.enforcement(0.85, "fine", "超杠杆经营")
        self.grid(0.95, "staff_evacuated", "人员撤离")
        self.enforcement(1.0, "suspension", "责令停业整顿")
