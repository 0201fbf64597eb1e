"""The columnar prototype (``bench/columnar``) against the product's rule loop, for the rules it covers.

Issue 23, item 4: can the per-event rule work leave the interpreter without a second
implementation of every rule? The same simulated history (``bench.common.history``, seed 7)
is parsed once; the events that reach the detectors on the engine's normal path go, in
batches, through

- *current*: the product's per-event detector loop (the loop of ``Engine.process``: for each
  event, each covered rule that applies to its type and kind, ``rule.process(state, event)``,
  state in a dict per entity), and
- *columnar*: :class:`bench.columnar.ColumnarRules` over each whole batch (column gathering
  included; ``columns`` is that gathering alone).

Both must give the same signals (rule, key, evidence, per event, in order). Then the whole
check: the product's ``BatchProcessor`` with a pack of only the covered rules (the
reference) and the same processor with each rule replaced by a detector that replays the
prototype's signals must emit the same alerts (ids, revisions, evidence; all but
``detected_at``), risk-level alerts included.

Cost, each part alone (the run without it subtracted): instructions under valgrind's
cachegrind (one BLAS thread, ``PYTHONHASHSEED=0``, as ``bench/ab.py --instructions``) are the
primary figure, since they do not move with the shared machine's load; CPU time
(``time.process_time``, fresh processes in alternating order) is the secondary one, with the
load average beside it.

    python bench/columnar_bench.py [--events 100000] [--rounds 5] [--batch 1000]
                                   [--count-events 20000] [--no-instructions]

Headlines: ``columnar_vs_current_instructions_ratio`` and, last,
``columnar_vs_current_cpu_ratio`` (below 1: the prototype is cheaper).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    import _path  # noqa: F401

import msgspec

from bench import common
from bench.columnar import ColumnarRules, covered
from bench.common import headline, history, median
from detectors.base import Detector, Signal
from detectors.factory import build_processor
from detectors.lateness import DEFAULT_ALLOWED_LATENESS
from detectors.pipeline import BatchProcessor, RawMessage
from detectors.rules import Rule, RulePack, load_pack
from riskflow.core.alerts import Alert
from riskflow.core.partitioning import partition_for
from riskflow.core.schema import Event, parse_event

#: What a child run measures ("setup": everything before the part, subtracted from the others).
PARTS = (
    "setup",
    "current",
    "columnar",
    "columns",
    "current-full",
    "processor-none",
    "processor-covered",
    "processor-full",
)
NOW = 4e9  # far after the history: nothing is "from the future"


def covered_pack() -> RulePack:
    full = load_pack()
    return RulePack(full.version, [r for r in full.detectors if covered(r)], full.constants, full.files)


def normal_path(lines: Sequence[bytes], dedup_window: int = 64) -> list[Event]:
    """The parsed events the engine hands to its detectors on the normal path: valid, not a
    repeat of one of the entity's last ``dedup_window`` event ids. An event beyond the allowed
    lateness (the engine's ``_late`` path) is outside the prototype: refused."""
    out: list[Event] = []
    recent: dict[str, deque[str]] = {}
    mark: dict[str, float] = {}
    for line in lines:
        e = parse_event(line, now=NOW)
        ids = recent.setdefault(e.entity_id, deque(maxlen=dedup_window))
        if e.event_id in ids:
            continue
        ids.append(e.event_id)
        if e.ts < mark.get(e.entity_id, 0.0) - DEFAULT_ALLOWED_LATENESS:
            raise SystemExit(f"event {e.event_id} is beyond the allowed lateness: not covered by the prototype")
        mark[e.entity_id] = max(mark.get(e.entity_id, 0.0), e.ts)
        out.append(e)
    return out


def current_signals(
    rules: Sequence[Rule], batches: list[list[Event]], states: dict[str, dict[str, Any]] | None = None
) -> list[tuple[int, Signal]]:
    """The engine's detector loop over ``rules`` (its plan per type and kind, pack order);
    ``states``: where the rules' per-entity states are kept (entity id -> rule id -> state)."""
    plans: dict[tuple[str, str], list[Any]] = {}
    states = {} if states is None else states
    out: list[tuple[int, Signal]] = []
    base = 0
    for batch in batches:
        for i, ev in enumerate(batch):
            steps = plans.get((ev.event_type, ev.entity_kind))
            if steps is None:
                steps = plans[ev.event_type, ev.entity_kind] = [
                    (r.id, r.process, r.init_state) for r in rules if r.applies_to(ev)
                ]
            dstates = states.get(ev.entity_id)
            if dstates is None:
                dstates = states[ev.entity_id] = {}
            for did, process, init_state in steps:
                new, signals = process(dstates.get(did) or init_state(), ev)
                dstates[did] = new
                if signals:
                    out += [(base + i, s) for s in signals]
        base += len(batch)
    return out


def columnar_signals(engine: ColumnarRules, batches: list[list[Event]]) -> list[tuple[int, Signal]]:
    out: list[tuple[int, Signal]] = []
    base = 0
    for batch in batches:
        out += [(base + p, s) for p, s in engine.process(batch)]
        base += len(batch)
    return out


def digest(signals: list[tuple[int, Signal]]) -> str:
    h = hashlib.blake2b(digest_size=8)
    for i, s in signals:
        h.update(msgspec.json.encode([i, s.detector_id, s.key, s.severity, s.score, s.evidence], order="sorted"))
    return h.hexdigest()


def child(history_file: Path, batch: int, part: str) -> dict[str, Any]:
    """One measured run in this process: everything up to the part, then the part alone."""
    lines = history_file.read_bytes().splitlines()
    events = normal_path(lines)
    batches = [events[i : i + batch] for i in range(0, len(events), batch)]
    pack, full = covered_pack(), load_pack()
    engine = ColumnarRules(pack.detectors)
    msgs = raw_messages(lines)
    processors = {
        "processor-none": build_processor(RulePack(pack.version, [], pack.constants, pack.files), anomaly=False),
        "processor-covered": build_processor(pack, anomaly=False),
        "processor-full": build_processor(full),  # what `riskflow backtest` runs: every rule and model
    }
    c0 = time.process_time()
    signals: list[tuple[int, Signal]] = []
    if part == "current":
        signals = current_signals(pack.detectors, batches)
    elif part == "columnar":
        signals = columnar_signals(engine, batches)
    elif part == "current-full":
        signals = current_signals(full.detectors, batches)
    elif part == "columns":
        for b in batches:
            engine.columns(b)
    elif part in processors:
        run_processor(processors[part], msgs, batch)
    cpu = time.process_time() - c0
    return {"events": len(events), "cpu_seconds": cpu, "signals": len(signals), "digest": digest(signals)}


def run_child(history_file: Path, batch: int, part: str, *, count: bool = False) -> dict[str, Any]:
    """``child`` in a fresh interpreter; ``count``: under cachegrind, with its ``instructions``."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", part, "--history-file", str(history_file)]
    cmd += ["--batch", str(batch)]
    env = dict(os.environ, PYTHONPATH=str(common.ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with tempfile.TemporaryDirectory() as tmp:
        out_file = Path(tmp) / "cachegrind.out"
        if count:
            env["PYTHONHASHSEED"] = "0"
            env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
            cmd = ["valgrind", "--tool=cachegrind", "--cache-sim=no", f"--cachegrind-out-file={out_file}", *cmd]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env, cwd=common.ROOT).stdout
        rep: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        if count:
            summary = [ln for ln in out_file.read_text().splitlines() if ln.startswith("summary:")]
            rep["instructions"] = int(summary[0].split()[1])
    return rep


class Replay(Detector):
    """A covered rule whose findings are the prototype's: same id, description and scope, and
    for each event exactly the signals the columnar engine found for it."""

    def __init__(self, rule: Rule, found: dict[tuple[str, str], list[Signal]]) -> None:
        self.id, self.version, self.mode, self.describe = rule.id, rule.version, rule.mode, rule.describe
        self.event_types, self.entity_kinds = rule.event_types, rule.entity_kinds
        self.found = found

    def score_one(self, state: Any, event: Event) -> list[Signal]:
        return self.found.get((event.entity_id, event.event_id), [])

    def process(self, state: Any, event: Event) -> tuple[Any, list[Signal]]:
        return state, [s for s in self.score_one(state, event) if s.detector_id == self.id]


def raw_messages(lines: Sequence[bytes]) -> list[RawMessage]:
    """The lines as input records keyed and partitioned (4 partitions) as ``riskflow replay`` routes them."""
    msgs = []
    for i, line in enumerate(lines):
        key = json.loads(line)["entity_id"].encode()
        msgs.append(RawMessage(line, "events", partition_for(key, 4), i, key))
    return msgs


def run_processor(bp: BatchProcessor, msgs: list[RawMessage], batch: int) -> list[Alert]:
    """The offline loop of ``riskflow backtest``: batches through ``bp``, states in a dict."""
    store: dict[str, Any] = {}
    out: list[Alert] = []
    for i in range(0, len(msgs), batch):
        res = bp.process(msgs[i : i + batch], store.get, now=NOW)
        store.update({k: v for k, (v, _) in res.states.items()})
        out += res.alerts
    return out


def alerts_of(pack: RulePack, lines: Sequence[bytes], batch: int) -> list[bytes]:
    """Every alert the product's offline processor emits for ``lines`` (all fields but ``detected_at``)."""
    out = []
    for a in run_processor(build_processor(pack, anomaly=False), raw_messages(lines), batch):
        whole = msgspec.to_builtins(a)
        whole.pop("detected_at", None)
        out.append(msgspec.json.encode(whole, order="sorted"))
    return out


def check_alerts(lines: Sequence[bytes], batch: int) -> tuple[bool, int, int, int]:
    """(identical?, alerts, of which from covered rules, covered rules): the product's processor
    with the covered rules vs the same processor replaying the prototype's signals."""
    pack = covered_pack()
    events = normal_path(lines)
    batches = [events[i : i + batch] for i in range(0, len(events), batch)]
    found: dict[tuple[str, str], list[Signal]] = {}
    for i, sig in columnar_signals(ColumnarRules(pack.detectors), batches):
        found.setdefault((events[i].entity_id, events[i].event_id), []).append(sig)
    replay = RulePack(pack.version, [Replay(r, found) for r in pack.detectors], pack.constants, pack.files)  # type: ignore[misc]
    ref, got = alerts_of(pack, lines, batch), alerts_of(replay, lines, batch)
    ids = {r.id for r in pack.detectors}
    from_rules = sum(1 for a in ref if json.loads(a)["rule_id"] in ids)
    return ref == got, len(ref), from_rules, len(ids)


def _differ(got: dict[str, dict[str, Any]]) -> list[str]:
    cur, col = got["current"], got["columnar"]
    if (cur["signals"], cur["digest"]) == (col["signals"], col["digest"]):
        return []
    return [f"current {cur['signals']} signals {cur['digest']}, columnar {col['signals']} {col['digest']}"]


def main(argv: list[str] | None = None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000, help="events of the timed runs and the alert check")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds (alternating order)")
    ap.add_argument("--batch", type=int, default=1000, help="events per batch (the offline processor's default)")
    ap.add_argument("--count-events", type=int, default=20_000, help="events of the valgrind runs")
    ap.add_argument("--no-instructions", action="store_true", help="skip the valgrind count")
    ap.add_argument("--child", choices=PARTS, help=argparse.SUPPRESS)
    ap.add_argument("--history-file", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.history_file, args.batch, args.child)))
        return 0.0

    lines = history(args.events)
    pack = covered_pack()
    full = load_pack()
    left = [r.id for r in full.detectors if not covered(r)]
    print(
        f"covered: {len(pack.detectors)} of {len(full.detectors)} rules (threshold; window and change_frequency "
        f"with agg count); not covered ({len(left)}): {', '.join(left)}",
        flush=True,
    )
    same, n_alerts, n_rule_alerts, _ = check_alerts(lines, args.batch)
    print(
        f"alerts: {'identical' if same else 'DIFFER'} — {n_alerts} alerts, {n_rule_alerts} of them from the covered "
        f"rules (product BatchProcessor vs the same replaying the prototype's signals, batch {args.batch})",
        flush=True,
    )

    def files(n: int) -> Path:
        common.CACHE.mkdir(parents=True, exist_ok=True)
        f = common.CACHE / f"columnar-history-{n}.jsonl"
        f.write_bytes(b"\n".join(history(n)) + b"\n")
        return f

    #: (signals, digest) of current and of columnar, per run: the same history must give the same
    differ: list[str] = []
    ins_ratio = float("nan")
    if not args.no_instructions:
        if shutil.which("valgrind") is None:
            print("instructions: skipped (valgrind is not installed)", flush=True)
        else:
            f = files(args.count_events)
            got = {p: run_child(f, args.batch, p, count=True) for p in PARTS}
            per = {p: (got[p]["instructions"] - got["setup"]["instructions"]) / got[p]["events"] for p in PARTS[1:]}
            differ += _differ(got)
            ins_ratio = per["columnar"] / per["current"]
            print(
                f"instructions/event ({got['current']['events']} events, batch {args.batch}): "
                f"current {per['current']:,.0f}, columnar {per['columnar']:,.0f} "
                f"(of which gathering columns {per['columns']:,.0f}); ratio {ins_ratio:.3f}",
                flush=True,
            )
            caused = per["processor-covered"] - per["processor-none"]
            print(
                f"the whole offline processor (no anomaly detectors), instructions/event: no rules "
                f"{per['processor-none']:,.0f}, the covered rules {per['processor-covered']:,.0f}; the rules cause "
                f"{caused:,.0f}, of which their evaluation (current) {per['current']:,.0f} "
                f"({per['current'] / caused:.0%}; the rest follows their signals: risk index, episodes, alerts)",
                flush=True,
            )
            print(
                f"for scale: the whole pack's rules evaluated the same way {per['current-full']:,.0f} "
                f"instructions/event; the full processor (every rule and anomaly model, as `riskflow backtest`) "
                f"{per['processor-full']:,.0f}",
                flush=True,
            )
    f = files(args.events)
    cpu: dict[str, list[float]] = {"current": [], "columnar": []}
    ratios = []
    for r in range(args.rounds):
        order = ["current", "columnar"] if r % 2 == 0 else ["columnar", "current"]
        got = {p: run_child(f, args.batch, p) for p in order}
        for p in order:
            cpu[p].append(1e6 * got[p]["cpu_seconds"] / got[p]["events"])
        differ += _differ(got)
        ratios.append(cpu["columnar"][-1] / cpu["current"][-1])
        print(
            f"round {r + 1} ({' then '.join(order)}): current {cpu['current'][-1]:.3f} µs/event, "
            f"columnar {cpu['columnar'][-1]:.3f} µs/event, ratio {ratios[-1]:.3f}; "
            f"load average {os.getloadavg()[0]:.2f}",
            flush=True,
        )
    signals_same = not differ
    print(f"signals: {'identical in every run' if signals_same else 'DIFFER: ' + '; '.join(differ)}", flush=True)
    if not same or not signals_same:
        print("the prototype's output differs from the product's: the ratios below compare unequal work", flush=True)
    if ins_ratio == ins_ratio:
        headline("columnar_vs_current_instructions_ratio", ins_ratio)
    value = median(ratios)
    headline("columnar_vs_current_cpu_ratio", value)
    return value


if __name__ == "__main__":
    main()
