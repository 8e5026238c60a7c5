"""Metrics of the safety brake (``sekat.brake.guard``). Label values are bounded: the dimension only.

    sekat_brake_trips_total{dimension}    targets this worker tripped (entry, rule, source)
    sekat_brake_engaged{dimension}        targets in shadow by the brake, as this worker last read them
    sekat_brake_errors_total              brake counts or reads that failed (Redis); screening goes on
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from sekat.brake.store import DIMENSIONS


class BrakeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.trips = Counter("sekat_brake_trips_total", "Brake targets this worker tripped to shadow mode",
                             ["dimension"], registry=registry)
        self.engaged = Gauge("sekat_brake_engaged", "Brake targets currently in shadow mode (entry, rule, source)",
                             ["dimension"], registry=registry)
        self.errors = Counter("sekat_brake_errors_total", "Safety brake counts or reads that failed (Redis)",
                              registry=registry)
        for d in DIMENSIONS:  # zero from the start, so alerts tell "none engaged" from "absent"
            self.trips.labels(d)
            self.engaged.labels(d).set(0)

    def set_engaged(self, targets: list[str]) -> None:
        for d in DIMENSIONS:
            self.engaged.labels(d).set(sum(1 for t in targets if t.startswith(d + ":")))
