"""Sub-commands of the ``riskflow`` CLI, one module each."""
