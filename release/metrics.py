"""Metrics of the release sweep (release/sweep.py): entries released, sweeps that failed.

Counted once per sweep; label values are bounded (``reason``: revoked, expired or hold_ended).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

REASONS = ("revoked", "expired", "hold_ended")


class ReleaseMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.released = Counter("sekat_releases_total",
                                "Blocklist entries whose release commands were sent, by why they were released.",
                                ["reason"], registry=registry)
        self.released_by = {r: self.released.labels(r) for r in REASONS}
        self.errors = Counter("sekat_release_sweep_errors_total",
                              "Release sweeps that failed (Redis or Kafka unavailable) and will be retried.",
                              registry=registry)
