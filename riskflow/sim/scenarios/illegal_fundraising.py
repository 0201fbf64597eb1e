"""Illegal fundraising through a non-licensed "wealth management" firm (非法集资)."""

from __future__ import annotations

from riskflow.sim.scenarios.base import Scenario


class IllegalFundraising(Scenario):
    """An ordinary company (``enterprise``, no licence to take public money)
    selling "wealth management" to the public, after the public pattern of
    非法吸收公众存款 cases (fictional). All four marks of illegal fundraising:
    no approval, public promotion, promised returns, unspecified public.

    Timeline (fractions of onset → failure):

    - 0.00-0.70 ads on open channels (WeChat moments, seminars for the elderly,
      flyers) promising 12-36 % a year, often "guaranteed";
    - 0.10-0.85 fan-in from hundreds of individuals: small transfers
      (10k-300k CNY) from distinct people, each also recorded as a
      subscription to the firm's "product" — ≥ 150 individuals and
      ≥ 1,000,000 CNY well within 90 days;
    - 0.40-1.00 money moves out to related parties;
    - 0.60-1.00 complaints (fraud, false promotion), rising; 0.65+ bad press;
    - 0.70-0.80 legal representative, executive and address change;
    - 0.70-1.00 lawsuits as defendant; 0.85 crowd gathering; 0.95 office
      closed; 1.00 case opened (licence revoked).
    """

    name = "illegal_fundraising"
    kinds = ("enterprise",)
    share = 0.005
    duration = (90.0, 240.0)

    def story(self) -> None:
        ent = self.em.ent
        self.lure_ads(0.4, 0.0, 0.7, (0.12, 0.36), 0.6, "养老理财，保本高息，年化24%，介绍亲友再返利")
        self.retail_inflows(4.0, 0.1, 0.85, f"{ent.entity_id}-WM1", flow=True, subscribe=True)
        self.outflows(0.5, 0.4, 1.0, (200_000, 2_000_000), related=0.8)
        self.complaints(1.0, 0.6, 1.0, ("fraud", "false_promotion", "redemption_refused"), ramp=4)
        self.bad_press(0.4, 0.65, 1.0, ["非法集资", "跑路", "养老骗局"], ramp=3)
        self.change(0.70, "legal_rep")
        self.change(0.75, "executive")
        self.change(0.80, "address")
        self.sued(0.3, 0.7, 1.0, "民间借贷纠纷", ramp=2)
        self.grid(0.85, "crowd_gathering", "投资人聚集")
        self.grid(0.95, "office_closed", "公司人去楼空")
        self.enforcement(1.0, "licence_revoked", "涉嫌非法吸收公众存款，立案侦查")
