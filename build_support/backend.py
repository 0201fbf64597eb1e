"""PEP 517 build backend: setuptools, plus the compiler toolchain only when asked for.

``RISKFLOW_COMPILE=1`` builds the modules listed in ``detectors.MYPYC_MODULES`` as
C extensions with mypyc (``setup.py``); it then needs mypy (which ships mypyc) in
the build environment, and a C compiler with the Python headers on the machine.
Without the switch the build is setuptools' own, pure Python, and needs neither:
mypy is not even installed into the build environment. setuptools offers no way to
declare a build requirement conditionally (``setup_requires`` is deprecated and
would need mypy importable before ``setup()`` runs), so this wrapper adds it in the
``get_requires_for_build_*`` hooks, the place PEP 517 gives for dynamic build
requirements.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from setuptools import build_meta as _setuptools
from setuptools.build_meta import (  # noqa: F401  (the hooks this backend does not change)
    build_editable,
    build_sdist,
    build_wheel,
    get_requires_for_build_sdist,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)

#: what the compiled build needs besides setuptools: mypyc (in mypy), and msgspec so that
#: mypy sees the real types of the event and state structs the compiled modules use
COMPILE_REQUIRES = ["mypy>=2.0,<3", "msgspec>=0.19,<0.23"]


def compile_requested() -> bool:
    return os.environ.get("RISKFLOW_COMPILE", "") == "1"


def _requires(hook: Callable[[dict | None], list[str]], config_settings: dict | None) -> list[str]:
    if not compile_requested():
        return hook(config_settings)
    # setuptools runs setup.py to collect its own requirements; mypyc is not installed yet in
    # this phase (it is what we are asking for), so setup.py runs as the pure build would.
    saved = os.environ.pop("RISKFLOW_COMPILE")
    try:
        return [*hook(config_settings), *COMPILE_REQUIRES]
    finally:
        os.environ["RISKFLOW_COMPILE"] = saved


def get_requires_for_build_wheel(config_settings: dict | None = None) -> list[str]:
    return _requires(_setuptools.get_requires_for_build_wheel, config_settings)


def get_requires_for_build_editable(config_settings: dict | None = None) -> list[str]:
    return _requires(_setuptools.get_requires_for_build_editable, config_settings)
