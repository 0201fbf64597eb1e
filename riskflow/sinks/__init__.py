"""Alert sinks: consumers of the alerts topic, one module each, sharing one consumer loop.

A sink is a :class:`~riskflow.sinks.base.Sink` subclass with a ``name`` in a module of this
package (``store.py``: the alert store; ``terminal.py``: ``riskflow alerts tail`` and the
demo's printer). :data:`~riskflow.sinks.base.SINKS` finds every one without a list, and
tests/unit/test_sinks.py holds each to the sink contract.
"""
