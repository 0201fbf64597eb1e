"""Memory: resident bytes per monitored entity at 100,000 and 1,000,000 entities.

Realistic state comes from the product itself: a simulated history runs
through the processor of ``detectors.factory.build_processor`` and the final
state of each entity becomes a template. A fresh process per size then holds
``N`` entities (template states with distinct ids) exactly as the worker holds
them — see :func:`hold`: the table's msgpack bytes and the worker's cache of
decoded states (``RISKFLOW_STATE_CACHE``, full) — and the growth of its resident set size, divided by
``N``, is the figure. The headline is the figure at the largest size.

    python bench/memory.py [--sizes 100000,1000000] [--history 50000]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
from pathlib import Path

if __package__ in (None, ""):
    import _path  # noqa: F401

import msgspec

from bench.common import CACHE, ROOT, headline, history
from detectors.engine import EntityState, decode_state, encode_state
from detectors.factory import build_processor
from detectors.pipeline import RawMessage
from detectors.rules import load_pack
from riskflow.core.settings import Settings
from streams.statecache import StateCache

DEFAULT_CACHE: int = Settings.model_fields["state_cache"].default


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def templates(n_events: int) -> list[EntityState]:
    """Final per-entity states after a simulated history of ``n_events``."""
    bp = build_processor(load_pack())
    states: dict[str, EntityState] = {}
    lines = history(n_events)
    for i in range(0, len(lines), 1000):
        res = bp.process([RawMessage(v, "f", 0, j, None) for j, v in enumerate(lines[i : i + 1000])], states.get)
        states.update((k, s) for k, (s, _) in res.states.items())
    return list(states.values())


def hold(tmpl: list[EntityState], n: int, cache_size: int = DEFAULT_CACHE) -> tuple[dict[bytes, bytes], StateCache]:
    """``n`` entities as the worker keeps them: the table store maps entity-id bytes to msgpack
    state, and the state cache (streams/statecache.py) holds the decoded states of the last
    ``cache_size`` entities written."""
    store: dict[bytes, bytes] = {}
    cache = StateCache(cache_size)
    replace = msgspec.structs.replace
    for i in range(n):
        t = tmpl[i % len(tmpl)]
        eid = f"{t.entity_id.rsplit('-', 1)[0]}-{i:07d}"
        value = store[eid.encode()] = encode_state(replace(t, entity_id=eid))
        if i >= n - cache_size:
            cache.put(eid, decode_state(value))
    return store, cache


def child(n: int, template_file: Path, cache_size: int) -> dict[str, float]:
    # Only the small template file is loaded here: the garbage of building the
    # states (in the parent) would otherwise be reused by the store and hide its size.
    tmpl = msgspec.msgpack.decode(template_file.read_bytes(), type=list[EntityState])
    gc.collect()
    before = rss()
    store, cache = hold(tmpl, n, cache_size)
    gc.collect()
    after = rss()
    encoded = sum(len(v) for v in store.values()) / n
    return {
        "entities": n,
        "bytes_per_entity": (after - before) / n,
        "encoded_state_bytes": encoded,
        "cached": len(cache),
    }


def main(argv: list[str] | None = None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--history", type=int, default=50_000, help="events simulated to build realistic states")
    ap.add_argument(
        "--state-cache", type=int, default=DEFAULT_CACHE, help="decoded states cached (RISKFLOW_STATE_CACHE)"
    )
    ap.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--templates", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, Path(args.templates), args.state_cache)))
        return 0.0

    CACHE.mkdir(parents=True, exist_ok=True)
    tfile = CACHE / f"states-{os.getpid()}.msgpack"
    tmpl = templates(args.history)
    tfile.write_bytes(msgspec.msgpack.encode(tmpl))
    print(f"{len(tmpl):,} template states from {args.history:,} simulated events", flush=True)
    value = float("nan")
    try:
        for n in [int(x) for x in args.sizes.split(",")]:
            out = subprocess.run(
                [
                    sys.executable,
                    str(ROOT / "bench" / "memory.py"),
                    *("--child", str(n), "--templates", str(tfile), "--state-cache", str(args.state_cache)),
                ],
                check=True,
                capture_output=True,
                text=True,
                cwd=ROOT,
            ).stdout
            res = json.loads(out.strip().splitlines()[-1])
            value = res["bytes_per_entity"]
            print(
                f"{n:,} entities: {value:,.0f} resident bytes per entity "
                f"(msgpack state {res['encoded_state_bytes']:,.0f} bytes on average; "
                f"{res['cached']:,} decoded states in the worker's state cache)",
                flush=True,
            )
    finally:
        tfile.unlink(missing_ok=True)
    headline("bytes_per_entity", value, 0)
    return value


if __name__ == "__main__":
    main()
