"""NAV manipulation at a private securities fund (净值操纵)."""

from __future__ import annotations

from riskflow.sim.normal import filings, subscriptions
from riskflow.sim.scenarios.base import Scenario


class NavManipulation(Scenario):
    """A private securities fund that reports implausibly smooth returns to
    attract money, then the real losses surface (fictional).

    Timeline (fractions of onset → failure):

    - 0.00-0.90 weekly NAV rising ~0.3 % every week with almost no variance
      (a weekly volatility of 0.03 % where the market gives 2-3 %);
    - 0.00-0.90 qualified subscriptions at twice the normal rate;
    - 0.80 AMAC false-filing notice; 0.85-1.00 redemptions unpaid;
      complaints (false promotion);
    - 0.92 NAV drops ~35 % in one week (the jump); 0.97 AMAC material-omission
      notice; 1.00 failure.
    """

    name = "nav_manipulation"
    kinds = ("private_fund",)
    share = 0.004
    duration = (120.0, 360.0)

    def story(self) -> None:
        em, ent, rng = self.em, self.em.ent, self.rng
        nav = ent.attrs.get("nav", 1.0)
        t = self.onset + 7
        while t < self.at(0.92):
            nav *= 1.003 + rng.gauss(0, 0.0003)
            em.ev(
                em.office_time(t),
                "fund.nav_reported",
                "amac",
                {"fund_id": ent.entity_id, "nav": round(nav, 4), "period_end": em.date(t - 1)},
            )
            t += 7
        nav *= 0.65  # the jump, on the next weekly report after 0.92 (before the failure)
        t = min(t, self.at(0.99))
        em.ev(
            em.office_time(t),
            "fund.nav_reported",
            "amac",
            {"fund_id": ent.entity_id, "nav": round(nav, 4), "period_end": em.date(t - 1)},
        )
        subscriptions(em, self.at(0), self.at(0.9), 2 / 15 * self.k)
        filings(em, self.cal, self.at(0), self.at(1.0), monthly=True)
        self.notice(0.80, "false_filing")
        self.redemptions_unpaid(0.5, 0.85, 1.0, paid_until=0.0, delay=(1, 2))
        self.complaints(0.8, 0.85, 1.0, ("false_promotion", "redemption_refused"), ramp=2)
        self.notice(0.97, "material_omission")
