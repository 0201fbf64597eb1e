"""Rule packs: versioned YAML files of rules (``detectors/rules/pack/*.yaml``).

A rule file is a mapping with ``version``, optional ``constants`` (named
numbers rules may refer to as ``{const: NAME, times: K}``, e.g. the one-year
LPR) and a ``rules`` list. A pack is one file or every ``*.yaml`` of a
directory; its version is ``<highest declared version>+<hash of the files>``,
so any edit changes it. :func:`load_texts` loads a pack from in-memory texts:
that is how a pack pushed on the control topic reaches the workers.

A rule kind is one module here with a :class:`Rule` subclass that sets ``kind``;
:data:`RULE_KINDS` imports every module of the package when first read, so no list
names the kinds (riskflow/core/registry.py).

>>> sorted(RULE_KINDS)[:3]
['absence', 'change_frequency', 'sequence']
>>> pack = load_pack()
>>> "pf.amac_lost_contact" in [r.id for r in pack.detectors]
True
>>> load_pack(constants={"lpr_1y": 0.05}).constants["lpr_1y"]
0.05
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from detectors.rules.base import RULE_KINDS, PackError, Rule, RuleError, build_rule

PACK_DIR = Path(__file__).parent / "pack"

__all__ = [
    "MAX_DEPTH",
    "MAX_PACK_BYTES",
    "PACK_DIR",
    "RULE_KINDS",
    "PackError",
    "Rule",
    "RuleError",
    "RulePack",
    "build_rule",
    "load_pack",
    "load_texts",
]


@dataclass(frozen=True)
class RulePack:
    version: str  # "<declared version>+<content hash>"
    detectors: list[Rule]
    constants: dict[str, float] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # file name -> YAML text, as loaded


#: Most bytes of YAML in one pack (all files): 256 KiB, ~6 times the built-in pack. A pushed pack
#: travels as one control-topic message, and JSON-wrapped it stays under the broker's default
#: 1 MB message limit (escaping at most doubles the text).
MAX_PACK_BYTES = 256 * 1024
#: Deepest nesting of YAML collections a rule file may have (the built-in pack needs 8).
#: PyYAML's composer recurses once per level, so the limit is enforced while composing.
MAX_DEPTH = 32
#: Largest integer a rule file may hold (64-bit): anything larger is a typo or an attack,
#: and would overflow where a rule turns it into a float.
MAX_INT = 2**63 - 1


class _PackLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses what no rule file needs and a hostile one could use:
    nesting deeper than :data:`MAX_DEPTH` (the composer would recurse until ``RecursionError``)
    and aliases (a few lines of aliases can stand for a document too large to walk)."""

    depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(
                None, None, "anchors and aliases are not allowed in a rule file", self.peek_event().start_mark
            )
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested deeper than {MAX_DEPTH} levels", self.peek_event().start_mark
                )
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _out_of_range(x: Any) -> bool:
    if isinstance(x, float):
        return not math.isfinite(x)
    return isinstance(x, int) and not isinstance(x, bool) and abs(x) > MAX_INT


def _bad_number(doc: Any) -> list[Any] | None:
    """The path (keys and indices) to the first infinite, NaN or out-of-range number in ``doc``
    (keys included); ``doc`` is a tree (no aliases) of bounded depth, so one walk is cheap."""
    stack: list[tuple[Any, list[Any]]] = [(doc, [])]
    while stack:
        node, path = stack.pop()
        if _out_of_range(node):
            return path
        if isinstance(node, dict):
            for k, v in node.items():
                if _out_of_range(k):
                    return [*path, k]
                stack.append((v, [*path, k]))
        elif isinstance(node, list):
            stack.extend((v, [*path, i]) for i, v in enumerate(node))
    return None


def _field(path: list[Any]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".") or "-"


