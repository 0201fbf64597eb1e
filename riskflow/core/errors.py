"""Errors every floor may raise for the CLI to print."""

from __future__ import annotations


class CommandError(Exception):
    """An error the user can fix: printed as one line (``riskflow <command>: <message>``), exit 2."""
