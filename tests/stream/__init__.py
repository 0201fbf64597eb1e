"""Tests that run the real stream on the embedded Tansu broker (tests/support/kafka_fixtures.py)."""