def _parse(name: str, text: str) -> dict[str, Any]:
    try:
        doc = yaml.load(text, Loader=_PackLoader)  # a SafeLoader with limits
    except yaml.YAMLError as exc:
        raise RuleError(name, "-", "-", f"not valid YAML: {exc}") from None
    except Exception as exc:  # last resort (RecursionError, a huge integer literal, ...): a rejection
        raise RuleError(name, "-", "-", f"cannot be parsed: {type(exc).__name__}: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("rules"), list):
        raise RuleError(name, "-", "rules", "a rule file is a mapping with a 'rules' list")
    extra = set(doc) - {"version", "constants", "rules"}
    if extra:
        first = sorted(map(str, extra))[0]
        raise RuleError(name, "-", first, "unknown top-level field; allowed: version, constants, rules")
    bad = _bad_number(doc)
    if bad is not None:
        rules = doc["rules"]
        spec = rules[bad[1]] if bad[0] == "rules" and len(bad) > 1 else None
        rid = str(spec.get("id", "?")) if isinstance(spec, dict) else "-"
        where = bad[2:] if spec is not None else bad
        raise RuleError(name, rid, _field(where), f"numbers must be finite and at most {MAX_INT} in magnitude")
    consts = doc.get("constants") or {}
    if not isinstance(consts, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in consts.values()
    ):
        raise RuleError(name, "-", "constants", "a mapping of names to numbers")
    return doc


def load_texts(
    texts: Mapping[str, str], constants: Mapping[str, float] | None = None, *, allow_empty: bool = False
) -> RulePack:
    """Load and validate a pack from ``{file name: YAML text}``; ``constants`` override the files'.

    The whole pack is checked before anything runs it: at most :data:`MAX_PACK_BYTES` of YAML,
    nesting at most :data:`MAX_DEPTH` deep, no aliases, finite numbers only, every rule valid,
    and at least one rule unless ``allow_empty`` (an empty pack switches rule detection off).
    Any failure, even one the builder did not foresee, is a :class:`PackError` listing every
    problem found, never another exception.
    """
    size = sum(len(n.encode("utf-8", "replace")) + len(t.encode("utf-8", "replace")) for n, t in texts.items())
    if size > MAX_PACK_BYTES:
        raise PackError(
            [RuleError("pack", "-", "-", f"{size} bytes of YAML; a pack may have at most {MAX_PACK_BYTES} (256 KiB)")]
        )
    problems: list[RuleError] = []
    docs: dict[str, dict[str, Any]] = {}
    for name in sorted(texts):
        try:
            docs[name] = _parse(name, texts[name])
        except RuleError as exc:
            problems.append(exc)
    consts: dict[str, float] = {}
    for doc in docs.values():
        consts.update(doc.get("constants") or {})
    consts.update(constants or {})
    rules: list[Rule] = []
    seen: dict[str, str] = {}
    for name, doc in docs.items():
        for i, spec in enumerate(doc["rules"]):
            try:
                rule = build_rule(spec, name, consts)
            except RuleError as exc:
                problems.append(exc)
                continue
            except Exception as exc:  # a builder bug rejects the pack; it must not stop a worker
                rid = str(spec.get("id", f"#{i}")) if isinstance(spec, dict) else f"#{i}"
                problems.append(RuleError(name, rid, "-", f"cannot be built: {type(exc).__name__}: {exc}"))
                continue
            if rule.id in seen:
                problems.append(RuleError(name, rule.id, "id", f"duplicate id (also in {seen[rule.id]})"))
                continue
            seen[rule.id] = name
            rules.append(rule)
    if not problems and not rules and not allow_empty:
        problems.append(
            RuleError(
                "pack",
                "-",
                "rules",
                "no rules: this pack would switch rule detection off (rules check/push --allow-empty allow it)",
            )
        )
    if problems:
        raise PackError(problems)
    versions = []
    digest = hashlib.blake2b(digest_size=6)
    for name, doc in docs.items():
        versions.append(str(doc.get("version", "0")))
        # by base name, so that the version does not depend on where the files live
        digest.update(Path(name).name.encode() + b"\0" + texts[name].encode() + b"\0")
    if constants:
        digest.update(repr(sorted(constants.items())).encode())
    return RulePack(
        version=f"{max(versions, default='0')}+{digest.hexdigest()}",
        detectors=rules,
        constants=consts,
        files={Path(k).name: v for k, v in texts.items()},
    )


def load_pack(
    path: str | Path | None = None, constants: Mapping[str, float] | None = None, *, allow_empty: bool = False
) -> RulePack:
    """Load and validate every rule in a file or a directory of ``*.yaml`` files (see :func:`load_texts`)."""
    p = Path(path) if path else PACK_DIR
    if not p.exists():
        raise RuleError(str(p), "-", "-", "no such file or directory")
    files = sorted(p.glob("*.yaml")) if p.is_dir() else [p]
    texts = {}
    for f in files:
        try:
            if f.stat().st_size > MAX_PACK_BYTES:  # refused before it is read into memory
                raise PackError([RuleError(str(f), "-", "-", f"larger than a pack may be ({MAX_PACK_BYTES} bytes)")])
            texts[str(f)] = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RuleError(str(f), "-", "-", f"cannot read: {exc}") from None
    return load_texts(texts, constants, allow_empty=allow_empty)
