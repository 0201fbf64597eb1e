"""Compatibility shim: the simulator lives in :mod:`riskflow.sim`."""

from __future__ import annotations

from riskflow.sim import DEFAULT_START, generate, simulate

__all__ = ["DEFAULT_START", "generate", "simulate"]
