"""The documentation names only commands and settings that exist.

Every ``riskflow …`` command in a fenced code block of README.md and docs/*.md parses with
the real CLI; every command named in running text is a real (sub)command (its ``--help``
exits 0); every ``RISKFLOW_*`` variable named is a setting (or one of the few build and
test switches listed here).
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from riskflow.cli import build_parser
from riskflow.core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SETTINGS = {f"RISKFLOW_{name.upper()}" for name in Settings.model_fields}
#: variables read outside the settings: the build and the test suite's own switches
OTHER_VARIABLES = {"RISKFLOW_COMPILE", "RISKFLOW_EXPECT_COMPILED", "RISKFLOW_FUZZ_EXAMPLES"}


def _blocks(text: str) -> list[str]:
    """The shell blocks of a page (``bash``, ``sh`` or untagged), not YAML or JSON."""
    return [
        body for lang, body in re.findall(r"^```([a-z]*)\n(.*?)^```", text, re.M | re.S) if lang in ("", "bash", "sh")
    ]


def _block_commands() -> list[tuple[str, str]]:
    out = []
    for page in PAGES:
        for block in _blocks(page.read_text(encoding="utf-8")):
            for line in block.splitlines():
                # a synopsis's optional parts ([--json], [--status S]) are left out
                line = re.sub(r"\[[^\]]*\]", "", line.split(" #", 1)[0]).strip()
                for part in re.split(r"&&|;| \| ", line):  # a synopsis's a|b is not a pipe
                    words = shlex.split(part.strip(), comments=True) if part.strip() else []
                    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", words[0]):
                        words = words[1:]  # VAR=value before the command
                    if words and re.fullmatch(r"(\S*/)?riskflow", words[0]):
                        out.append((page.name, shlex.join(words[1:])))
    return out


def _inline_commands() -> list[tuple[str, str]]:
    out = []
    for page in PAGES:
        text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.M | re.S)
        for span in re.findall(r"`(riskflow [^`]+)`", text):
            words = []
            for w in span.split()[1:]:
                if not re.fullmatch(r"[a-z][a-z0-9-]*", w):
                    break
                words.append(w)
            if words:
                out.append((page.name, " ".join(words)))
    return sorted(set(out))


def _parse(args: list[str]) -> int:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            build_parser().parse_args(args)
        except SystemExit as exc:
            return int(exc.code or 0) or (0 if not err.getvalue() else 2)
    return 0


def test_the_pages_name_commands_at_all() -> None:
    assert len(_block_commands()) >= 5 and len(_inline_commands()) >= 10


@pytest.mark.parametrize(("page", "command"), _block_commands())
def test_every_command_in_a_code_block_parses(page: str, command: str) -> None:
    # a synopsis's placeholders (FILE, N, CASE_ID) stand for values: "1" fits paths and numbers
    words = ["1" if re.fullmatch(r"[A-Z][A-Z_]*", w) else w.split("|", 1)[0] for w in shlex.split(command)]
    assert _parse(words) == 0, f"{page}: riskflow {command}"


@pytest.mark.parametrize(("page", "command"), _inline_commands())
def test_every_command_named_in_the_text_exists(page: str, command: str) -> None:
    words = command.split()
    # the longest prefix that is a (sub)command: `riskflow alerts list` or `riskflow demo`
    while words and _parse([*words, "--help"]) != 0:
        words.pop()
    assert words, f"{page}: `riskflow {command}` names no command"


def test_every_variable_named_is_a_setting() -> None:
    named = {(p.name, v) for p in PAGES for v in re.findall(r"\bRISKFLOW_[A-Z0-9_]*[A-Z0-9]\b", p.read_text("utf-8"))}
    unknown = sorted((p, v) for p, v in named if v not in SETTINGS | OTHER_VARIABLES)
    assert not unknown, f"variables named in the docs that are no setting: {unknown}"


def test_every_rule_example_is_a_valid_pack() -> None:
    """Every example loads, and every registered rule kind has one (a new kind is found
    through ``RULE_KINDS``; tests/test_rules_pack.py fires each example)."""
    from detectors.rules import RULE_KINDS, load_texts

    text = (ROOT / "docs" / "rules.md").read_text(encoding="utf-8")
    examples = re.findall(r"^```yaml\n(.*?)^```", text, re.M | re.S)
    assert len(examples) >= 9
    kinds = set()
    for i, example in enumerate(examples):
        pack = load_texts({f"example-{i}.yaml": example})
        kinds |= {r.kind for r in pack.detectors}
    assert kinds == set(RULE_KINDS) and len(kinds) >= 7


def test_every_test_the_docs_name_exists() -> None:
    """The guarantee tables cite tests as proof: each cited file and test function must exist
    (``name*`` stands for a name's beginning, ``[...]`` for a parametrisation)."""
    cited = set()
    for page in PAGES:
        for ref in re.findall(r"tests/[\w/]+\.py(?:::[\w*]+(?:\[[\w,-]+\])?)?", page.read_text(encoding="utf-8")):
            cited.add(ref)
        for file, names in re.findall(r"(tests/[\w/]+\.py)((?:(?:::|, ::)[\w*]+)+)", page.read_text("utf-8")):
            cited |= {f"{file}::{n}" for n in re.findall(r"::([\w*]+)", names)}
    missing = []
    for ref in sorted(cited):
        file, _, name = ref.partition("::")
        path = ROOT / file
        if not path.exists():
            missing.append(ref)
            continue
        name = name.split("[", 1)[0]
        if name:
            pattern = re.escape(name.rstrip("*")) + (r"\w*" if name.endswith("*") else r"\b")
            if not re.search(rf"^def {pattern}", path.read_text(encoding="utf-8"), re.M):
                missing.append(ref)
    assert len(cited) > 20 and not missing, f"cited tests that do not exist: {missing}"
