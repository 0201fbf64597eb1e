"""Risk-index configuration: dimension weights, severity masses, decay, levels, episodes.

Everything an officer may want to tune lives here, as plain data; the shipped
defaults are in ``risk.yaml`` beside this file (``RISKFLOW_RISK_CONFIG`` points
the worker at another file).

>>> cfg = RiskConfig()
>>> cfg.level_of(85.0), cfg.level_of(60.0), cfg.level_of(39.9)
('red', 'orange', 'green')
>>> cfg.level_of(57.0, current="orange")  # hysteresis: stays orange until below 60 - 5
'orange'
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

#: Levels from the most to the least severe, with their disposal routes.
LEVELS: tuple[str, ...] = ("red", "orange", "yellow", "green")
LEVEL_RANK: dict[str, int] = {"green": 0, "yellow": 1, "orange": 2, "red": 3}
LEVEL_NAMES: dict[str, tuple[str, str, str]] = {
    # level: (Chinese, English disposal route, Chinese disposal route)
    "red": ("红", "immediate action; referral", "立即处置、移交"),
    "orange": ("橙", "on-site inspection", "现场检查"),
    "yellow": ("黄", "off-site monitoring", "非现场监测"),
    "green": ("绿", "watch list", "关注名单"),
}
#: Severity of the alert that announces a move to each level.
LEVEL_SEVERITY: dict[str, str] = {"red": "critical", "orange": "high", "yellow": "medium", "green": "low"}

DEFAULT_WEIGHTS: dict[str, float] = {
    "compliance_deviation": 1.0,  # 合规偏离度
    "inducement": 0.9,  # 利诱性
    "social_spread": 0.6,  # 社会传播性
    "complaints": 0.8,  # 投诉率
    "keyword_hits": 0.5,  # 特征词命中率
    "financial_soundness": 0.9,  # 财务稳健性
    "operational_anomaly": 0.7,  # 经营异常
    "anomaly": 0.5,  # 统计异常 (anomaly detectors)
}
DEFAULT_MASSES: dict[str, float] = {"low": 0.1, "medium": 0.25, "high": 0.6, "critical": 2.0}
DAY = 86400.0
#: Levels that open an officer's case (yellow and above).
CASE_LEVELS: tuple[str, ...] = ("red", "orange", "yellow")


@dataclass(frozen=True)
class Disposal:
    """What a case at one level must do: its route, checklist, deadline and the regulation behind it.

    >>> d = RiskConfig().disposal_for("red")
    >>> d.route_zh, d.deadline_days, len(d.checklist) > 0
    ('立即处置、移交', 1.0, True)
    """

    level: str
    route_en: str
    route_zh: str
    deadline_days: float
    #: Disposal steps, each ``(English, Chinese)``.
    checklist: tuple[tuple[str, str], ...]
    regulation: str = ""

    @classmethod
    def from_mapping(cls, level: str, data: dict[str, Any]) -> Disposal:
        if not isinstance(data, dict):
            raise ValueError(f"disposal.{level}: a mapping")
        try:
            days = float(data["deadline_days"])
            steps = tuple((str(s["en"]), str(s["zh"])) for s in data.get("checklist") or ())
            d = cls(level, str(data["route_en"]), str(data["route_zh"]), days, steps, str(data.get("regulation", "")))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(
                f"disposal.{level}: needs route_en, route_zh, deadline_days and checklist items {{en, zh}} ({e})"
            ) from e
        if not 0 < days <= 365:
            raise ValueError(f"disposal.{level}: deadline_days must be in (0, 365]")
        return d


def _default_disposal() -> dict[str, dict[str, Any]]:
    doc = yaml.safe_load((Path(__file__).parent / "risk.yaml").read_text(encoding="utf-8"))
    return dict(doc["disposal"])


@dataclass(frozen=True)
class RiskConfig:
    """How signals become an index, a level and alert episodes.

    The index of an entity is ``100 * (1 - prod_d (1 - w_d * (1 - exp(-x_d))))``
    where ``x_d`` is the decayed sum of the masses of the signals of dimension
    ``d``: each signal adds ``mass[severity] * score`` and every mass halves
    every ``half_life_days`` of event time. A dimension alone can bring the
    index to at most ``100 * w_d``; dimensions combine like independent
    probabilities (noisy-or), so the index stays in [0, 100].
    """

    weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    default_weight: float = 0.5  # a dimension not listed in ``weights``
    masses: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MASSES))
    half_life_days: float = 30.0
    #: Lower bounds of red, orange, yellow (index >= bound); below yellow is green.
    red: float = 80.0
    orange: float = 60.0
    yellow: float = 40.0
    #: A level is left downwards only when the index falls this far below its bound.
    hysteresis: float = 5.0
    #: A rule's contribution below this mass is forgotten (keeps state small).
    forget_below: float = 0.01
    max_tags: int = 5
    #: Episodes: a hit more than this after the episode's last hit opens a new one.
    episode_quiet_days: float = 14.0
    #: Re-emit an open episode on every hit up to this count, then on 1-2-5 milestones.
    episode_emit_first: int = 3
    #: Distinct-people sketch size (k minimum hashes); exact below k.
    people_k: int = 32
    #: Contagion: levels at or above this propagate to linked entities.
    contagion_from: str = "orange"
    #: Share of the source's index passed on, per kind of link.
    contagion_factors: dict[str, float] = field(
        default_factory=lambda: {"manager": 0.75, "parent": 0.6, "related_party": 0.5}
    )
    #: Contagion alone never raises a dependent above this index (79.9: never red).
    contagion_cap: float = 79.9
    #: Dependents an entity remembers (those with the smallest id hash are kept).
    max_dependents: int = 32
    #: Link targets an entity remembers having announced itself to.
    max_links: int = 8
    #: Sources whose latest push an entity remembers (those with the smallest id hash are kept).
    max_sources: int = 4
    #: Event time (hours) between what causes a push and its application at the dependent: the
    #: push waits in the dependent's state until the dependent's partition time passes it, so
    #: it lands at the same place among the dependent's own events however late it arrives
    #: within that time (live: through the links topic; backtest: in windows this long).
    contagion_delay_hours: float = 1.0
    #: A push arriving after its time (its source's partition or the links topic lagging more than
    #: the delay) is re-placed: the dependent is evaluated again from before the push's time with
    #: the push in its event-time place. Bounds of how far back: the dependent's own steps kept
    #: (events, landed pushes, timed advances; between this many and twice as many) and hours of
    #: its event time. Beyond either the push lands at once and is ledgered.
    contagion_replace_steps: int = 16
    contagion_replace_hours: float = 72.0
    #: Case disposal per level (yellow and above): route, checklist, deadline, regulation (risk.yaml).
    disposal: dict[str, dict[str, Any]] = field(default_factory=_default_disposal)

    def __post_init__(self) -> None:
        if not (0 < self.yellow < self.orange < self.red <= 100):
            raise ValueError("risk levels need 0 < yellow < orange < red <= 100")
        if self.half_life_days <= 0 or self.episode_quiet_days <= 0:
            raise ValueError("half_life_days and episode_quiet_days must be positive")
        if not self.contagion_delay_hours > 0:
            raise ValueError("contagion_delay_hours must be positive")
        if self.contagion_replace_steps < 0 or not self.contagion_replace_hours >= 0:
            raise ValueError("contagion_replace_steps and contagion_replace_hours must not be negative")
        for d, w in self.weights.items():
            if not 0 <= w <= 1:
                raise ValueError(f"weight of {d!r} must be in [0, 1]")
        if self.contagion_from not in LEVEL_RANK:
            raise ValueError(f"contagion_from must be one of {LEVELS}")
        missing = [lv for lv in CASE_LEVELS if lv not in self.disposal]
        if missing or set(self.disposal) - set(CASE_LEVELS):
            raise ValueError(f"disposal needs exactly the levels {', '.join(CASE_LEVELS)}")
        for lv in CASE_LEVELS:
            Disposal.from_mapping(lv, self.disposal[lv])

    def disposal_for(self, level: str) -> Disposal:
        """The disposal of a case at ``level`` (one of ``CASE_LEVELS``)."""
        return Disposal.from_mapping(level, self.disposal[level])

    @property
    def half_life(self) -> float:
        return self.half_life_days * DAY

    @property
    def contagion_delay(self) -> float:
        return self.contagion_delay_hours * 3600.0

    @property
    def quiet(self) -> float:
        return self.episode_quiet_days * DAY

    def weight(self, dimension: str) -> float:
        return self.weights.get(dimension, self.default_weight)

    def mass(self, severity: str, score: float) -> float:
        return self.masses.get(severity, self.masses.get("medium", 0.25)) * max(0.0, min(1.0, score))

    def level_of(self, index: float, current: str = "green") -> str:
        """The level for ``index``; leaving ``current`` downwards needs ``hysteresis`` points of margin."""
        bounds = {"red": self.red, "orange": self.orange, "yellow": self.yellow}
        raw = (
            "red"
            if index >= self.red
            else "orange"
            if index >= self.orange
            else "yellow"
            if index >= self.yellow
            else "green"
        )
        if LEVEL_RANK[raw] < LEVEL_RANK[current] and index >= bounds[current] - self.hysteresis:
            return current
        return raw

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> RiskConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown risk settings: {sorted(unknown)}")
        merged: dict[str, Any] = dict(data)
        for name, default in (("weights", DEFAULT_WEIGHTS), ("masses", DEFAULT_MASSES)):
            if name in merged:
                merged[name] = {**default, **merged[name]}
        if "disposal" in merged:
            if not isinstance(merged["disposal"], dict):
                raise ValueError("disposal: a mapping of level to its disposal")
            merged["disposal"] = {**_default_disposal(), **merged["disposal"]}
        return cls(**merged)


DEFAULT_FILE = Path(__file__).parent / "risk.yaml"


def load_risk_config(path: str | Path | None = None) -> RiskConfig:
    """Read a YAML risk configuration (default: the shipped ``risk.yaml``)."""
    doc = yaml.safe_load(Path(path or DEFAULT_FILE).read_text(encoding="utf-8")) or {}
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: a risk configuration is a mapping")
    return RiskConfig.from_mapping(doc)
