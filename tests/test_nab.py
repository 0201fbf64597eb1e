"""``riskflow bench nab`` on small synthetic files in the Numenta Anomaly Benchmark layout."""

from __future__ import annotations

import csv
import datetime as _dt
import math
import random
from pathlib import Path

import pytest

from riskflow.cli import main
from riskflow.commands.bench import probation


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
    noisy = [50 + 10 * math.sin(i / 20) + rng.gauss(0, 1) for i in range(600)]
    noisy[450] = 120.0  # one spike after the probationary period
    _write(data / "artificialWithAnomaly" / "spike.csv", noisy)
    _write(data / "artificialNoAnomaly" / "flat.csv", [3.0] * 300)
    _write(data / "realKnownCause" / "shift.csv", [10 + rng.gauss(0, 0.5) for _ in range(300)] + [30.0] * 100)
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
    assert sorted(scores)[-2] < 0.5  # no other point is flagged
    flat = [float(r["anomaly_score"]) for r in _read(out / "riskflow/artificialNoAnomaly/riskflow_flat.csv")]
    assert max(flat) == 0.0
    # A level shift is flagged when it happens, then accepted as the new level.
    shift = [float(r["anomaly_score"]) for r in _read(out / "riskflow/realKnownCause/riskflow_shift.csv")]
    assert shift[300] >= 0.5 and shift[-1] < 0.5


def test_empty_corpus_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["bench", "nab", "--data", str(tmp_path), "--out", str(tmp_path / "o")])
