"""Golden backtest: speed-ups of the hot path must not change a single alert.

A fixed, seeded simulated history with every scenario (benign look-alikes too) runs
through :func:`riskflow.backtest.backtest`; every alert emitted (revisions too) is
reduced to ``alert_id, revision, risk_level, risk_index, rule_id`` plus a digest of
the whole alert (except the wall-clock ``detected_at``), sorted, and compared with
``tests/data/golden_backtest.tsv``, line by line.

When a change is *meant* to change alerts (a rule, a risk parameter, a detector, the
simulator), regenerate the file and commit it with the change, saying why::

    RISKFLOW_UPDATE_GOLDEN=1 .venv/bin/python -m pytest -q tests/unit/test_backtest_golden.py

A change meant to be output-neutral (performance work) must pass without that.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import msgspec

from riskflow.backtest import backtest
from riskflow.core.alerts import Alert
from riskflow.core.schema import encode_event
from riskflow.sim import simulate

GOLDEN = Path(__file__).parents[1] / "data" / "golden_backtest.tsv"
#: every scenario of the library, at shares high enough that each one occurs
SCENARIOS = {
    "ponzi_fund": 0.05,
    "p2p_run": 0.04,
    "guarantee_chain_default": 0.04,
    "bank_liquidity_squeeze": 0.04,
    "illegal_fundraising": 0.05,
    "nav_manipulation": 0.05,
    "benign_lookalike": 0.08,
}
NOW = 2_000_000_000.0  # fixed "wall clock" for the future-time check


def golden_history() -> tuple[list[bytes], list[dict]]:
    events, labels = simulate(entities=120, days=60, seed=20261127, scenarios=SCENARIOS)
    return [encode_event(e) for e in events], labels


def row(a: Alert) -> str:
    whole = msgspec.to_builtins(a)
    whole.pop("detected_at", None)
    digest = hashlib.blake2b(msgspec.json.encode(whole, order="sorted"), digest_size=8).hexdigest()
    return f"{a.alert_id}\t{a.revision}\t{a.risk_level}\t{a.risk_index!r}\t{a.rule_id}\t{digest}"


def current() -> list[str]:
    lines, labels = golden_history()
    rows: list[str] = []
    backtest(lines, labels, now=NOW, batch_size=997, on_alert=lambda a: rows.append(row(a)))
    head = f"# history sha256={hashlib.sha256(b''.join(lines)).hexdigest()[:16]} events={len(lines)}"
    return [head, *sorted(rows)]


def test_backtest_output_is_unchanged() -> None:
    got = current()
    scenarios = {lab["scenario"] for lab in golden_history()[1]}
    assert scenarios == set(SCENARIOS), "the golden history must hold every scenario"
    assert len(got) > 200
    if os.environ.get("RISKFLOW_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text("\n".join(got) + "\n")
    want = GOLDEN.read_text().splitlines()
    if got[0] != want[0]:
        raise AssertionError(
            f"the simulated history changed ({want[0]!r} -> {got[0]!r}); if the simulator change is "
            "intended, regenerate the golden file (see this module's docstring)"
        )
    missing = sorted(set(want) - set(got))[:5]
    extra = sorted(set(got) - set(want))[:5]
    assert got == want, (
        f"{len(set(want) - set(got))} golden alert lines missing, {len(set(got) - set(want))} new "
        f"(first missing {missing}, first new {extra}). If alerts are meant to change, regenerate "
        "the golden file (see this module's docstring)."
    )
