"""Tests that need no Kafka broker and no browser: detectors, schema, store (SQLite and a local
PostgreSQL server), feed in-process, CLI, docs."""
