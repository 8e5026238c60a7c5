"""Prometheus metric definitions, recording/alert rules and dashboards.

Metric objects take a registry (tests pass a fresh ``CollectorRegistry``);
label values are bounded (stream, outcome, action, reason, result), never an
account or a number.
"""
