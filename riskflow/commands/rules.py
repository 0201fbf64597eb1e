"""``riskflow rules list|check|push``: inspect, validate and publish rule packs."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import TextIO

from riskflow.core.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rules", help="list, check and push rule packs")
    rsub = p.add_subparsers(dest="rules_command", required=True, metavar="ACTION")
    ls = rsub.add_parser("list", help="the rules of a pack (default: the built-in pack)")
    ls.add_argument("path", nargs="?", default=None, help="rule file or directory")
    ls.add_argument("--json", action="store_true", help="one JSON object per rule")
    ls.set_defaults(func=run_list)
    ck = rsub.add_parser("check", help="validate a rule file or directory; print each problem and exit 1 if any")
    ck.add_argument("path", help="rule file or directory to check")
    ck.add_argument("--allow-empty", action="store_true", help="a pack without rules is not a problem")
    ck.set_defaults(func=run_check)
    pu = rsub.add_parser("push", help="validate, then publish a pack to the rules control topic (all workers)")
    pu.add_argument("path", help="rule file or directory to push to every worker")
    pu.add_argument(
        "--allow-empty",
        action="store_true",
        help="push a pack without rules (switches rule detection off on every worker); refused otherwise",
    )
    pu.set_defaults(func=run_push)
    register_quality(rsub)


#: Problems printed at most; the rest are counted in one more line.
MAX_PRINTED = 50


def _load(path: str | None, settings: Settings, allow_empty: bool = False):  # type: ignore[no-untyped-def]
    from detectors.rules import load_pack

    return load_pack(
        path,
        constants={"lpr_1y": settings.lpr_1y} if settings.lpr_1y is not None else None,
        allow_empty=allow_empty,
    )


def _problems(exc: Exception, prefix: str, file: TextIO | None = None) -> None:
    """One line per problem of a rejected pack (``PackError.problems``), at most :data:`MAX_PRINTED`."""
    problems = list(getattr(exc, "problems", None) or [exc])
    for p in problems[:MAX_PRINTED]:
        print(f"{prefix}: {p}", file=file)
    if len(problems) > MAX_PRINTED:
        print(f"{prefix}: ... and {len(problems) - MAX_PRINTED} more problems", file=file)


def run_list(args: argparse.Namespace, settings: Settings) -> int:
    from detectors.rules import RuleError

    try:
        pack = _load(args.path, settings, allow_empty=True)
    except RuleError as exc:
        _problems(exc, "invalid", sys.stderr)
        return 1
    for r in pack.detectors:
        d = r.describe
        row = {
            "id": r.id,
            "kind": r.kind,
            "mode": r.mode,
            "severity": r.severity,
            "dimension": d.dimension,
            "entity_kinds": sorted(r.entity_kinds) if r.entity_kinds else [],
            "name_zh": d.name_zh,
            "name_en": d.name_en,
            "source": d.source,
            "params": r.spec.get("params") or {},
        }
        if args.json:
            print(json.dumps(row, ensure_ascii=False))
        else:
            shadow = " [shadow]" if r.mode == "shadow" else ""
            print(f"{r.id:34} {r.kind:16} {r.severity:8} {d.name_en} {d.name_zh}{shadow}")
    if not args.json:
        print(f"-- rule pack {pack.version}: {len(pack.detectors)} rules", file=sys.stderr)
    return 0


def run_check(args: argparse.Namespace, settings: Settings) -> int:
    from detectors.rules import RuleError

    try:
        pack = _load(args.path, settings, getattr(args, "allow_empty", False))
    except RuleError as exc:
        _problems(exc, "invalid")
        return 1
    shadow = sum(r.mode == "shadow" for r in pack.detectors)
    print(f"ok: rule pack {pack.version}: {len(pack.detectors)} rules ({shadow} in shadow mode)")
    return 0


def run_push(args: argparse.Namespace, settings: Settings) -> int:
    from aiokafka import AIOKafkaProducer
    from aiokafka.errors import KafkaError

    from detectors.rules import RuleError
    from riskflow.core.alerts import utc_now_iso
    from riskflow.core.kafka import client_config, ensure_topics
    from streams.rules_control import MAX_MESSAGE_BYTES, encode_pack

    if not settings.kafka_bootstrap:
        raise SystemExit("riskflow rules push: set RISKFLOW_KAFKA_BOOTSTRAP")
    try:
        pack = _load(args.path, settings, getattr(args, "allow_empty", False))
    except RuleError as exc:
        _problems(exc, "invalid, not pushed")
        return 1
    message = encode_pack(pack, utc_now_iso(), allow_empty=getattr(args, "allow_empty", False))
    if len(message) > MAX_MESSAGE_BYTES:  # load_pack's size limit should make this impossible
        print(f"invalid, not pushed: the pack encodes to {len(message)} bytes; at most {MAX_MESSAGE_BYTES} fit")
        return 1

    async def go() -> None:
        await ensure_topics(settings)
        producer = AIOKafkaProducer(**client_config(settings))  # SASL/SCRAM and TLS as configured
        await producer.start()
        try:
            await producer.send_and_wait(settings.topic_rules, message, key=b"pack", partition=0)
        finally:
            await producer.stop()

    try:
        asyncio.run(go())
    except (KafkaError, OSError) as exc:
        print(f"riskflow rules push: not pushed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"pushed rule pack {pack.version} ({len(pack.detectors)} rules) to {settings.topic_rules}")
    return 0


def register_quality(rsub: argparse._SubParsersAction) -> None:
    q = rsub.add_parser("quality", help="per rule: hits, cases, officers' outcomes, confirmed share, lead, precision")
    q.add_argument("--json", action="store_true", help="one JSON document")
    q.set_defaults(func=run_quality)


def run_quality(args: argparse.Namespace, settings: Settings) -> int:
    """Rule quality as officers judged it, from the store's cases (riskflow/store/quality.py)."""
    from riskflow.core.textsafe import printable
    from riskflow.store import open_store
    from riskflow.store.quality import rule_quality

    with open_store(settings.store_target()) as store:
        q = rule_quality(store)
    if args.json:
        print(printable(json.dumps(q, ensure_ascii=False), json=True))
        return 0

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f}%"

    head = f"{'rule':<36} {'hits':>5} {'cases':>6} {'opened':>6} {'closed':>6}  conf fals rect refe"
    print(f"{head}  {'confirmed':>9} {'lead d':>7}  {'precision':>9}")
    for rule, r in q.items():
        o = r["outcomes"]
        lead = "-" if r["median_lead_days"] is None else f"{r['median_lead_days']:.1f}"
        print(
            printable(
                f"{rule:<36} {r['hits']:>5} {r['cases']:>6} {r['cases_opened']:>6} {r['closed']:>6}"
                f"  {o['confirmed']:>4} {o['false_alarm']:>4} {o['rectified']:>4} {o['referred']:>4}"
                f"  {pct(r['confirmed_share']):>9} {lead:>7}  {pct(r['precision']):>9}"
            )
        )
    return 0
