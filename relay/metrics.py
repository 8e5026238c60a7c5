"""Metrics of the webhook relay, per institution (label values: the ids of SEKAT_INSTITUTIONS_FILE only).

Children are created at start with value 0 for every configured institution, so that ``increase()`` sees the
first delivery and the alert can tell "nothing accepted" from "absent".
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# From a command's Kafka timestamp to the institution's 2xx: milliseconds when all is well, hours when an
# institution was down until just before the give-up time.
DELIVERY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0, 300.0, 1800.0, 7200.0)


class RelayMetrics:
    def __init__(self, institutions: Iterable[str], registry: CollectorRegistry | None = None) -> None:
        registry = registry if registry is not None else CollectorRegistry()
        self.registry = registry
        self.served: set[str] = set()
        self.delivered = Counter("sekat_relay_delivered_total", "Commands an institution accepted (2xx).",
                                 ["institution"], registry=registry)
        self.retried = Counter("sekat_relay_retries_total", "Attempts made again after a failed one.",
                               ["institution"], registry=registry)
        self.failed = Counter("sekat_relay_failed_attempts_total",
                              "Attempts that failed (no answer in time, refused connection, or not 2xx).",
                              ["institution"], registry=registry)
        self.given_up = Counter("sekat_relay_given_up_total",
                                "Commands given up after SEKAT_RELAY_GIVE_UP_S and written to SEKAT_TOPIC_UNDELIVERED.",
                                ["institution"], registry=registry)
        self.latency = Histogram("sekat_relay_delivery_seconds",
                                 "From the command's Kafka timestamp to the institution's 2xx.",
                                 ["institution"], buckets=DELIVERY_BUCKETS, registry=registry)
        self.pending = Gauge("sekat_relay_pending_commands",
                             "Commands read for the institution and not yet delivered or given up.",
                             ["institution"], registry=registry)
        self.last_accepted = Gauge("sekat_relay_last_accepted_timestamp_seconds",
                                   "When the institution last accepted a command (the relay's start before any).",
                                   ["institution"], registry=registry)
        self.breaker_open = Gauge("sekat_relay_breaker_open",
                                  "1 while the institution's circuit breaker is open or half-open.",
                                  ["institution"], registry=registry)
        for name in institutions:
            self.serve(name)

    def serve(self, name: str) -> None:
        """Show the institution's series from now (its last acceptance: now, until it accepts one)."""
        if name in self.served:
            return
        self.served.add(name)
        for metric in (self.delivered, self.retried, self.failed, self.given_up, self.pending, self.breaker_open):
            metric.labels(name)
        self.latency.labels(name)
        self.last_accepted.labels(name).set(time.time())
