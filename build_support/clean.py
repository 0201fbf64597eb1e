"""Back to pure Python in place: remove what the compiled build put in the source tree.

``RISKFLOW_COMPILE=1 pip install -e .`` builds the extension modules next to their
``.py`` files (an editable install imports from the tree), and they take precedence
over the source. Reinstalling without the switch does not remove them; this does:
the ``.so`` files under ``detectors/`` and ``riskflow/``, the mypyc runtime library at the
top (``<hash>__mypyc.*.so``) and ``build/`` (the generated C and objects).

    python build_support/clean.py
"""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def clean() -> list[Path]:
    gone = [*ROOT.glob("*__mypyc.*.so"), *ROOT.glob("detectors/**/*.so"), *ROOT.glob("riskflow/**/*.so")]
    for p in gone:
        p.unlink()
    if (ROOT / "build").is_dir():
        shutil.rmtree(ROOT / "build")
        gone.append(ROOT / "build")
    return gone


if __name__ == "__main__":
    for p in clean():
        print(f"removed {p.relative_to(ROOT)}")
