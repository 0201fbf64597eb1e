"""Hostile input, crashes, outages, rebalances and restarts: what must never stop detection or lose an alert."""
