"""The Faust topology: thin wiring of topics and tables to the detector engine."""
