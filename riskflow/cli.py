"""The ``riskflow`` command. Each sub-command lives in ``riskflow/commands/<name>.py``
and exposes ``register(subparsers)``; new commands are picked up automatically
(``riskflow.core.registry.import_modules``, the one discovery every extension point uses)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import NoReturn

from riskflow import __version__
from riskflow.core.errors import CommandError
from riskflow.core.registry import import_modules


class _Version(argparse.Action):
    """``--version``: the version and which build of the detectors runs (pure or compiled);
    the detectors are imported only when asked."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kw: object) -> None:
        import detectors

        sys.stdout.write(f"riskflow {__version__}, detectors: {detectors.build()}\n")
        parser.exit()


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line (``riskflow alerts list: argument --level: invalid choice ...``)
    with where to find the full usage, instead of the usage block; sub-commands inherit it."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="riskflow", description="Real-time financial-risk monitoring.")
    parser.add_argument("--version", action=_Version, nargs=0, help="show the version and build, and exit")
    parser.add_argument("--log-level", default=None, help="debug, info, warning, error (default: RISKFLOW_LOG_LEVEL)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in import_modules("riskflow.commands"):
        module.register(sub)
    return parser


class Terminated(BaseException):
    """SIGTERM outside a command's own handler: unwinds like Ctrl-C, so ``finally`` blocks
    stop the processes the command started."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from pydantic import ValidationError

    from riskflow.core.settings import Settings

    action = getattr(args, "alerts_command", None) or getattr(args, "rules_command", None)
    where = f"riskflow {args.command}" + (f" {action}" if action else "")
    try:
        settings = Settings()
    except ValidationError as exc:
        bad = "; ".join(f"RISKFLOW_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        sys.stderr.write(f"{where}: invalid setting: {bad}\n")
        return 2
    level = (args.log_level or settings.log_level).upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        sys.stderr.write(f"{where}: unknown log level {level.lower()!r}: debug, info, warning or error\n")
        return 2
    logging.basicConfig(stream=sys.stderr, level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        return int(args.func(args, settings) or 0)
    except CommandError as exc:
        sys.stderr.write(f"{where}: {exc}\n")
        return 2
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        sys.stderr.write(f"{where}: cannot read {exc.filename}: {exc.strerror}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write(f"{where}: interrupted\n")
        return 130
    except ValueError as exc:  # a rule pack given with --rules (worker, backtest): its problems, not a traceback
        from detectors.rules import RuleError

        if not isinstance(exc, RuleError):
            raise
        for p in getattr(exc, "problems", None) or [exc]:
            sys.stderr.write(f"{where}: invalid rule pack: {p}\n")
        return 2
    except Terminated:
        sys.stderr.write(f"{where}: terminated\n")
        return 143
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
