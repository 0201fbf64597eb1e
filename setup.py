"""Optional compiled build (issue 9): ``RISKFLOW_COMPILE=1 pip install [-e] .``.

Everything is declared in ``pyproject.toml``; this file only adds the mypyc
extension modules, and only with the switch (see ``build_support/backend.py``).
The modules are the list ``MYPYC_MODULES`` in ``detectors/__init__.py``, read
here without importing the package.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent


def mypyc_modules() -> list[str]:
    tree = ast.parse((HERE / "detectors" / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.AnnAssign | ast.Assign):
            targets = [node.target] if isinstance(node, ast.AnnAssign) else node.targets
            if any(isinstance(t, ast.Name) and t.id == "MYPYC_MODULES" for t in targets):
                return list(ast.literal_eval(node.value))  # type: ignore[arg-type]
    raise RuntimeError("detectors/__init__.py defines no MYPYC_MODULES")


if os.environ.get("RISKFLOW_COMPILE", "") == "1":
    from mypyc.build import mypycify

    paths = [m.replace(".", "/") + ".py" for m in mypyc_modules()]
    setup(ext_modules=mypycify(["--config-file", "build_support/mypyc.ini", *paths], opt_level="3"))
else:
    setup()
