"""Garbage-collector settings for the long-running hot paths (worker, backtest).

The hot path allocates many short-lived containers per event (dicts of evidence,
signal lists, tuples) that reference counting frees at once; CPython's cyclic
collector still runs a young-generation pass every 700 allocations, and full
passes walk every object of the process (Faust, aiokafka, the modules). Measured
in-process on a backtest of a 45,793-event simulated history (every scenario), by
``gc.callbacks``: the collector took 0.30 s of 6.5 s CPU with the defaults (263
passes), 0.09 s with these settings (2 passes), and the alerts were byte-identical.
A worker holds many more long-lived objects than a backtest, so its full passes
cost more.

:func:`tune` freezes what exists after start-up (it lives as long as the process:
``gc.freeze`` moves it out of every future pass) and raises the thresholds. It is
called once, by the entry points only (``riskflow backtest``, the worker's first
batch, ``bench/processor.py``), never by library code.

>>> import gc
>>> before = gc.get_threshold()
>>> tune()
>>> gc.get_threshold()[0] >= 10_000
True
>>> gc.set_threshold(*before); gc.unfreeze()
"""

from __future__ import annotations

import gc

#: young-generation threshold: allocations net of frees between passes (CPython default 700)
YOUNG = 50_000


def tune() -> None:
    """Freeze the objects of start-up and raise the collector's thresholds (idempotent)."""
    gc.collect()
    gc.freeze()
    _, mid, old = gc.get_threshold()
    gc.set_threshold(max(YOUNG, gc.get_threshold()[0]), max(mid, 20), max(old, 10))
