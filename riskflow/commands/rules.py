"""``riskflow rules list|check|push``: inspect, validate and publish rule packs."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from riskflow.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rules", help="list, check and push rule packs")
    rsub = p.add_subparsers(dest="rules_command", required=True, metavar="ACTION")
    ls = rsub.add_parser("list", help="the rules of a pack (default: the built-in pack)")
    ls.add_argument("path", nargs="?", default=None, help="rule file or directory")
    ls.add_argument("--json", action="store_true", help="one JSON object per rule")
    ls.set_defaults(func=run_list)
    ck = rsub.add_parser("check", help="validate a rule file or directory; print the problem and exit 1 if any")
    ck.add_argument("path", help="rule file or directory to check")
    ck.set_defaults(func=run_check)
    pu = rsub.add_parser("push", help="validate, then publish a pack to the rules control topic (all workers)")
    pu.add_argument("path", help="rule file or directory to push to every worker")
    pu.set_defaults(func=run_push)


def _load(path: str | None, settings: Settings):  # type: ignore[no-untyped-def]
    from detectors.rules import load_pack

    return load_pack(path, constants={"lpr_1y": settings.lpr_1y} if settings.lpr_1y is not None else None)


def run_list(args: argparse.Namespace, settings: Settings) -> int:
    from detectors.rules import RuleError

    try:
        pack = _load(args.path, settings)
    except RuleError as exc:
        print(f"invalid: {exc}", file=sys.stderr)
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
        pack = _load(args.path, settings)
    except RuleError as exc:
        print(f"invalid: {exc}")
        return 1
    shadow = sum(r.mode == "shadow" for r in pack.detectors)
    print(f"ok: rule pack {pack.version}: {len(pack.detectors)} rules ({shadow} in shadow mode)")
    return 0


def run_push(args: argparse.Namespace, settings: Settings) -> int:
    from aiokafka import AIOKafkaProducer

    from detectors.rules import RuleError
    from riskflow.alerts import utc_now_iso
    from riskflow.kafka import client_config, ensure_topics
    from streams.rules_control import encode_pack

    if not settings.kafka_bootstrap:
        raise SystemExit("riskflow rules push: set RISKFLOW_KAFKA_BOOTSTRAP")
    try:
        pack = _load(args.path, settings)
    except RuleError as exc:
        print(f"invalid, not pushed: {exc}")
        return 1

    async def go() -> None:
        await ensure_topics(settings)
        producer = AIOKafkaProducer(**client_config(settings))  # SASL/SCRAM and TLS as configured
        await producer.start()
        try:
            await producer.send_and_wait(
                settings.topic_rules, encode_pack(pack, utc_now_iso()), key=b"pack", partition=0
            )
        finally:
            await producer.stop()

    asyncio.run(go())
    print(f"pushed rule pack {pack.version} ({len(pack.detectors)} rules) to {settings.topic_rules}")
    return 0
