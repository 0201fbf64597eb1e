"""The timed offline loop that bench/compiled.py and bench/ab.py share.

``bench/processor.py``'s loop (``build_processor`` over the lines in batches, state in a
dict), timed in wall and CPU time, and digests of its output: every alert (all fields but
the wall-clock ``detected_at``, in emission order) and the msgpack bytes of every entity's
final state. It imports only the standard library at module level and RiskFlow inside
:func:`run`, so ``bench/ab.py`` can load it by path into an interpreter whose ``sys.path``
starts at another checkout, and time *that* checkout's processor.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any


def run(lines: list[bytes], batch: int, *, process: bool = True) -> dict[str, Any]:
    """Process ``lines``; return seconds (wall, CPU), the alert count and the output digests.
    ``process=False``: everything but the loop (what ``bench/ab.py --instructions`` subtracts)."""
    import msgspec

    from detectors.engine import encode_state
    from detectors.factory import build_processor
    from detectors.pipeline import RawMessage
    from detectors.rules import load_pack
    from riskflow.core.gctune import tune

    tune()  # as `riskflow backtest` and bench/processor.py do
    bp = build_processor(load_pack())
    states: dict = {}
    msgs = [RawMessage(v, "file", 0, i, None) for i, v in enumerate(lines)]
    alerts: list = []
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(0, len(msgs) if process else 0, batch):
        res = bp.process(msgs[i : i + batch], states.get, now=2e9)
        for eid, (state, _) in res.states.items():
            states[eid] = state
        alerts += res.alerts
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    ha, hs = hashlib.blake2b(digest_size=8), hashlib.blake2b(digest_size=8)
    for a in alerts:
        whole = msgspec.to_builtins(a)
        whole.pop("detected_at", None)
        ha.update(msgspec.json.encode(whole, order="sorted"))
    for eid in sorted(states):
        hs.update(encode_state(states[eid]))
    return {
        "events": len(lines),
        "seconds": secs,
        "cpu_seconds": cpu,
        "alerts": len(alerts),
        "alerts_digest": ha.hexdigest(),
        "states_digest": hs.hexdigest(),
    }
