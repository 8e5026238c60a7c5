"""Sekat: stops scams while they happen.

This package holds what every part shares: settings, the typed records of the
JSON contract, the exception tree, the CLI and the local stack runner.
The data flow itself lives in the top-level packages ``streams`` (the Faust
shell), ``rules`` (pure decisions), ``blocklist`` (identifiers and the Redis
store) and ``metrics``.
"""

__version__ = "0.1.0"
