"""The one detector interface shared by rules and anomaly models.

Shaped after river's anomaly detectors (``learn_one`` / ``score_one`` over
plain data) with the per-entity state made explicit: a detector object holds
only its configuration (public attributes); everything it learns about an
entity lives in a plain, serialisable ``state`` value that the engine keeps
per entity (in a changelog-backed table when live). ``process`` is the
decision: by default it learns, then scores (a rule); an anomaly detector
overrides it to score first and not learn from what it flagged.

>>> class EveryComplaint(Detector):
...     id = "demo.complaint"
...     event_types = frozenset({"complaint.filed"})
...     def score_one(self, state, event):
...         return [Signal(self.id, event.event_id, "low", 1.0, {"category": event.payload.category})]
>>> d = EveryComplaint()
>>> d.init_state() is None
True
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, ClassVar

from riskflow.core.schema import Event

#: Where a detector reports the model scores it computed, (entity kind, score), for the
#: worker's metrics: the batch result's ``model_scores`` while
#: :meth:`detectors.pipeline.BatchProcessor.process` runs, None otherwise (a detector run
#: alone reports nothing). Scores travel with the batch, not in the detector, which holds
#: only its configuration.
MODEL_SCORES: ContextVar[list[tuple[str, float]] | None] = ContextVar("riskflow_model_scores", default=None)


@dataclass(frozen=True, slots=True)
class Signal:
    """A finding of one detector on one entity.

    ``key`` identifies the finding for the detector (an event id for a
    per-event rule, a window start for a windowed one): the alert id is derived
    from (detector id, entity id, key), so the same finding always gets the
    same id. ``score`` in [0, 1] is the finding's strength, used by the risk index.
    ``correction``: this revises an earlier finding (an out-of-order event changed it;
    score 0, so no weight): the engine issues it as the next revision of the rule's alert.
    """

    detector_id: str
    key: str
    severity: str
    score: float
    evidence: dict[str, Any] = field(default_factory=dict)
    correction: bool = False


@dataclass(frozen=True, slots=True)
class Describe:
    """Officer-facing description of a detector."""

    name_zh: str
    name_en: str
    dimension: str = ""
    source: str = ""
    rationale: str = ""


class Detector(ABC):
    """Base class of every detector.

    Subclasses set ``id`` and may narrow ``event_types`` / ``entity_kinds``
    (``None`` means all) so that the engine only calls them with events they
    care about.
    """

    id: str = ""
    version: str = "1"
    event_types: frozenset[str] | None = None
    entity_kinds: frozenset[str] | None = None
    mode: str = "live"  # "live" or "shadow"
    describe: Describe = Describe("", "")
    kind: ClassVar[str] = "detector"

    def applies_to(self, event: Event) -> bool:
        return (self.event_types is None or event.event_type in self.event_types) and (
            self.entity_kinds is None or event.entity_kind in self.entity_kinds
        )

    def init_state(self) -> Any:
        """Fresh per-entity state: plain data (None, numbers, str, lists, dicts)."""
        return None

    def learn_one(self, state: Any, event: Event) -> Any:
        """Fold the event into the entity's state and return the new state."""
        return state

    @abstractmethod
    def score_one(self, state: Any, event: Event) -> list[Signal]:
        """Findings for this event given the entity's state. Must not mutate ``state``."""

    def process(self, state: Any, event: Event) -> tuple[Any, list[Signal]]:
        """The decision step the engine calls: learn, then score (a rule)."""
        state = self.learn_one(state, event)
        return state, self.score_one(state, event)
