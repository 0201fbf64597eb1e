"""Optional compiled build (issue 9): ``RISKFLOW_COMPILE=1 pip install [-e] .``.

Everything is declared in ``pyproject.toml``; this file only adds the mypyc
extension modules, and only with the switch (see ``build_support/backend.py``).
The modules are ``MYPYC_MODULES`` in ``detectors/__init__.py`` (partly derived from the
files of ``detectors/rules/``), read by running that one file, which imports the standard
library only, without importing the package.
"""

from __future__ import annotations

import os
import runpy
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent


def mypyc_modules() -> list[str]:
    found = runpy.run_path(str(HERE / "detectors" / "__init__.py")).get("MYPYC_MODULES")
    if not found:
        raise RuntimeError("detectors/__init__.py defines no MYPYC_MODULES")
    return list(found)


if os.environ.get("RISKFLOW_COMPILE", "") == "1":
    from mypyc.build import mypycify

    paths = [m.replace(".", "/") + ".py" for m in mypyc_modules()]
    setup(ext_modules=mypycify(["--config-file", "build_support/mypyc.ini", *paths], opt_level="3"))
else:
    setup()
