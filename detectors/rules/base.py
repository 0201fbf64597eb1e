"""Rules as data: a rule is a :class:`~detectors.base.Detector` built from a YAML mapping.

Each rule kind (``threshold``, ``window``, ...) is a subclass in its own module of this
package, registered by its ``kind`` name in :data:`RULE_KINDS` and found without a list;
:func:`build_rule` validates the common fields and hands ``params`` to the kind, which
validates its own. Every problem is a :class:`RuleError` naming the file, the rule id
and the field.

Stateful kinds keep their per-entity state as plain data (lists, dicts of
numbers and short strings) so that it travels in ``EntityState.detectors``
(msgpack, changelog-backed). Windows are **day buckets** in China Standard
Time (:func:`day_of`): a 90-day window of counts is at most 90 pairs, whatever
the event rate. Kinds whose findings depend on time passing without events
(``absence``) set ``timed`` and implement :meth:`Rule.next_deadline` /
:meth:`Rule.on_time`; the engine calls them as event time advances.

>>> day_of(0.0), day_of(16 * 3600.0)  # 1970-01-01 16:00 UTC is the 2nd in Beijing
(0, 1)
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable
from typing import Any, ClassVar

from detectors.base import Describe, Detector, Signal
from riskflow.core.alerts import SEVERITIES
from riskflow.core.registry import Registry
from riskflow.core.schema import CATALOGUE, ENTITY_KINDS, Event

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
OPTIONAL = ("entity_kinds", "mode", "version", "params")

#: kind name -> class: every module of ``detectors/rules/`` is imported on the first read, and
#: each ``Rule`` subclass with a ``kind`` joins as it is defined (riskflow/core/registry.py).
RULE_KINDS: Registry[Rule] = Registry("detectors.rules", "rule kind")

DAY = 86400.0
CST_OFFSET = 8 * 3600.0  # windows count calendar days in China Standard Time


def day_of(ts: float) -> int:
    """Calendar day number (CST) of a POSIX time: the unit of every window bucket."""
    return int((ts + CST_OFFSET) // DAY)


def _any_in(got: Any, want: Any) -> bool:
    if isinstance(got, (list, tuple)):
        return any(g in want for g in got)
    return got in want


def _in(got: Any, want: Any) -> bool:
    return got in want


def _not_in(got: Any, want: Any) -> bool:
    return got not in want


OPS = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
    "in": _in,
    "not_in": _not_in,
    "any_in": _any_in,  # a list field (e.g. keywords) shares an element with the value list
}


class RuleError(ValueError):
    """A rule file is invalid; the message names the file, rule id and field."""

    def __init__(self, where: str, rule_id: str, field: str, problem: str) -> None:
        # One line, of bounded length: it is printed by `riskflow rules check` and logged by
        # workers, and the parts may come from a hostile pack (newlines, huge values).
        where, rule_id, field = _clip(where, 200), _clip(rule_id, 100), _clip(field, 100)
        problem = _clip(" ".join(str(problem).split()), 500)
        super().__init__(" ".join(f"{where}: rule {rule_id!r}: field {field!r}: {problem}".split()))
        self.where, self.rule_id, self.field, self.problem = where, rule_id, field, problem


class PackError(RuleError):
    """Every problem of a pack (``problems``, one :class:`RuleError` each); the message is the
    first of them and how many more there are. Defined here, beside :class:`RuleError`: in the
    compiled build a native class can be subclassed only in its own compiled module."""

    def __init__(self, problems: list[RuleError]) -> None:
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(first.where, first.rule_id, first.field, first.problem + more)
        self.problems = list(problems)


def _clip(text: str, most: int) -> str:
    text = str(text)
    return text if len(text) <= most else text[: most - 3] + "..."


class Condition:
    """``{field, op, value}`` on a payload. ``field`` may be a ratio ``a/b`` of two fields.

    A missing (null) field never matches, so a report that omits a ratio cannot
    breach a limit on it; a ratio with a zero or negative denominator does not match.

    >>> c = Condition("loan_balance/net_assets", ">", 8)
    >>> class P: loan_balance, net_assets = 900.0, 100.0
    >>> c.read(P), c.test(P)
    (9.0, True)
    """

    __slots__ = ("den", "field", "num", "op", "op_name", "value", "want")

    def __init__(self, field: str, op: str, value: Any) -> None:
        self.field, self.op_name, self.op, self.value = field, op, OPS[op], value
        num, _, den = field.partition("/")
        self.num, self.den = num.strip(), den.strip()
        # What the op compares against: for any_in over a list of strings, a set (same answer
        # for the list-of-strings fields it reads, e.g. keywords; one hash per element).
        self.want = (
            frozenset(value)
            if op == "any_in" and isinstance(value, list) and all(isinstance(v, str) for v in value)
            else value
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # explicit, for the compiled build (mypyc's native classes do not pickle by themselves)
        return (Condition, (self.field, self.op_name, self.value))

    def read(self, payload: Any) -> Any:
        got = getattr(payload, self.num, None)
        if got is None or not self.den:
            return got
        den = getattr(payload, self.den, None)
        if den is None or den <= 0:
            return None
        return got / den

    def test(self, payload: Any) -> bool:
        got = self.read(payload)
        if got is None:
            return False
        try:
            return bool(self.op(got, self.want))
        except TypeError:
            return False


def match(conditions: list[Condition], payload: Any) -> dict[str, Any] | None:
    """The fields the conditions read if all hold, else None."""
    evidence: dict[str, Any] = {}
    for c in conditions:
        got = c.read(payload)
        if got is None:
            return None
        try:
            if not c.op(got, c.want):
                return None
        except TypeError:
            return None
        evidence[c.field] = round(got, 6) if isinstance(got, float) else got
    return evidence


_INLINE_OPS = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "==": "==", "!=": "!=", "in": "in", "not_in": "not in"}


class Matcher:
    """:func:`match` specialised to one list of conditions when the pack loads.

    The per-event loop over conditions, the operator lookups and the calls through
    ``operator`` are compiled away into one generated function per list (with the same
    reads, comparisons, ``TypeError`` handling and evidence as :func:`match`):
    ``match(payload)`` returns the evidence or None, ``holds(payload)`` only whether
    all hold. It pickles as its conditions and recompiles on load.

    >>> m = Matcher([Condition("loan_balance/net_assets", ">", 8), Condition("npl_ratio", "<", 0.1)])
    >>> class P: loan_balance, net_assets, npl_ratio = 900.0, 100.0, 0.05
    >>> m.match(P), m.holds(P), match(m.conditions, P)
    ({'loan_balance/net_assets': 9.0, 'npl_ratio': 0.05}, True, {'loan_balance/net_assets': 9.0, 'npl_ratio': 0.05})
    """

    __slots__ = ("conditions", "holds", "match")

    def __init__(self, conditions: list[Condition]) -> None:
        self.conditions = list(conditions)
        self.match: Callable[[Any], dict[str, Any] | None] = self._compile(evidence=True)  # type: ignore[assignment]
        self.holds: Callable[[Any], bool] = self._compile(evidence=False)  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        return (Matcher, (self.conditions,))

    def _compile(self, *, evidence: bool) -> Callable[[Any], Any]:
        miss = "None" if evidence else "False"
        ns: dict[str, Any] = {"_any_in": _any_in}
        body = []
        for i, c in enumerate(self.conditions):
            ns[f"w{i}"] = c.want
            body.append(f"    v{i} = getattr(p, {c.num!r}, None)")
            body.append(f"    if v{i} is None:\n        return {miss}")
            if c.den:
                body.append(f"    d{i} = getattr(p, {c.den!r}, None)")
                body.append(f"    if d{i} is None or d{i} <= 0:\n        return {miss}")
                body.append(f"    v{i} = v{i} / d{i}")
            test = f"_any_in(v{i}, w{i})" if c.op_name == "any_in" else f"v{i} {_INLINE_OPS[c.op_name]} w{i}"
            body.append(f"    try:\n        ok = {test}\n    except TypeError:\n        return {miss}")
            body.append(f"    if not ok:\n        return {miss}")
        if evidence:
            body.append("    e = {}")
            for i, c in enumerate(self.conditions):
                body.append(f"    e[{c.field!r}] = round(v{i}, 6) if isinstance(v{i}, float) else v{i}")
            body.append("    return e")
        else:
            body.append("    return True")
        exec("def f(p):\n" + "\n".join(body), ns)  # names are repr() literals, values live in ns
        return ns["f"]  # type: ignore[no-any-return]


class Rule(Detector):
    """Base of every rule kind. Subclasses set ``kind`` and implement :meth:`configure`."""

    kind: ClassVar[str] = ""
    #: True for kinds that fire when event time passes a deadline (see :meth:`on_time`).
    timed: ClassVar[bool] = False

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        RULE_KINDS.add(cls.kind, cls)

    def __init__(self, spec: dict[str, Any], where: str = "<rule>", constants: dict[str, float] | None = None) -> None:
        self.spec = spec
        self.where = where
        self.constants = dict(constants or {})
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
        params = spec.get("params") or {}
        if not isinstance(params, dict):
            raise self.fail("params", "must be a mapping")
        self.configure(params)

    def __reduce__(self) -> tuple[Any, ...]:
        # A rule is its spec: it pickles as the constructor call (the compiled build's native
        # classes need this; the interpreted ones pickle the same way).
        return (type(self), (self.spec, self.where, self.constants))

    def clone(self) -> Rule:
        """A fresh rule with the same spec and constants (no state lives on a rule anyway)."""
        return build_rule(copy.deepcopy(self.spec), self.where, self.constants)

    def fail(self, field: str, problem: str) -> RuleError:
        return RuleError(self.where, self.id, field, problem)

    def configure(self, params: dict[str, Any]) -> None:
        """Read and check the kind's parameters; raise :meth:`fail` on a bad one."""

    def signal(self, key: str, evidence: dict[str, Any], score: float = 1.0) -> Signal:
        return Signal(self.id, key, self.severity, score, evidence)

    # -- parameter helpers shared by the kinds -------------------------------------------
    def number(
        self, params: dict[str, Any], name: str, *, default: Any = ..., minimum: float | None = None
    ) -> int | float:
        """A number, or ``{const: NAME, times: K}`` resolved from the pack's constants (e.g. LPR).

        An int stays an int (it shows in evidence as written): ``int | float``, not ``float``,
        which the compiled build would store as a C double."""
        raw = params.get(name, default)
        if raw is ...:
            raise self.fail(f"params.{name}", "required")
        value = self.resolve(raw, f"params.{name}")
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise self.fail(f"params.{name}", f"must be a number, got {raw!r}")
        if minimum is not None and value < minimum:
            raise self.fail(f"params.{name}", f"must be >= {minimum}")
        return value

    def resolve(self, raw: Any, field: str) -> Any:
        if isinstance(raw, dict) and "const" in raw:
            name = raw["const"]
            if name not in self.constants:
                raise self.fail(field, f"unknown constant {name!r}; defined: {sorted(self.constants)}")
            times = raw.get("times", 1)
            if not isinstance(times, (int, float)):
                raise self.fail(field, "times must be a number")
            return self.constants[name] * times
        return raw

    def event_type_param(self, params: dict[str, Any], name: str) -> str:
        return check_event_type(self, f"params.{name}", params.get(name))

    def conditions(self, raw: Any, field: str, event_type: str, *, required: bool = False) -> list[Condition]:
        """Parse a ``when`` list; every field must exist on the event type's payload."""
        if raw is None and not required:
            return []
        if not isinstance(raw, list) or (required and not raw):
            raise self.fail(field, "a non-empty list of conditions is required" if required else "must be a list")
        fields = set(CATALOGUE[event_type].__struct_fields__)
        out = []
        for i, c in enumerate(raw):
            where = f"{field}[{i}]"
            if not isinstance(c, dict) or not {"field", "op", "value"} <= set(c):
                raise self.fail(where, "needs field, op and value")
            if c["op"] not in OPS:
                raise self.fail(f"{where}.op", f"unknown op; known: {sorted(OPS)}")
            for part in str(c["field"]).split("/"):
                if part.strip() not in fields:
                    raise self.fail(f"{where}.field", f"{part.strip()!r} is not a field of {event_type}")
            value = self.resolve(c["value"], f"{where}.value")
            if c["op"] in ("in", "not_in", "any_in") and not isinstance(value, list):
                raise self.fail(f"{where}.value", f"op {c['op']} needs a list")
            out.append(Condition(str(c["field"]), c["op"], value))
        return out

    def field_param(self, params: dict[str, Any], name: str, event_type: str) -> str:
        f = params.get(name)
        if not isinstance(f, str) or f not in CATALOGUE[event_type].__struct_fields__:
            raise self.fail(f"params.{name}", f"must name a field of {event_type}, got {f!r}")
        return f

    def check_unknown(self, params: dict[str, Any], known: set[str]) -> None:
        extra = set(params) - known
        if extra:
            raise self.fail(f"params.{sorted(extra)[0]}", f"unknown parameter; known: {sorted(known)}")

    # -- stateful kinds ---------------------------------------------------------------------
    def score_one(self, state: Any, event: Event) -> list[Signal]:
        """Stateful kinds decide in :meth:`process`; plain rules override this."""
        return []

    def next_deadline(self, state: Any) -> float | None:
        """Earliest event time at which :meth:`on_time` may fire for this state (timed kinds)."""
        return None

    def on_time(self, state: Any, watermark: float) -> tuple[Any, list[Signal]]:
        """Fire whatever is overdue once event time has passed ``watermark`` (timed kinds)."""
        return state, []


