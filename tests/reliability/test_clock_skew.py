"""One producer's clock must not move everyone's event time (issue 22, detectors/pipeline.Lane).

Eight ``grid.report`` events stamped 20 hours after the wall clock (inside the 24 h future
limit) are slipped into three months of history, as a producer with a wrong clock would send
them. Each entity's timed rules fire when its partition's event time passes their deadlines;
without the skew limit, those eight events moved their partitions' time ~18 months ahead and
fired missed filings and unpaid redemptions on unrelated entities.
"""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from riskflow.backtest import backtest
from riskflow.core.schema import encode_event
from riskflow.core.settings import Settings
from riskflow.sim import simulate

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC).timestamp()


def _alerts(lines: list[bytes], settings: Settings) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}

    def keep(a: Any) -> None:
        out[f"{a.alert_id}#{a.revision}"] = {"entity": a.entity_id, "level": a.risk_level, "index": a.risk_index}

    backtest(lines, settings=settings, now=NOW, on_alert=keep)
    return out


def _skewed_history() -> tuple[list[bytes], list[bytes], set[str]]:
    events, _ = simulate(entities=300, days=90, seed=11)
    rng = random.Random(4)
    victims = rng.sample(sorted({e["entity_id"] for e in events if e["entity_kind"] != "enterprise"}), 8)
    ahead = dt.datetime.fromtimestamp(NOW + 20 * 3600, dt.UTC).isoformat()
    skewed = list(events)
    for i, eid in enumerate(victims):
        like = next(e for e in events if e["entity_id"] == eid)
        bad = {
            **like,
            "event_id": f"skewed-{i}",
            "event_type": "grid.report",
            "event_time": ahead,
            "source": "grid_report",
            "payload": {"observation": "normal"},
        }
        skewed.insert(rng.randrange(len(skewed) // 4, len(skewed)), bad)
    return [encode_event(e) for e in events], [encode_event(e) for e in skewed], set(victims)


def test_events_far_ahead_of_their_partition_do_not_fire_other_entities_deadlines() -> None:
    clean, skewed, victims = _skewed_history()
    base = _alerts(clean, Settings())
    got = _alerts(skewed, Settings())
    others = {k: v for k, v in got.items() if v["entity"] not in victims}
    assert others == {k: v for k, v in base.items() if v["entity"] not in victims}
    # The same history without the limit (the behaviour before it): the eight events fire
    # deadlines on entities that sent nothing wrong — so this test can tell the difference.
    unlimited = _alerts(skewed, Settings(max_event_skew=1e12))
    extra = {v["entity"] for k, v in unlimited.items() if k not in base and v["entity"] not in victims}
    assert len(extra) >= 5, extra
