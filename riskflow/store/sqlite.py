"""SQLite: the default store, one file (WAL journal, so the feed reads while the sink writes)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, ClassVar

from riskflow.store.base import Dialect


class SQLiteDialect(Dialect):
    """A SQLite file (or ``:memory:``).

    >>> SQLiteDialect("sqlite:///tmp/alerts.db").path
    '/tmp/alerts.db'
    """

    name: ClassVar[str] = "sqlite"
    schemes: ClassVar[tuple[str, ...]] = ("sqlite",)
    autoinc_pk: ClassVar[str] = "INTEGER PRIMARY KEY AUTOINCREMENT"
    placeholder: ClassVar[str] = "?"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        path = url[len("sqlite:") :] if url.startswith("sqlite:") else url
        self.path = "/" + path.lstrip("/") if path.startswith("///") else path.removeprefix("//")

    def connect(self) -> Any:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: the store issues BEGIN IMMEDIATE itself, so a read-then-write
        # (a lifecycle transition) holds the write lock from its first statement.
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30.0)
        if self.path != ":memory:":
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    def begin(self, cur: Any) -> None:
        cur.execute("BEGIN IMMEDIATE")

    def describe(self) -> str:
        return f"sqlite:{self.path}"
