"""Shared by several test modules (moved out of test_cli_errors.py, so no test imports another)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def riskflow(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("RISKFLOW_")}
    base["RISKFLOW_DATA_DIR"] = str(cwd / ".riskflow")
    return subprocess.run(
        [sys.executable, "-m", "riskflow", *args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )
