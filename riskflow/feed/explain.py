"""Alerts in words officers can read: the rule's names, rationale and regulation from the rule
pack, and the evidence as a sentence in English and Chinese (raw evidence stays in the alert).

>>> ex = Explainer.default()
>>> ex.rule("all.complaint_surge")["name_zh"]
'投诉量激增'
>>> ex.sentence("all.complaint_surge", {"recent": 3, "recent_days": 7, "baseline_average": 0.08,
...             "baseline_days": 90, "factor": 3, "floor": 3})[0]
'3 in the last 7 days against an expected 0.08 over the previous 90 days (threshold: 3× and at least 3)'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

_LEVEL_ZH = {"red": "红", "orange": "橙", "yellow": "黄", "green": "绿"}
_AGG_ZH = {"count": "次数", "sum": "合计", "max": "最大值", "distinct": "不同数"}


def _num(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:,.6g}" if abs(x) < 1e6 else f"{x:,.0f}"
    return str(x)


class Explainer:
    """Rule texts by id (from a rule pack) and evidence sentences by evidence shape."""

    def __init__(self, rules: Mapping[str, Mapping[str, str]]) -> None:
        self.rules = {k: dict(v) for k, v in rules.items()}

    @classmethod
    def default(cls) -> Explainer:
        """From the built-in rule pack (a pack pushed on the rules topic later is not seen here)."""
        from detectors.rules import load_pack

        pack = load_pack()
        return cls(
            {
                r.id: {
                    "name_zh": r.describe.name_zh,
                    "name_en": r.describe.name_en,
                    "rationale": r.describe.rationale,
                    "regulation": r.describe.source,
                    "dimension": r.describe.dimension,
                }
                for r in pack.detectors
            }
        )

    def rule(self, rule_id: str) -> dict[str, str]:
        return self.rules.get(rule_id, {})

    def sentence(self, rule_id: str, ev: Mapping[str, Any]) -> tuple[str, str]:
        """The evidence as ``(English, Chinese)`` sentences."""
        e = dict(ev or {})
        if {"recent", "recent_days", "baseline_average"} <= e.keys():
            en = (
                f"{_num(e['recent'])} in the last {e['recent_days']} days against an expected "
                f"{_num(e['baseline_average'])} over the previous {e.get('baseline_days', '?')} days "
                f"(threshold: {_num(e.get('factor', '?'))}× and at least {_num(e.get('floor', '?'))})"
            )
            zh = (
                f"近{e['recent_days']}日 {_num(e['recent'])} 次，前{e.get('baseline_days', '?')}日同期预期 "
                f"{_num(e['baseline_average'])} 次"
                f"（阈值：{_num(e.get('factor', '?'))}倍且不少于{_num(e.get('floor', '?'))}）"
            )
            return en, zh
        if {"agg", "value", "threshold"} <= e.keys():
            days = e.get("window_days", "?")
            en = f"{e['agg']} {_num(e['value'])} in {days} days (threshold {_num(e['threshold'])})"
            agg = _AGG_ZH.get(str(e["agg"]), str(e["agg"]))
            zh = f"{days}日内{agg} {_num(e['value'])}（阈值 {_num(e['threshold'])}）"
            return en, zh
        if {"metric", "value", "baseline"} <= e.keys():
            z = f", robust z {_num(e['robust_z'])}" if "robust_z" in e else ""
            en = f"{e['metric']} {_num(e['value'])} against a usual {_num(e['baseline'])}{z}"
            z_zh = z.replace(", robust z", "，稳健z值")
            zh = f"{e['metric']} 为 {_num(e['value'])}，通常为 {_num(e['baseline'])}{z_zh}"
            return en, zh
        if {"from", "to", "index"} <= e.keys():
            en = f"risk level {e['from']} → {e['to']} at index {_num(e['index'])}: {e.get('disposal_en', '')}"
            zh = (
                f"风险等级 {_LEVEL_ZH.get(str(e['from']), e['from'])}→{_LEVEL_ZH.get(str(e['to']), e['to'])}，"
                f"风险指数 {_num(e['index'])}：{e.get('disposal_zh', '')}"
            )
            return en, zh
        if "source" in e and "relation" in e:
            en = (
                f"from {e['source']} ({e['relation']}, {e.get('source_level', '')} at "
                f"{_num(e.get('source_index', ''))}): adds {_num(e.get('contribution', ''))} to the index"
            )
            zh = (
                f"来自 {e['source']}（{e['relation']}，{_LEVEL_ZH.get(str(e.get('source_level')), '')}，"
                f"指数 {_num(e.get('source_index', ''))}）：指数增加 {_num(e.get('contribution', ''))}"
            )
            return en, zh
        parts = [f"{k} = {_num(v)}" for k, v in e.items() if not isinstance(v, dict | list)]
        text = "; ".join(parts) or "-"
        return text, text
