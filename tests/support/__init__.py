"""Fixture and helper modules shared by the test groups (no tests here)."""
