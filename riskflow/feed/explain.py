"""Alerts in words officers can read: the rule's names, rationale and regulation from the rule
pack, and the evidence as a sentence in English and Chinese (raw evidence stays in the alert).

>>> ex = Explainer.default()
>>> ex.rule("all.complaint_surge")["name_zh"]
'投诉量激增'
>>> ex.sentence("all.complaint_surge", {"recent": 3, "recent_days": 7, "baseline_average": 0.08,
...             "baseline_days": 90, "factor": 3, "floor": 3})[0]
'3 in the last 7 days against an expected 0.08 over the previous 90 days (threshold: 3× and at least 3)'
>>> en, zh = ex.sentence("pf.return_above_4lpr", {"promised_return": 0.15})
>>> en
'promised return a year 15%, above the 4 × 1-year LPR (3%) limit of 12%'
>>> zh
'承诺年化收益率 15%，高于4倍一年期LPR（3%）即12%的上限'

Threshold rules (one event meets every condition) are told from their conditions in the rule
pack and the event's values that the evidence holds: the field in words with its unit, the
limit (a pack constant such as the LPR named with its multiple) and which side of it the
value lies; an enumerated value in words; matched keywords. Evidence that does not fit its
rule's conditions falls back to ``field = value``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

_LEVEL_ZH = {"red": "红", "orange": "橙", "yellow": "黄", "green": "绿"}
_AGG_ZH = {"count": "次数", "sum": "合计", "max": "最大值", "distinct": "不同数"}


#: Payload fields that threshold rules read: (English, Chinese, unit: pct, times, cny or "").
FIELDS: dict[str, tuple[str, str, str]] = {
    "capital_adequacy_ratio": ("capital adequacy ratio", "资本充足率", "pct"),
    "npl_ratio": ("non-performing loan ratio", "不良贷款率", "pct"),
    "liquidity_coverage_ratio": ("liquidity coverage ratio", "流动性覆盖率", "pct"),
    "liquidity_ratio": ("liquidity ratio", "流动性比例", "pct"),
    "largest_borrower_share": ("largest single exposure / net assets", "最大单一客户集中度", "pct"),
    "promised_return": ("promised return a year", "承诺年化收益率", "pct"),
    "guarantee_leverage": ("guarantee leverage (liabilities / net assets)", "融资担保放大倍数", "times"),
    "borrowed_funds/net_assets": ("borrowed funds / net assets", "融入资金/净资产", "times"),
    "loan_balance/net_assets": ("risk assets / net assets", "风险资产/净资产", "times"),
    "net_assets": ("net assets", "净资产", "cny"),
    "amount": ("amount", "金额", "cny"),
    "investor_type": ("investor", "投资者类型", ""),
    "notice": ("AMAC notice", "中基协公示", ""),
    "observation": ("grid officer observed", "网格员发现", ""),
    "action": ("regulator's action", "监管措施", ""),
    "channel": ("channel", "宣传渠道", ""),
    "guaranteed": ("principal and return guaranteed", "承诺保本保收益", ""),
    "keywords": ("risk words in the coverage", "舆情命中风险特征词", ""),
}
#: Enumerated payload values in words (English, Chinese).
VALUES: dict[str, tuple[str, str]] = {
    "individual": ("an individual", "个人投资者"),
    "lost_contact": ("lost contact", "失联"),
    "abnormal_operation": ("abnormal operation", "异常经营"),
    "false_filing": ("false filing", "虚假填报"),
    "material_omission": ("material omission", "重大遗漏"),
    "bottom_line_violation": ("breach of the bottom lines", "违反八条底线"),
    "office_closed": ("office closed", "经营场所关闭"),
    "crowd_gathering": ("crowd gathering", "人员聚集"),
    "staff_evacuated": ("staff evacuated", "人员撤离"),
    "signage_removed": ("signage removed", "招牌撤除"),
    "suspension": ("business suspended", "暂停业务"),
    "licence_revoked": ("licence revoked", "吊销许可"),
    "warning": ("warning", "警告"),
    "fine": ("fine", "罚款"),
    "wechat": ("WeChat", "微信"),
    "weibo": ("Weibo", "微博"),
    "douyin": ("Douyin", "抖音"),
    "kuaishou": ("Kuaishou", "快手"),
    "website": ("website", "网站"),
    "app": ("app", "应用程序"),
    "newspaper": ("newspaper", "报纸"),
    "tv": ("TV", "电视"),
    "radio": ("radio", "广播"),
    "sms": ("text message", "短信"),
    "seminar": ("seminar", "推介会"),
    "flyer": ("flyer", "传单"),
    "roadshow": ("roadshow", "路演"),
    "personal_account": ("a personal account", "个人账户"),
    "wechat_pay": ("WeChat Pay", "微信支付"),
    "alipay": ("Alipay", "支付宝"),
    "cash": ("cash", "现金"),
}
#: Rule-pack constants a limit may be a multiple of (English, Chinese).
CONSTANTS: dict[str, tuple[str, str]] = {"lpr_1y": ("1-year LPR", "一年期LPR")}
_ABOVE = {
    ">": ("above", "高于"),
    ">=": ("at or above", "不低于"),
    "<": ("below", "低于"),
    "<=": ("at or below", "不高于"),
}


def _num(x: Any) -> str:
    if isinstance(x, float):  # (beyond 1e15, digits are noise: scientific notation)
        return f"{x:,.6g}" if abs(x) < 1e6 or abs(x) >= 1e15 or not math.isfinite(x) else f"{x:,.0f}"
    return str(x)


class Explainer:
    """Rule texts by id (from a rule pack) and evidence sentences by evidence shape."""

    def __init__(
        self,
        rules: Mapping[str, Mapping[str, str]],
        conditions: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    ) -> None:
        self.rules = {k: dict(v) for k, v in rules.items()}
        #: threshold rules' conditions: ``{field, op, value (resolved), const, times}`` each
        self.conditions = {k: [dict(c) for c in v] for k, v in (conditions or {}).items()}

    @classmethod
    def default(cls) -> Explainer:
        """From the built-in rule pack (a pack pushed on the rules topic later is not seen here)."""
        from detectors.anomaly import anomaly_detectors
        from detectors.rules import load_pack

        pack = load_pack()
        # the anomaly detectors name themselves too (the board showed `anomaly.daily` as a tag)
        named = [*pack.detectors, *anomaly_detectors(None, peer=True)]
        return cls(
            {
                r.id: {
                    "name_zh": r.describe.name_zh,
                    "name_en": r.describe.name_en,
                    "rationale": r.describe.rationale,
                    "regulation": r.describe.source,
                    "dimension": r.describe.dimension,
                }
                for r in named
                if r.describe.name_zh or r.describe.name_en
            },
            {r.id: threshold_conditions(r) for r in pack.detectors if getattr(r, "kind", "") == "threshold"},
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
        conds = self.conditions.get(rule_id)
        if conds and e:
            try:
                told = _threshold(conds, e)
            except (TypeError, ValueError, OverflowError):  # evidence not of its rule's shape
                told = None
            if told:
                return told
        parts = [f"{k} = {_num(v)}" for k, v in e.items() if not isinstance(v, dict | list)]
        text = "; ".join(parts) or "-"
        return text, text


def threshold_conditions(rule: Any) -> list[dict[str, Any]]:
    """A threshold rule's conditions as data: resolved limits, and the constant behind each."""
    raw = (rule.spec.get("params") or {}).get("when") or []
    out = []
    for c, spec in zip(rule.when, raw, strict=False):
        v = spec.get("value") if isinstance(spec, dict) else None
        const = v if isinstance(v, dict) and "const" in v else {}
        out.append(
            {
                "field": c.field,
                "op": c.op_name,
                "value": c.value,
                "const": const.get("const", ""),
                "times": const.get("times", 1),
            }
        )
    return out


