"""The durable alert store (SQLite file by default, PostgreSQL by URL).

A database is one module here with a :class:`Dialect` subclass (``sqlite.py``,
``postgres.py``), found without a list through :data:`DIALECTS`. The sink that fills the
store from the alerts topic is ``riskflow/sinks/store.py``.
"""

from __future__ import annotations

from detectors.risk.config import RiskConfig
from riskflow.store.base import (
    ACTIONS,
    DIALECTS,
    STATUSES,
    AlertRow,
    AlertStore,
    AuditEntry,
    Dialect,
    IllegalTransition,
    NotFound,
    Revision,
    TransitionError,
    dialect_for,
)
from riskflow.store.cases import (
    CASE_ACTIONS,
    CASE_STATUSES,
    OUTCOMES,
    Case,
    CaseEntry,
    CaseError,
    CaseNotFound,
    IllegalCaseTransition,
)
from riskflow.store.sqlite import SQLiteDialect

__all__ = [
    "ACTIONS",
    "CASE_ACTIONS",
    "CASE_STATUSES",
    "DIALECTS",
    "OUTCOMES",
    "STATUSES",
    "AlertRow",
    "AlertStore",
    "AuditEntry",
    "Case",
    "CaseEntry",
    "CaseError",
    "CaseNotFound",
    "Dialect",
    "IllegalCaseTransition",
    "IllegalTransition",
    "NotFound",
    "Revision",
    "SQLiteDialect",
    "TransitionError",
    "dialect_for",
    "open_store",
]


def open_store(target: str, risk_config: RiskConfig | None = None) -> AlertStore:
    """A store for ``target``: a URL of a registered dialect's scheme (``postgresql://...``,
    ``sqlite:///path``), or a file path or ``:memory:`` (SQLite).

    >>> open_store(":memory:").dialect.name
    'sqlite'
    """
    scheme = target.split("://", 1)[0] if "://" in target else ("sqlite" if target.startswith("sqlite:") else "")
    cls = dialect_for(scheme) or SQLiteDialect
    return AlertStore(cls(target), risk_config)
