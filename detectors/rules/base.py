"""Rules as data: a rule is a :class:`~detectors.base.Detector` built from a YAML mapping.

Each rule kind (``threshold``, ...) is a subclass in its own module, registered
by its ``kind`` name; :func:`build_rule` validates the common fields and hands
the rest to the kind.
"""

from __future__ import annotations

from typing import Any, ClassVar

from detectors.base import Describe, Detector
from riskflow.alerts import SEVERITIES
from riskflow.schema import CATALOGUE, ENTITY_KINDS

#: The 冒烟指数 dimensions plus RiskFlow's own two.
DIMENSIONS = (
    "compliance_deviation",  # 合规偏离度
    "inducement",  # 利诱性
    "social_spread",  # 社会传播性
    "complaints",  # 投诉率
    "keyword_hits",  # 特征词命中率
    "financial_soundness",  # 财务稳健性
    "operational_anomaly",  # 经营异常
)

REQUIRED = ("id", "name_zh", "name_en", "kind", "severity", "dimension", "rationale", "source")

RULE_KINDS: dict[str, type[Rule]] = {}


class RuleError(ValueError):
    """A rule file is invalid; the message names the file, rule id and field."""

    def __init__(self, where: str, rule_id: str, field: str, problem: str) -> None:
        super().__init__(f"{where}: rule {rule_id!r}: field {field!r}: {problem}")
        self.where, self.rule_id, self.field, self.problem = where, rule_id, field, problem


class Rule(Detector):
    """Base of every rule kind. Subclasses set ``kind`` and implement :meth:`configure`."""

    kind: ClassVar[str] = ""

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if cls.kind:
            RULE_KINDS[cls.kind] = cls

    def __init__(self, spec: dict[str, Any], where: str = "<rule>") -> None:
        self.spec = spec
        self.where = where
        self.id = spec["id"]
        self.severity = spec["severity"]
        self.mode = spec.get("mode", "live")
        self.version = str(spec.get("version", "1"))
        self.describe = Describe(
            name_zh=spec["name_zh"],
            name_en=spec["name_en"],
            dimension=spec["dimension"],
            source=spec["source"],
            rationale=spec["rationale"],
        )
        kinds = spec.get("entity_kinds")
        self.entity_kinds = frozenset(kinds) if kinds else None
        self.configure(spec.get("params") or {})

    def fail(self, field: str, problem: str) -> RuleError:
        return RuleError(self.where, self.id, field, problem)

    def configure(self, params: dict[str, Any]) -> None:
        """Read and check the kind's parameters; raise :meth:`fail` on a bad one."""


def build_rule(spec: Any, where: str) -> Rule:
    if not isinstance(spec, dict):
        raise RuleError(where, "?", "-", "a rule must be a mapping")
    rid = str(spec.get("id", "?"))
    for f in REQUIRED:
        if not spec.get(f):
            raise RuleError(where, rid, f, "required field is missing or empty")
    if spec["kind"] not in RULE_KINDS:
        raise RuleError(where, rid, "kind", f"unknown kind; known: {sorted(RULE_KINDS)}")
    if spec["severity"] not in SEVERITIES:
        raise RuleError(where, rid, "severity", f"must be one of {SEVERITIES}")
    if spec["dimension"] not in DIMENSIONS:
        raise RuleError(where, rid, "dimension", f"must be one of {DIMENSIONS}")
    if spec.get("mode", "live") not in ("live", "shadow"):
        raise RuleError(where, rid, "mode", "must be live or shadow")
    for k in spec.get("entity_kinds") or ():
        if k not in ENTITY_KINDS:
            raise RuleError(where, rid, "entity_kinds", f"unknown entity kind {k!r}")
    return RULE_KINDS[spec["kind"]](spec, where)


def check_event_type(rule: Rule, field: str, value: Any) -> str:
    if value not in CATALOGUE:
        raise rule.fail(field, f"unknown event type {value!r}")
    return str(value)
