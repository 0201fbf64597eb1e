"""The durable alert store (SQLite file by default, PostgreSQL by URL) and its Kafka sink."""

from __future__ import annotations

from detectors.risk.config import RiskConfig
from riskflow.store.base import (
    ACTIONS,
    STATUSES,
    AlertRow,
    AlertStore,
    AuditEntry,
    Dialect,
    IllegalTransition,
    NotFound,
    Revision,
    TransitionError,
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
from riskflow.store.postgres import PostgresDialect
from riskflow.store.sqlite import SQLiteDialect

__all__ = [
    "ACTIONS",
    "CASE_ACTIONS",
    "CASE_STATUSES",
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
    "PostgresDialect",
    "Revision",
    "SQLiteDialect",
    "TransitionError",
    "open_store",
]


def open_store(target: str, risk_config: RiskConfig | None = None) -> AlertStore:
    """A store for ``target``: ``postgresql://...`` URL, ``sqlite:///path``, a file path or ``:memory:``.

    >>> open_store(":memory:").dialect.name
    'sqlite'
    """
    scheme = target.split("://", 1)[0] if "://" in target else ("sqlite" if target.startswith("sqlite:") else "")
    cls = Dialect.registry.get(scheme, SQLiteDialect)
    return AlertStore(cls(target), risk_config)
