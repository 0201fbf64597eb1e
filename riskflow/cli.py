"""The ``riskflow`` command. Each sub-command lives in ``riskflow/commands/<name>.py``
and exposes ``register(subparsers)``; new commands are picked up automatically."""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from riskflow import __version__, commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="riskflow", description="Real-time financial-risk monitoring.")
    parser.add_argument("--version", action="version", version=f"riskflow {__version__}")
    parser.add_argument("--log-level", default=None, help="debug, info, warning, error (default: RISKFLOW_LOG_LEVEL)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"riskflow.commands.{info.name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from riskflow.settings import Settings

    settings = Settings()
    level = (args.log_level or settings.log_level).upper()
    logging.basicConfig(stream=sys.stderr, level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return int(args.func(args, settings) or 0)
