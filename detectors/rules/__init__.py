"""Rule packs: versioned YAML files of rules (``detectors/rules/pack/*.yaml``).

>>> pack = load_pack()
>>> "pf.amac_lost_contact" in [r.id for r in pack.detectors]
True
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from detectors.rules import threshold as _threshold  # noqa: F401  (registers the kind)
from detectors.rules.base import RULE_KINDS, Rule, RuleError, build_rule

PACK_DIR = Path(__file__).parent / "pack"

__all__ = ["RULE_KINDS", "Rule", "RuleError", "RulePack", "build_rule", "load_pack"]


@dataclass(frozen=True)
class RulePack:
    version: str  # "<declared version>+<content hash>"
    detectors: list[Rule]


def _load_file(path: Path) -> tuple[str, list[dict[str, Any]]]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise RuleError(str(path), "-", "-", f"not valid YAML: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("rules"), list):
        raise RuleError(str(path), "-", "rules", "a rule file is a mapping with a 'rules' list")
    return str(doc.get("version", "0")), doc["rules"]


def load_pack(path: str | Path | None = None) -> RulePack:
    """Load and validate every rule in a file or a directory of ``*.yaml`` files."""
    p = Path(path) if path else PACK_DIR
    files = sorted(p.glob("*.yaml")) if p.is_dir() else [p]
    rules: list[Rule] = []
    seen: dict[str, str] = {}
    versions = []
    digest = hashlib.blake2b(digest_size=6)
    for f in files:
        version, specs = _load_file(f)
        versions.append(version)
        digest.update(f.read_bytes())
        for spec in specs:
            rule = build_rule(spec, str(f))
            if rule.id in seen:
                raise RuleError(str(f), rule.id, "id", f"duplicate id (also in {seen[rule.id]})")
            seen[rule.id] = str(f)
            rules.append(rule)
    return RulePack(version=f"{max(versions, default='0')}+{digest.hexdigest()}", detectors=rules)
