"""Root pytest configuration (not part of any package).

In the optional compiled build (``RISKFLOW_COMPILE=1``, README "Performance"), the modules
of ``detectors.MYPYC_MODULES`` are extension modules built next to their ``.py`` files.
pytest's doctest collection (``--doctest-modules``) imports each module and checks that
its ``__file__`` is the ``.py`` it collected, so it would stop at the ``.so``
("import file mismatch") although it is the same module. With a compiled build in the
tree, that check is switched off (pytest's own ``PY_IGNORE_IMPORTMISMATCH``), so the
doctests run against the compiled code.
"""

from __future__ import annotations

import importlib.machinery
import os
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_SUFFIXES = tuple(importlib.machinery.EXTENSION_SUFFIXES)

if any(p.name.endswith(_SUFFIXES) for p in (_HERE / "detectors").rglob("*.so")):
    os.environ.setdefault("PY_IGNORE_IMPORTMISMATCH", "1")
