"""Import the modules of the compiled build from their Python source, in this process.

With the compiled build installed in place (``RISKFLOW_COMPILE=1 pip install -e .``),
the extension modules shadow the ``.py`` files next to them. ``bench/compiled.py`` runs
the pure variant in a subprocess that calls :func:`install` before importing RiskFlow,
so that both variants run the very same source tree, side by side in one run.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


class _SourceFirst(importlib.abc.MetaPathFinder):
    def __init__(self, modules: Sequence[str]) -> None:
        self.modules = frozenset(modules)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.modules:
            return None
        return importlib.util.spec_from_file_location(fullname, ROOT / (fullname.replace(".", "/") + ".py"))


def install() -> None:
    """From now on, the compiled build's modules are imported from source (call before importing them)."""
    import detectors  # only the package: its __init__ is never compiled

    loaded = [m for m in detectors.MYPYC_MODULES if m in sys.modules]
    if loaded:
        raise RuntimeError(f"already imported: {loaded}")
    sys.meta_path.insert(0, _SourceFirst(detectors.MYPYC_MODULES))
