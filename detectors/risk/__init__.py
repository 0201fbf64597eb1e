"""The risk index 风险指数, levels 风险等级, alert episodes and linked-entity contagion.

Pure Python: detectors produce signals, this package turns them into the
officer-facing view (``scorer.py``), with its configuration (``config.py``,
defaults in ``risk.yaml``), per-entity state (``state.py``) and a bounded
distinct counter for affected people (``people.py``).
"""

from __future__ import annotations

from detectors.risk.config import LEVELS, RiskConfig, load_risk_config
from detectors.risk.scorer import LEVEL_RULE, RiskScorer
from detectors.risk.state import RiskState, RuleTrack

__all__ = ["LEVELS", "LEVEL_RULE", "RiskConfig", "RiskScorer", "RiskState", "RuleTrack", "load_risk_config"]
