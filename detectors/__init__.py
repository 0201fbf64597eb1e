"""Rule and anomaly detectors: pure Python over :class:`riskflow.schema.Event`.

Nothing here imports Kafka, Faust or Prometheus, so the same code runs inside a
Faust agent, in an offline backtest and in a unit test.
"""