def _fmt(x: Any, unit: str) -> tuple[str, str]:
    """A value in ``unit`` as (English, Chinese)."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        if isinstance(x, bool):
            return ("yes", "是") if x else ("no", "否")
        en, zh = VALUES.get(str(x), (str(x).replace("_", " "), str(x)))
        return en, zh
    if not math.isfinite(x):
        raise ValueError("not a finite number")
    if unit == "pct":
        if not math.isfinite(x * 100):
            raise ValueError("out of range")
        t = f"{round(x * 100, 4):g}%"
        return t, t
    if unit == "times":
        t = f"{round(x, 3):g}×"
        return t, t
    if unit == "cny":
        zh = f"{x / 1e4:,.6g}万元" if abs(x) >= 1e4 else f"{x:,.6g}元"
        return f"{'-' if x < 0 else ''}¥{abs(x):,.0f}", zh
    t = _num(x)
    return t, t


def _limit(c: Mapping[str, Any], unit: str) -> tuple[str, str]:
    en, zh = _fmt(c["value"], unit)
    name = CONSTANTS.get(str(c.get("const", "")))
    if not name:
        return en, zh
    times = c.get("times", 1)
    base_en, _ = _fmt(c["value"] / times if times else c["value"], unit)
    k = _num(times)
    return f"{k} × {name[0]} ({base_en}) limit of {en}", f"{k}倍{name[1]}（{base_en}）即{zh}"


def _threshold(conds: Sequence[Mapping[str, Any]], ev: Mapping[str, Any]) -> tuple[str, str] | None:
    """A threshold alert's evidence told from its rule's conditions, or None if it does not fit."""
    if not all(c["field"] in ev for c in conds):
        return None
    en_parts: list[str] = []
    zh_parts: list[str] = []
    told: dict[str, int] = {}  # field -> index of its clause (two limits on one field share it)
    bounds = [str(c["field"]) for c in conds if c["op"] in _ABOVE]
    for c in conds:
        field, op = str(c["field"]), str(c["op"])
        label_en, label_zh, unit = FIELDS.get(field, (field.replace("_", " "), field, ""))
        got = ev[field]
        if op in _ABOVE:
            if isinstance(got, bool) or not isinstance(got, int | float):
                return None
            w_en, w_zh = _ABOVE[op]
            if c["value"] == 0 and not c.get("const"):
                more_en, more_zh = f"{w_en} zero", f"{w_zh}零"
            else:
                lim_en, lim_zh = _limit(c, unit)
                kind_en, kind_zh = ("minimum", "下限") if op in ("<", "<=") else ("limit", "上限")
                if bounds.count(field) > 1:  # a band (e.g. between the minimum and the buffer): bare bounds
                    more_en, more_zh = f"{w_en} {lim_en}", f"{w_zh}{lim_zh}"
                elif c.get("const"):
                    more_en, more_zh = f"{w_en} the {lim_en}", f"{w_zh}{lim_zh}的上限"
                else:
                    more_en, more_zh = f"{w_en} the {lim_en} {kind_en}", f"{w_zh}{lim_zh}的{kind_zh}"
            if field in told:  # a second bound on the same field: "..., at or above A and below B"
                i = told[field]
                en_parts[i] += f" and {more_en}"
                zh_parts[i] += f"且{more_zh}"
                continue
            v_en, v_zh = _fmt(got, unit)
            told[field] = len(en_parts)
            en_parts.append(f"{label_en} {v_en}, {more_en}")
            zh_parts.append(f"{label_zh} {v_zh}，{more_zh}")
        elif op in ("==", "!="):
            v_en, v_zh = _fmt(got, unit)
            neg_en, neg_zh = ("not ", "非") if op == "!=" else ("", "")
            en_parts.append(f"{label_en}: {neg_en}{v_en}")
            zh_parts.append(f"{label_zh}：{neg_zh}{v_zh}")
        elif op in ("in", "not_in"):
            v_en, v_zh = _fmt(got, unit)
            listed = list(c["value"]) if isinstance(c["value"], list | tuple) else []
            if op == "not_in":
                en_parts.append(f"{label_en}: {v_en}, none of the {len(listed)} listed")
                zh_parts.append(f"{label_zh}：{v_zh}（不在所列{len(listed)}项之中）")
            elif len(listed) <= 4:
                en_parts.append(f"{label_en}: {v_en} (one of: {', '.join(_fmt(x, unit)[0] for x in listed)})")
                zh_parts.append(f"{label_zh}：{v_zh}（属于：{'、'.join(_fmt(x, unit)[1] for x in listed)}）")
            else:
                en_parts.append(f"{label_en}: {v_en} (one of the {len(listed)} listed)")
                zh_parts.append(f"{label_zh}：{v_zh}（属于所列{len(listed)}项之一）")
        elif op == "any_in":
            watched = list(c["value"]) if isinstance(c["value"], list | tuple) else []
            words = got if isinstance(got, list | tuple) else [got]
            hit = [str(w) for w in words if w in watched][:8]
            if not hit:
                return None
            en_parts.append(f"{label_en}: {', '.join(hit)} ({len(watched)} words watched)")
            zh_parts.append(f"{label_zh}：{'、'.join(hit)}（共监测{len(watched)}个）")
        else:
            return None
    return "; ".join(en_parts), "；".join(zh_parts)