def build_rule(spec: Any, where: str, constants: dict[str, float] | None = None) -> Rule:
    if not isinstance(spec, dict):
        raise RuleError(where, "?", "-", "a rule must be a mapping")
    rid = str(spec.get("id", "?"))
    for f in REQUIRED:
        if not spec.get(f):
            raise RuleError(where, rid, f, "required field is missing or empty")
    for f in spec:
        if f not in REQUIRED and f not in OPTIONAL:
            raise RuleError(where, rid, f, f"unknown field; allowed: {sorted(REQUIRED + OPTIONAL)}")
    if spec["kind"] not in RULE_KINDS:
        raise RuleError(where, rid, "kind", f"unknown kind; known: {sorted(RULE_KINDS)}")
    if spec["severity"] not in SEVERITIES:
        raise RuleError(where, rid, "severity", f"must be one of {SEVERITIES}")
    if spec["dimension"] not in DIMENSIONS:
        raise RuleError(where, rid, "dimension", f"must be one of {DIMENSIONS}")
    if spec.get("mode", "live") not in ("live", "shadow"):
        raise RuleError(where, rid, "mode", "must be live or shadow")
    kinds = spec.get("entity_kinds")
    if kinds is not None and not isinstance(kinds, list):
        raise RuleError(where, rid, "entity_kinds", "must be a list")
    for k in kinds or ():
        if k not in ENTITY_KINDS:
            raise RuleError(where, rid, "entity_kinds", f"unknown entity kind {k!r}")
    return RULE_KINDS[spec["kind"]](spec, where, constants)


def check_event_type(rule: Rule, field: str, value: Any) -> str:
    if value not in CATALOGUE:
        raise rule.fail(field, f"unknown event type {value!r}")
    return str(value)
