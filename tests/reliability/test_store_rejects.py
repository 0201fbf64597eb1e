"""A record the database refuses is ledgered and the rest of its batch stored; every revision is kept.

The same tests against SQLite and a real PostgreSQL server (the ``target`` fixture of tests/conftest.py).
"""

from __future__ import annotations

import pytest

from riskflow.store import AlertStore, open_store
from riskflow.store.base import Incoming
from tests.support.store_tools import make_alert

NUL_ID = "PFM-330100-\x00666"


def test_a_nul_in_an_id_is_ledgered_and_the_valid_alerts_of_the_batch_stored(store: AlertStore) -> None:
    batch = [
        Incoming.of(make_alert("g1"), "riskflow.alerts/0@1"),
        Incoming.of(make_alert("bad", entity_id=NUL_ID), "riskflow.alerts/0@2"),
        # A NUL in a title is kept: titles live JSON-escaped in the body, which any database can hold.
        Incoming.of(make_alert("g2", title_en="Guaranteed\x00 return"), "riskflow.alerts/1@1"),
        Incoming(b"\xff{not an alert", None, "riskflow.alerts/1@2", "msgspec.DecodeError", "invalid JSON"),
        Incoming.of(make_alert("g3"), "riskflow.alerts/1@3"),
    ]
    result = store.write_batch(batch)
    assert result.changed == ["g1", "g2", "g3"]
    assert sorted(r.reason for r in result.rejects) == ["bad_text", "undecodable"]
    assert store.count() == 3 and store.get("g2").alert.title_en == "Guaranteed\x00 return"

    ledger = {r.reason: r for r in store.rejects()}
    assert set(ledger) == {"bad_text", "undecodable"}
    bad = ledger["bad_text"]
    assert (bad.alert_id, bad.source) == ("bad", "riskflow.alerts/0@2")
    assert (bad.error_class, bad.error) == ("riskflow.store.base.Refused", "entity_id contains a NUL character")
    assert bad.raw == make_alert("bad", entity_id=NUL_ID).to_json().decode() and "\\u0000" in bad.raw
    assert bad.raw_size == len(make_alert("bad", entity_id=NUL_ID).to_json())
    junk = ledger["undecodable"]
    assert (junk.alert_id, junk.raw, junk.raw_size) == ("", "\\xff{not an alert", 14)
    assert (junk.error_class, junk.error) == ("msgspec.DecodeError", "invalid JSON")

    again = store.write_batch(batch)
    assert again.changed == [] and len(again.rejects) == 2, "a re-delivered batch changes nothing"
    assert len(store.rejects()) == 2 and store.count() == 3, "and is ledgered once"


def test_what_the_database_itself_refuses_is_found_record_by_record(store: AlertStore) -> None:
    """No pre-check catches a lone surrogate: the driver refuses it, the batch falls back."""
    odd = make_alert("odd", entity_id="PF-\ud800")
    batch = [
        Incoming.of(make_alert("g1")),
        Incoming(b'{"alert_id": "odd"}', odd, "riskflow.alerts/2@9"),
        Incoming.of(make_alert("g2")),
    ]
    result = store.write_batch(batch)
    assert result.changed == ["g1", "g2"]
    assert [(r.alert_id, r.reason) for r in result.rejects] == [("odd", "bad_text")]
    assert store.count() == 2 and [r.source for r in store.rejects()] == ["riskflow.alerts/2@9"]


def test_postgresql_refusing_a_nul_is_a_rejected_record_not_an_outage(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the store's own check, PostgreSQL's refusal (a DataError) takes the same path."""
    monkeypatch.setattr("riskflow.store.base.check_storable", lambda a: None)
    with open_store(postgres_url) as s:
        alerts = [make_alert("g1"), make_alert("bad", entity_id=NUL_ID), make_alert("g2")]
        result = s.write_batch([Incoming.of(a) for a in alerts])
        assert result.changed == ["g1", "g2"] and s.count() == 2
        (r,) = s.rejects()
        assert (r.alert_id, r.reason, r.error_class) == ("bad", "bad_text", "psycopg.DataError")
        assert "NUL" in r.error


def test_a_revision_beyond_32_bits_is_refused_alike_on_both_databases(store: AlertStore) -> None:
    result = store.write_batch([Incoming.of(make_alert("big", revision=2**40)), Incoming.of(make_alert("g1"))])
    assert result.changed == ["g1"]
    assert [(r.alert_id, r.reason) for r in result.rejects] == [("big", "out_of_range")]


def test_a_broken_store_is_raised_for_a_retry_not_taken_for_bad_records(store: AlertStore) -> None:
    """A missing table fails every record: that is the store's fault, and nothing is ledgered."""
    with store._tx() as cur:
        store._x(cur, "DROP TABLE rf_revisions")
    with pytest.raises(Exception, match="rf_revisions"):
        store.write_batch([Incoming.of(make_alert("g1")), Incoming.of(make_alert("g2"))])
    assert store.count() == 0 and store.rejects() == []


def test_postgres_outage_during_a_batch_is_raised_and_the_retry_stores_it(postgres_url: str) -> None:
    import psycopg

    with open_store(postgres_url) as s:
        s.write_batch([Incoming.of(make_alert("a1"))])
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        batch = [Incoming.of(make_alert("a2")), Incoming.of(make_alert("a3"))]
        with pytest.raises(psycopg.OperationalError):
            s.write_batch(batch)
        assert s.write_batch(batch).changed == ["a2", "a3"], "the next call reconnects"
        assert s.count() == 3 and s.rejects() == []


def test_every_revision_of_a_batch_is_kept_in_order_and_redelivery_adds_nothing(
    store: AlertStore,
) -> None:
    revs = [make_alert("a1", revision=r, risk_index=50.0 + r, risk_level="orange") for r in (3, 1, 5, 2, 4)]
    assert store.upsert_alerts(revs) == ["a1"]
    hist = store.history("PFM-330100-0001")
    assert [(h.revision, h.risk_index) for h in hist] == [(r, 50.0 + r) for r in range(1, 6)]
    assert store.get("a1").alert.revision == 5, "the current row is the highest revision"
    assert [h.revision for h in store.history("PFM-330100-0001", limit=2)] == [4, 5], "the latest points"

    seq = store.last_seq()
    assert store.upsert_alerts(revs) == []
    assert store.history("PFM-330100-0001") == hist and store.last_seq() == seq
    # Through the sink's entry point too, with a later revision 6 and the earlier ones again.
    store.write_batch([Incoming.of(a) for a in [*revs, make_alert("a1", revision=6, risk_index=99.0)]])
    assert [h.revision for h in store.history("PFM-330100-0001")] == [1, 2, 3, 4, 5, 6]
    assert store.get("a1").alert.revision == 6
