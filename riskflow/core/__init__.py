"""The ground floor: what every other package stands on (the event contract, settings,
alert and dead-letter records, partitioning, the peer model artefact, Kafka client
configuration, metrics bundles, the extension registry). It imports nothing of RiskFlow
above it: ``detectors/`` and ``streams/`` import from ``riskflow`` only through here."""
