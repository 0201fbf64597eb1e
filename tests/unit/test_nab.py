"""``riskflow bench nab`` on small synthetic files and on two files of the Numenta Anomaly Benchmark.

The two real files and their labelled windows are copied into tests/data/nab/
(NAB's MIT notice beside them), so that the runner cannot silently break: every
labelled window must score higher than the unlabelled stretches around it.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import math
import random
from pathlib import Path

import pytest

from bench import nab as nab_bench
from bench.nab import fold_of
from detectors.anomaly.univariate import UnivariateAnomaly
from riskflow.cli import main
from riskflow.commands.bench import probation
from riskflow.core.schema import Event, parse_event

NAB = Path(__file__).parents[1] / "data" / "nab"


def _write(path: Path, values: list[float]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = _dt.datetime(2014, 4, 1)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", "value"])
        for i, v in enumerate(values):
            w.writerow([(t0 + _dt.timedelta(minutes=5 * i)).strftime("%Y-%m-%d %H:%M:%S"), v])


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    rng = random.Random(0)
    data = tmp_path / "data"
    noisy = [50 + 10 * math.sin(i / 5) + rng.gauss(0, 1) for i in range(600)]
    noisy[450] = 120.0  # one spike after the probationary period
    _write(data / "artificialWithAnomaly" / "spike.csv", noisy)
    _write(data / "artificialNoAnomaly" / "flat.csv", [3.0] * 300)
    _write(data / "realKnownCause" / "shift.csv", [10 + rng.gauss(0, 0.5) for _ in range(300)] + [30.0] * 400)
    return data


def test_layout_scores_and_labels(corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    assert main(["bench", "nab", "--data", str(corpus), "--out", str(out)]) == 0
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.csv"))
    assert files == [
        "riskflow/artificialNoAnomaly/riskflow_flat.csv",
        "riskflow/artificialWithAnomaly/riskflow_spike.csv",
        "riskflow/realKnownCause/riskflow_shift.csv",
    ]
    spike = _read(out / "riskflow/artificialWithAnomaly/riskflow_spike.csv")
    src = _read(corpus / "artificialWithAnomaly/spike.csv")
    assert list(spike[0]) == ["timestamp", "value", "anomaly_score", "label"]
    assert [(r["timestamp"], r["value"]) for r in spike] == [(r["timestamp"], r["value"]) for r in src]
    scores = [float(r["anomaly_score"]) for r in spike]
    assert all(0.0 <= s <= 1.0 for s in scores) and {r["label"] for r in spike} == {"0"}
    # Nothing during the probationary period; the spike is the highest score of the file.
    assert max(scores[: probation(len(scores))]) == 0.0
    assert scores.index(max(scores)) == 450 and scores[450] >= 0.5
    # Once the noise's range has been seen (a new extreme is news), only the spike is flagged.
    assert max(s for i, s in enumerate(scores) if i >= 2 * probation(len(scores)) and i != 450) < 0.5
    flat = [float(r["anomaly_score"]) for r in _read(out / "riskflow/artificialNoAnomaly/riskflow_flat.csv")]
    assert max(flat) == 0.0
    # A level shift is flagged when it happens, then accepted as the new level, by the value
    # novelty and by the hour-of-day baseline alike (not reported again at each hour it meets).
    shift = [float(r["anomaly_score"]) for r in _read(out / "riskflow/realKnownCause/riskflow_shift.csv")]
    assert shift[300] >= 0.5 and max(shift[301:]) < 0.5


def test_runner_scores_what_the_product_detector_scores(tmp_path: Path) -> None:
    """The scores ``bench nab`` writes are those of ``anomaly.univariate`` with its defaults, run on events.

    Each row of a bundled NAB file becomes a ``flow.transfer`` whose amount is the value, at the row's
    time; the detector (default parameters, NAB's probationary period as warm-up) flags a row exactly
    when the runner wrote a score from its threshold, with the same score.
    """
    out = tmp_path / "results"
    assert main(["bench", "nab", "--data", str(NAB / "data"), "--out", str(out)]) == 0
    src = sorted((NAB / "data").glob("*/*.csv"))[0]
    rows = _read(out / "riskflow" / src.parent.name / f"riskflow_{src.name}")
    det = UnivariateAnomaly(warmup=probation(len(rows)))
    assert det.params() == {**UnivariateAnomaly().params(), "warmup": probation(len(rows)), **_derived(det)}
    state, flagged = det.init_state(), {}
    for i, r in enumerate(rows):
        t = _dt.datetime.fromisoformat(r["timestamp"]).replace(tzinfo=_dt.UTC)
        event = _transfer(i, t, float(r["value"]))
        state, signals = det.process(state, event)
        for s in signals:
            flagged[i] = s.score
    written = {i: float(r["anomaly_score"]) for i, r in enumerate(rows) if float(r["anomaly_score"]) >= det.threshold}
    assert len(written) >= 3
    assert flagged.keys() == written.keys()
    assert all(abs(flagged[i] - written[i]) < 1e-6 for i in written)


def _derived(det: UnivariateAnomaly) -> dict[str, int]:
    """The parameters the defaults derive from the warm-up."""
    return {"onset_window": det.core.onset_window, "record_ramp": det.core.record_ramp}


def _transfer(i: int, t: _dt.datetime, amount: float) -> Event:
    return parse_event(
        json.dumps(
            {
                "schema": "riskflow.event/v1",
                "event_id": f"t{i}",
                "event_type": "flow.transfer",
                "entity_id": "PF-1",
                "entity_kind": "private_fund",
                "region": "330100",
                "event_time": t.isoformat(),
                "source": "bank",
                "payload": {"direction": "in", "amount": amount},
            }
        ).encode(),
        now=2e9,
    )


def test_known_nab_windows_score_above_their_surroundings(tmp_path: Path) -> None:
    out = tmp_path / "results"
    assert main(["bench", "nab", "--data", str(NAB / "data"), "--out", str(out)]) == 0
    windows = json.loads((NAB / "combined_windows.json").read_text())
    checked = 0
    for rel, wins in windows.items():
        category, name = rel.split("/")
        rows = _read(out / "riskflow" / category / f"riskflow_{name}")
        pos = {r["timestamp"]: i for i, r in enumerate(rows)}
        spans = [(pos[a.split(".")[0]], pos[b.split(".")[0]]) for a, b in wins]
        scores = [float(r["anomaly_score"]) for r in rows]
        labelled = {i for a, b in spans for i in range(a, b + 1)}
        for a, b in spans:
            width = b - a + 1
            around = [scores[i] for i in range(max(0, a - width), min(len(scores), b + 1 + width)) if i not in labelled]
            assert max(scores[a : b + 1]) > max(around, default=0.0), (rel, a, b)
            checked += 1
    assert checked == 7


def test_unreadable_files_are_one_line_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad" / "cat" / "x.csv"
    bad.parent.mkdir(parents=True)
    bad.write_text("timestamp,other\n2014-01-01 00:00:00,1\n")
    with pytest.raises(SystemExit, match="no 'value' column"):
        main(["bench", "nab", "--data", str(tmp_path / "bad"), "--out", str(tmp_path / "o")])


def test_empty_corpus_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["bench", "nab", "--data", str(tmp_path), "--out", str(tmp_path / "o")])


def test_the_folds_split_files_deterministically_and_reject_one_fold(capsys: pytest.CaptureFixture[str]) -> None:
    names = [f"series_{i}.csv" for i in range(200)]
    parts = [fold_of(n, 2) for n in names]
    assert parts == [fold_of(n, 2) for n in names] and set(parts) == {0, 1}
    assert 60 <= parts.count(0) <= 140  # a hash, not an order: both halves well filled
    assert nab_bench.main([str(NAB), "--folds", "1"]) == 2
    assert capsys.readouterr().err.strip() == "bench/nab.py: --folds must be 0 (none) or at least 2"
