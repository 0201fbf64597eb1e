"""Rule packs: versioned YAML files of rules (``detectors/rules/pack/*.yaml``).

A rule file is a mapping with ``version``, optional ``constants`` (named
numbers rules may refer to as ``{const: NAME, times: K}``, e.g. the one-year
LPR) and a ``rules`` list. A pack is one file or every ``*.yaml`` of a
directory; its version is ``<highest declared version>+<hash of the files>``,
so any edit changes it. :func:`load_texts` loads a pack from in-memory texts:
that is how a pack pushed on the control topic reaches the workers.

>>> pack = load_pack()
>>> "pf.amac_lost_contact" in [r.id for r in pack.detectors]
True
>>> load_pack(constants={"lpr_1y": 0.05}).constants["lpr_1y"]
0.05
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from detectors.rules import (  # noqa: F401  (each module registers its kind)
    absence,
    change_frequency,
    sequence,
    series,
    surge,
    threshold,
    window,
)
from detectors.rules.base import RULE_KINDS, Rule, RuleError, build_rule

PACK_DIR = Path(__file__).parent / "pack"

__all__ = ["PACK_DIR", "RULE_KINDS", "Rule", "RuleError", "RulePack", "build_rule", "load_pack", "load_texts"]


@dataclass(frozen=True)
class RulePack:
    version: str  # "<declared version>+<content hash>"
    detectors: list[Rule]
    constants: dict[str, float] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # file name -> YAML text, as loaded


def _parse(name: str, text: str) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RuleError(name, "-", "-", f"not valid YAML: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("rules"), list):
        raise RuleError(name, "-", "rules", "a rule file is a mapping with a 'rules' list")
    extra = set(doc) - {"version", "constants", "rules"}
    if extra:
        raise RuleError(name, "-", sorted(extra)[0], "unknown top-level field; allowed: version, constants, rules")
    consts = doc.get("constants") or {}
    if not isinstance(consts, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in consts.values()
    ):
        raise RuleError(name, "-", "constants", "a mapping of names to numbers")
    return doc


def load_texts(texts: Mapping[str, str], constants: Mapping[str, float] | None = None) -> RulePack:
    """Load and validate a pack from ``{file name: YAML text}``; ``constants`` override the files'."""
    docs = {name: _parse(name, texts[name]) for name in sorted(texts)}
    consts: dict[str, float] = {}
    for doc in docs.values():
        consts.update(doc.get("constants") or {})
    consts.update(constants or {})
    rules: list[Rule] = []
    seen: dict[str, str] = {}
    versions = []
    digest = hashlib.blake2b(digest_size=6)
    for name, doc in docs.items():
        versions.append(str(doc.get("version", "0")))
        # by base name, so that the version does not depend on where the files live
        digest.update(Path(name).name.encode() + b"\0" + texts[name].encode() + b"\0")
        for spec in doc["rules"]:
            rule = build_rule(spec, name, consts)
            if rule.id in seen:
                raise RuleError(name, rule.id, "id", f"duplicate id (also in {seen[rule.id]})")
            seen[rule.id] = name
            rules.append(rule)
    if constants:
        digest.update(repr(sorted(constants.items())).encode())
    return RulePack(
        version=f"{max(versions, default='0')}+{digest.hexdigest()}",
        detectors=rules,
        constants=consts,
        files={Path(k).name: v for k, v in texts.items()},
    )


def load_pack(path: str | Path | None = None, constants: Mapping[str, float] | None = None) -> RulePack:
    """Load and validate every rule in a file or a directory of ``*.yaml`` files."""
    p = Path(path) if path else PACK_DIR
    if not p.exists():
        raise RuleError(str(p), "-", "-", "no such file or directory")
    files = sorted(p.glob("*.yaml")) if p.is_dir() else [p]
    texts = {}
    for f in files:
        try:
            texts[str(f)] = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RuleError(str(f), "-", "-", f"cannot read: {exc}") from None
    return load_texts(texts, constants)
