from __future__ import annotations

import argparse
import signal

from riskflow.core.settings import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("broker", help="run the embedded Tansu broker alone, in the foreground")
    p.add_argument("--port", type=int, default=9092, help="listen port (default 9092; 0: any free port)")
    p.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1, this machine only)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from riskflow.broker import BrokerError, EmbeddedBroker
    from riskflow.core.errors import CommandError

    if not 0 <= args.port <= 65535:
        raise CommandError(f"--port {args.port}: a port is 0..65535")
    # Blocked before the child starts, so a SIGTERM at any moment is taken by sigtimedwait below
    # (and the broker stopped) instead of killing this process and orphaning Tansu.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        broker = EmbeddedBroker(port=args.port or None, host=args.host)
    except OSError as exc:  # no free port on an address this machine lacks
        raise CommandError(f"cannot listen on {args.host}: {exc.strerror or exc}") from None
    try:
        try:
            broker.start()
        except BrokerError as exc:
            hint = "; pick another with --port (0: any free port)" if "in use" in str(exc) else ""
            raise CommandError(f"{exc}{hint}") from None
        print(
            f"Tansu broker on {broker.bootstrap} (pid {broker.proc.pid if broker.proc else '?'}; in-memory; "
            f"Ctrl-C stops it)",
            flush=True,
        )
        while True:
            if signal.sigtimedwait({signal.SIGINT, signal.SIGTERM}, 0.5) is not None:
                return 0
            if not broker.alive():
                raise CommandError(f"the broker on {broker.bootstrap} {broker.exit_reason()}")
    finally:
        broker.stop()
