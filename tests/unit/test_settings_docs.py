"""Every setting is documented, and the documentation lists no setting that does not exist.

``RISKFLOW_BATCH_TIMEOUT`` stayed in the settings and the Configuration table long after
the batch loop stopped reading it (a batch became one fetch): an operator tuning it changed
nothing. These checks keep the settings, the code that reads them and the operators' page
(docs/operations.md, "Configuration") in step.
"""

from __future__ import annotations

import re
from pathlib import Path

from riskflow.core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
FIELDS = {f"RISKFLOW_{name.upper()}": name for name in Settings.model_fields}


def _configuration_table() -> set[str]:
    section = OPERATIONS.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `(RISKFLOW_\w+)`", section, re.M))


def test_every_setting_is_in_the_configuration_table() -> None:
    missing = sorted(FIELDS.keys() - _configuration_table())
    assert not missing, f"settings the Configuration table of docs/operations.md lacks: {missing}"


def test_the_configuration_table_lists_only_real_settings() -> None:
    table = _configuration_table()
    assert len(table) > 20  # the table was found
    unknown = sorted(table - FIELDS.keys())
    assert not unknown, f"Configuration rows with no setting behind them: {unknown}"


def test_every_setting_is_read_by_some_code() -> None:
    # an attribute read, ``settings.x`` or ``self.x`` (settings.py's own derived values); a
    # field's definition (``x: int = Field(...)``) is not one
    sources = [
        p.read_text(encoding="utf-8") for d in ("riskflow", "streams", "detectors") for p in (ROOT / d).rglob("*.py")
    ]
    unread = sorted(var for var, name in FIELDS.items() if not any(re.search(rf"\.{name}\b", src) for src in sources))
    assert not unread, f"settings no code reads: {unread}"
