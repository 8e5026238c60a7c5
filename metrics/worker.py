"""Metrics of the screening worker. Names start with ``sekat_`` and use base units.

Counters are updated once per batch (``inc(n)``) with pre-resolved label
children: per-event metric calls would cost as much as the lookup itself.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from sekat.records import Action

STREAMS = ("transfers", "calls")
OUTCOMES = ("ALLOW", "LABEL", "HOLD", "BLOCK", "INVALID")
LOOKUP_RESULTS = ("hit", "miss", "inactive")
# Single milliseconds matter: the SLO is p99 <= 10 ms.
LATENCY_BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter("sekat_events_total", "Input events by stream and decision outcome.",
                              ["stream", "outcome"], registry=registry)
        self.commands = Counter("sekat_commands_total", "Commands sent, by action.", ["action"], registry=registry)
        self.deadletters = Counter("sekat_deadletters_total", "Invalid events sent to the dead-letter topic.",
                                   ["stream", "reason"], registry=registry)
        self.lookups = Counter("sekat_blocklist_lookups_total", "Blocklist identifier lookups by result.",
                               ["result"], registry=registry)
        self.lookup_errors = Counter("sekat_blocklist_lookup_errors_total",
                                     "Batches whose blocklist lookup failed and was retried.", registry=registry)
        self.send_errors = Counter("sekat_send_errors_total",
                                   "Batches whose output could not be acknowledged by Kafka and was re-sent.",
                                   registry=registry)
        self.decision_latency = Histogram(
            "sekat_decision_latency_seconds",
            "Input record timestamp to acknowledgement of the batch's output by Kafka.",
            ["stream"], buckets=LATENCY_BUCKETS, registry=registry)
        self.processing = Histogram(
            "sekat_batch_processing_seconds", "In-process time to decide one batch (decode, lookup, decide, send).",
            ["stream"], buckets=LATENCY_BUCKETS, registry=registry)
        self.last_batch = Gauge("sekat_last_batch_timestamp_seconds", "When the last batch was decided.",
                                ["stream"], registry=registry)
        self.reports_applied = Counter("sekat_reports_applied_total",
                                       "Valid blocklist reports applied to the index (re-deliveries included).",
                                       registry=registry)
        self.apply_errors = Counter("sekat_reports_apply_errors_total",
                                    "Report batches whose write to the index failed and was retried.",
                                    registry=registry)
        self.entries_changed = Counter("sekat_blocklist_entries_changed_total",
                                       "Blocklist index entries written by the reports agent.", registry=registry)
        # Pre-resolved children: the hot path never calls .labels().
        self.events_by = {(s, o): self.events.labels(s, o) for s in STREAMS for o in OUTCOMES}
        self.commands_by = {a: self.commands.labels(a.value) for a in Action}
        self.lookups_by = {r: self.lookups.labels(r) for r in LOOKUP_RESULTS}
        self.latency_by = {s: self.decision_latency.labels(s) for s in STREAMS}
        self.processing_by = {s: self.processing.labels(s) for s in STREAMS}
        self.last_batch_by = {s: self.last_batch.labels(s) for s in STREAMS}
