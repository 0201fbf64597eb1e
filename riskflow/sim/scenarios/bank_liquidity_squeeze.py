"""Liquidity squeeze at a small local bank (中小银行流动性危机)."""

from __future__ import annotations

from riskflow.sim.normal import prudential_base
from riskflow.sim.scenarios.base import Scenario


class BankLiquiditySqueeze(Scenario):
    """A small rural or village bank whose liquidity drains, after the public
    pattern of the 2019-2022 small-bank runs and takeovers (fictional).

    Timeline (fractions of onset → failure):

    - 0.00-1.00 monthly prudential reports: liquidity coverage ratio falls from
      ~1.6 to ~0.15 by 0.60, capital adequacy from ~12.5 % through 10.5 % (warning) to
      ~7 % (below the 8 % minimum), NPL ratio from ~2 % to ~6.5 % (limit 5 %);
    - 0.30-1.00 large deposit outflows, accelerating;
    - 0.50-1.00 negative press surge ("挤兑", "取不出钱");
    - 0.70-1.00 complaints (withdrawals refused);
    - 0.85-0.95 crowds gather at branches; 1.00 taken over (suspension).
    """

    name = "bank_liquidity_squeeze"
    kinds = ("bank",)
    share = 0.003
    duration = (60.0, 180.0)

    def story(self) -> None:
        em, rng = self.em, self.rng
        b = em.ent.attrs.setdefault("prudential", prudential_base("bank", rng))
        for p in self.cal.periods:
            if self.at(0) <= p.day < self.at(1.0):
                f = min(1.0, (p.day - self.onset) / (0.6 * self.span) * self.k**0.5)
                em.ev(
                    em.office_time(p.day + rng.uniform(5, 12)),
                    "report.prudential",
                    "regulator_report",
                    {
                        "period_end": p.period_end,
                        "liquidity_coverage_ratio": round(1.6 - 1.45 * f, 4),
                        "capital_adequacy_ratio": round(0.125 - 0.055 * f, 4),
                        "npl_ratio": round(0.02 + 0.045 * f, 4),
                        "provision_coverage_ratio": round(1.8 - 0.8 * f, 4),
                        "loan_balance": b["loan_balance"],
                        "net_assets": round(b["net_assets"] * (1 - 0.3 * f), 0),
                    },
                )
        self.outflows(2.0, 0.3, 1.0, (50_000_000, 300_000_000), related=0.1)
        self.bad_press(0.8, 0.5, 1.0, ["挤兑", "取不出钱", "流动性"], ramp=4)
        self.complaints(1.0, 0.7, 1.0, ("redemption_refused", "other"), ramp=3)
        self.grid(0.85, "crowd_gathering", "储户在网点聚集")
        self.grid(0.90, "crowd_gathering", "储户聚集人数增加")
        self.grid(0.95, "crowd_gathering", "多个网点出现聚集")
        self.enforcement(1.0, "suspension", "依法接管")
