"""API tokens and roles of the officers' feed.

Roles are ordered: a ``viewer`` reads, an ``officer`` also acts on alerts (ack,
assign, resolve, snooze), an ``admin`` may also re-open a resolved alert
(overturning a closing decision is a supervisor's call).

>>> t = Tokens.parse("s3cret-0fficer:officer:li.na, r34d-only:viewer:audit")
>>> t.lookup("s3cret-0fficer")
Principal(name='li.na', role='officer')
>>> t.lookup("s3cret-0fficer").can("admin"), t.lookup("nope")
(False, None)
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Final

ROLES: Final = ("viewer", "officer", "admin")


@dataclass(frozen=True)
class Principal:
    name: str
    role: str

    def can(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


class Tokens:
    """The configured tokens (``token:role:name`` comma-separated, RISKFLOW_FEED_TOKENS)."""

    def __init__(self, entries: dict[str, Principal]) -> None:
        self._entries = dict(entries)

    @classmethod
    def parse(cls, spec: str) -> Tokens:
        out: dict[str, Principal] = {}
        for item in spec.split(","):
            item = item.strip()
            if not item:
                continue
            parts = item.split(":")
            if len(parts) != 3 or not all(p.strip() for p in parts):
                raise ValueError(f"feed token {item[:4]}…: expected token:role:name")
            tok, role, name = (p.strip() for p in parts)
            if role not in ROLES:
                raise ValueError(f"feed token for {name}: role must be one of {', '.join(ROLES)}")
            if len(tok) < 8:
                raise ValueError(f"feed token for {name}: at least 8 characters")
            out[tok] = Principal(name, role)
        return cls(out)

    @classmethod
    def generated(cls, role: str = "admin", name: str = "local-admin") -> tuple[Tokens, str]:
        """One random token for this run (when none are configured); returns it too."""
        tok = secrets.token_urlsafe(18)
        return cls({tok: Principal(name, role)}), tok

    def lookup(self, token: str | None) -> Principal | None:
        if not token:
            return None
        found = None
        for tok, who in self._entries.items():  # constant-time compare against every token
            if hmac.compare_digest(tok.encode(), token.encode()):
                found = who
        return found

    def __len__(self) -> int:
        return len(self._entries)
