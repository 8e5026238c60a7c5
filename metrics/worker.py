"""Metrics of the screening worker. Names start with ``sekat_`` and use base units.

Counters are updated once per batch (``inc(n)``) with pre-resolved label
children: per-event metric calls would cost as much as the lookup itself.
Children whose label values are known up front (stream, outcome, lookup
result, dead-letter reason) are created at start with value 0, so that
``rate()``/``increase()`` see the first increment and alerts can tell "zero"
from "absent".

Label values (all bounded, never an account or a phone number):

    stream       STREAMS: transfers, calls
    outcome      OUTCOMES: ALLOW, LABEL, HOLD, BLOCK, INVALID, SKIPPED
    action       the ``sekat.records.Action`` values (screening commands and releases)
    institution  <= MAX_INSTITUTIONS (bank BIC8 or telco operator code; some
                 tens in one country). Telcos write the operator field, so a
                 worker caps distinct values and counts the rest as "other".
    reason       dead-letter reason codes (``sekat.decode.fields.REASONS``)
    result       LOOKUP_RESULTS: hit, miss, inactive; policy reloads: applied, refused
    rule, mode   rule ids of the registry; enforce, shadow
    kind/status  BLOCKLIST_KINDS x BLOCKLIST_STATUSES: account/phone/wallet/proxy/sender/url/domain x
                 reported/confirmed/revoked/expired
    topic/partition  input partitions assigned to this worker
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from sekat.records import Action, Command

STREAMS = ("transfers", "calls", "sms")
OUTCOMES = ("ALLOW", "LABEL", "HOLD", "BLOCK", "INVALID", "SKIPPED")
LOOKUP_RESULTS = ("hit", "miss", "inactive")
BLOCKLIST_KINDS = ("account", "phone", "wallet", "proxy", "sender", "url", "domain")  # bounded: the identifier kinds
BLOCKLIST_STATUSES = ("reported", "confirmed", "revoked", "expired")
MAX_INSTITUTIONS = 500
OTHER_INSTITUTION = "other"
# Single milliseconds matter (the SLO is p99 <= 10 ms, a bucket boundary); the
# tail reaches tens of seconds when a backlog is decided. Each bucket is a series
# per stream on every worker, so the count stays at 16.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 1.0,
                   5.0, 30.0)
# A periodic task runs from well under a millisecond (a policy check) to minutes (a background snapshot refresh).
PERIODIC_BUCKETS = (0.0001, 0.001, 0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 30.0, 120.0, 600.0)
DAY_SECONDS = 86_400


def observe_many(child: Any, values: np.ndarray) -> None:
    """``child.observe(v)`` for every value, in one pass: bucket counts by numpy, one ``inc`` per bucket.

    One ``observe`` per event would take a lock and scan the buckets linearly each time, on the
    screening path. This reads prometheus_client's histogram child internals (``_upper_bounds``, ``_buckets`` holding
    non-cumulative counts, ``_sum``); if a release changes them, it falls back to one ``observe`` per value.
    tests/unit/test_worker_metrics.py holds the two to the same exposition.
    """
    if not len(values):
        return
    try:
        bounds, buckets, total = child._upper_bounds, child._buckets, child._sum
    except AttributeError:
        for v in values.tolist():
            child.observe(v)
        return
    # an observation goes to the first bucket whose upper bound is >= it (the +Inf bucket at worst)
    counts = np.bincount(np.searchsorted(np.asarray(bounds, dtype=np.float64), values, side="left"),
                         minlength=len(bounds))
    for i in np.flatnonzero(counts).tolist():
        buckets[i].inc(int(counts[i]))
    total.inc(float(values.sum()))


class Freshness:
    """When the worker last heard from its blocklist (Redis answered, or the replica applied a change).

    Feeds ``sekat_blocklist_replica_staleness_seconds``. The local replica marks it
    each time the change stream answers over a built index it has caught up with
    (at least once a second while Redis is up: its blocking read returns empty
    after 1 s).
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self.last_ok = clock()  # start-up counts: staleness then grows until the first answer

    def mark(self, at: float | None = None) -> None:
        self.last_ok = self._clock() if at is None else at

    def age(self) -> float:
        return max(0.0, self._clock() - self.last_ok)


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry, deadletter_reasons: Iterable[str] = (),
                 target_attempts: int = 4_700_000_000, target_period_days: int = 1095,
                 app_id: str = "sekat", version: str = "", clock: Callable[[], float] = time.time,
                 latency_objective_s: float = 0.25, latency_goal_s: float = 0.010) -> None:
        self.events = Counter("sekat_events_total", "Input events by stream and decision outcome.",
                              ["stream", "outcome"], registry=registry)
        self.commands = Counter("sekat_commands_total",
                                "Commands acknowledged by Kafka, by action and institution (bank BIC or operator).",
                                ["action", "institution"], registry=registry)
        self.deadletters = Counter("sekat_deadletters_total", "Invalid events sent to the dead-letter topic.",
                                   ["stream", "reason"], registry=registry)
        self.lookups = Counter("sekat_blocklist_lookups_total", "Blocklist identifier lookups by result.",
                               ["result"], registry=registry)
        self.lookup_errors = Counter("sekat_blocklist_lookup_errors_total",
                                     "Batches whose blocklist lookup failed and was retried.", registry=registry)
        self.send_errors = Counter("sekat_send_errors_total",
                                   "Batches whose output could not be acknowledged by Kafka and was re-sent.",
                                   registry=registry)
        self.output_refused = Counter(
            "sekat_output_refused_total",
            "Output records Kafka refused for good (too large, invalid, not authorised), by kind of record and what "
            "was done: stripped (a dead letter sent again without the original bytes), dropped, or retried "
            "(a command, never dropped).", ["kind", "action"], registry=registry)
        self.decode_fallbacks = Counter(
            "sekat_decode_fallback_events_total",
            "Events decoded on the worker's thread because their decode process ended before answering "
            "(SEKAT_DECODE_PROCESSES; the process is started again).", ["stream"], registry=registry)
        self.decision_latency = Histogram(
            "sekat_decision_latency_seconds",
            "Input record timestamp to acknowledgement of the batch's output by Kafka.",
            ["stream"], buckets=LATENCY_BUCKETS, registry=registry)
        self.latency_objective = Gauge(
            "sekat_decision_latency_objective_seconds",
            "Decision-latency objective, p99 (SEKAT_LATENCY_OBJECTIVE_MS): SekatDecisionLatencyHigh pages when the "
            "p99 stays over it.", registry=registry)
        self.latency_goal = Gauge(
            "sekat_decision_latency_goal_seconds",
            "Decision-latency goal, p99 (SEKAT_LATENCY_GOAL_MS): SekatDecisionLatencyOverGoal opens a ticket when the "
            "p99 stays over it.", registry=registry)
        self.latency_objective.set(latency_objective_s)
        self.latency_goal.set(latency_goal_s)
        self.processing = Histogram(
            "sekat_batch_processing_seconds", "In-process time to decide one batch (decode, lookup, decide, send).",
            ["stream"], buckets=LATENCY_BUCKETS, registry=registry)
        self.last_batch = Gauge("sekat_last_batch_timestamp_seconds", "When the last batch was decided.",
                                ["stream"], registry=registry)
        self.stalled = Gauge("sekat_stream_stalled",
                             "1 while the stream has records waiting and has finished no batch for "
                             "SEKAT_STALL_AFTER_S seconds, or its consumer task has died and it has not worked "
                             "since (/healthz is then 503).", ["stream"], registry=registry)
        self.stalled_seconds = Gauge("sekat_stream_stalled_seconds",
                                     "Seconds the stream has had records waiting with no batch finished "
                                     "(0 while it keeps up or has nothing to do).", ["stream"], registry=registry)
        self.screening_crashes = Counter(
            "sekat_screening_crashes_total",
            "Times the screening consumer's task died of an error it did not handle and was started again "
            "(its streams count as stalled until they work again).", registry=registry)
        self.index_replays = Counter(
            "sekat_index_replays_total",
            "Replays of sekat.reports into the Redis index this worker made, by cause: not_built (Redis came back "
            "empty), lost_entry (a hit gone from a built index), lost_count (a replica held more entries than the "
            "index counts).", ["cause"], registry=registry)
        self.replica_entries = Gauge("sekat_blocklist_replica_entries",
                                     "Active entries in this worker's blocklist replica.", registry=registry)
        self.blocklist_entries = Gauge(
            "sekat_blocklist_entries", "Blocklist entries in the serving index by kind and status "
            "(expired: past expires_at, not revoked), as the group leader's replica holds them; published every "
            "SEKAT_BLOCKLIST_COUNT_INTERVAL_S.", ["kind", "status"], registry=registry)
        self.periodic_task = Histogram(
            "sekat_periodic_task_seconds", "Runtime of each run of a worker's periodic task (its timer's name).",
            ["task"], buckets=PERIODIC_BUCKETS, registry=registry)
        self.blocklist_counted = Gauge("sekat_blocklist_entries_counted_timestamp_seconds",
                                       "When sekat_blocklist_entries was last refreshed.", registry=registry)
        self.freshness = Freshness(clock)
        self.staleness = Gauge(
            "sekat_blocklist_replica_staleness_seconds",
            "Seconds since this worker's blocklist view was last known fresh (Redis answered or the "
            "replica applied the change stream).", registry=registry)
        self.staleness.set_function(self.freshness.age)
        self.consumer_lag = Gauge("sekat_consumer_lag_messages",
                                  "Records not yet committed on the screening inputs and the reports intake: "
                                  "partition end offset minus committed offset.",
                                  ["topic", "partition"], registry=registry)
        self.end_offset = Gauge("sekat_consumer_end_offset",
                                "End offset (high watermark) of each assigned input partition.",
                                ["topic", "partition"], registry=registry)
        self.target_attempts = Gauge("sekat_target_attempts",
                                     "Configured national target: scam attempts to be screened over the period.",
                                     registry=registry)
        self.target_period = Gauge("sekat_target_period_seconds", "Configured period of the national target.",
                                   registry=registry)
        self.info = Gauge("sekat_worker_info", "Always 1; labels name the worker's application id and version.",
                          ["app_id", "version"], registry=registry)
        self.started = Gauge("sekat_worker_start_time_seconds", "When this worker process started.",
                             registry=registry)

        self.target_attempts.set(target_attempts)
        self.target_period.set(target_period_days * DAY_SECONDS)
        self.info.labels(app_id, version).set(1)
        self.started.set(clock())
        self.reports_applied = Counter("sekat_reports_applied_total",
                                       "Valid blocklist reports applied to the index (re-deliveries included).",
                                       registry=registry)
        self.apply_errors = Counter("sekat_reports_apply_errors_total",
                                    "Report batches whose write to the index failed and was retried.",
                                    registry=registry)
        self.entries_changed = Counter("sekat_blocklist_entries_changed_total",
                                       "Blocklist index entries written by the reports agent.", registry=registry)
        self.entries_purged = Counter("sekat_blocklist_entries_purged_total",
                                      "Ended blocklist entries removed from the index by a tombstone on the reports "
                                      "topic (retention purge or erasure).", registry=registry)
        self.purge_tombstones = Counter("sekat_purge_tombstones_total",
                                        "Tombstones the purge sent for entries past their retention, by how they "
                                        "ended (revoked or expired).", ["ended"], registry=registry)
        self.purge_deferred = Counter("sekat_purge_deferred_total",
                                      "Entries past their retention the purge left for a later run because a "
                                      "release command for them is not yet sent.", registry=registry)
        self.purge_appeals = Counter("sekat_purge_appeals_total",
                                     "Appeals the purge tombstoned and deleted, by why: their entry was purged "
                                     "(entry) or they were decided longer ago than their retention (decided).",
                                     ["why"], registry=registry)
        self.purge_feedback = Counter("sekat_purge_feedback_records_total",
                                      "Institutions' feedback records naming a purged entry that the purge "
                                      "tombstoned (tombstone) or wrote again without it for the other entries of "
                                      "their command (rewritten).", ["written"], registry=registry)
        self.purge_errors = Counter("sekat_purge_errors_total",
                                    "Purge runs that failed (Redis or Kafka unavailable) and will be retried.",
                                    registry=registry)
        # Pre-resolved children: the hot path never calls .labels().
        self.events_by = {(s, o): self.events.labels(s, o) for s in STREAMS for o in OUTCOMES}
        self.lookups_by = {r: self.lookups.labels(r) for r in LOOKUP_RESULTS}
        self.latency_by = {s: self.decision_latency.labels(s) for s in STREAMS}
        self.processing_by = {s: self.processing.labels(s) for s in STREAMS}
        self.last_batch_by = {s: self.last_batch.labels(s) for s in STREAMS}
        # Rules and policy. Label values are bounded: rule ids from the registry, two modes.
        self.rule_matches = Counter("sekat_rule_matches_total",
                                    "Rule findings written to decisions, by rule id and mode (enforce or shadow).",
                                    ["rule", "mode"], registry=registry)
        self.rule_errors = Counter("sekat_rule_errors_total",
                                   "Rule evaluations that raised (the event is still decided by the other rules).",
                                   ["rule"], registry=registry)
        self.rule_state_errors = Counter("sekat_rule_state_errors_total",
                                         "Batches whose rule-state read or write in Redis failed and was retried.",
                                         registry=registry)
        self.rule_state_degraded = Counter("sekat_rule_state_degraded_batches_total",
                                           "Batches decided without rule state, or whose state updates were dropped, "
                                           "because Redis stayed unavailable.", registry=registry)
        self.policy_reloads = Counter("sekat_policy_reloads_total",
                                      "Policy file changes seen by the worker, by result (applied or refused).",
                                      ["result"], registry=registry)
        self.deadletters_by = {(s, r): self.deadletters.labels(s, r) for s in STREAMS for r in deadletter_reasons}
        self._commands_by: dict[tuple[Action, str], Any] = {}
        self._institutions: set[str] = set()
        self._partitions: set[tuple[str, str]] = set()

    def count_commands(self, commands: Iterable[Command]) -> None:
        """Count a batch's acknowledged commands: one ``inc`` per (action, institution) present."""
        tally: dict[tuple[Action, str], int] = {}
        for command in commands:
            key = (command.action, command.institution)
            tally[key] = tally.get(key, 0) + 1
        for key, n in tally.items():
            child = self._commands_by.get(key)
            if child is None:
                child = self._command_child(*key)
            child.inc(n)

    def _command_child(self, action: Action, institution: str) -> Any:
        if institution not in self._institutions and len(self._institutions) >= MAX_INSTITUTIONS:
            return self.commands.labels(action.value, OTHER_INSTITUTION)  # not cached: the cache stays bounded
        self._institutions.add(institution)
        child = self.commands.labels(action.value, institution)
        self._commands_by[action, institution] = child
        return child

    def follow_stalls(self, streams: Iterable[str], stalled_for: Callable[[str], float],
                      is_stalled: Callable[[str], bool]) -> None:
        """The stall gauges of ``streams``, read from their consumer's progress (screening, or the reports
        intake) at each scrape."""
        for stream in streams:
            self.stalled_seconds.labels(stream).set_function(lambda s=stream: stalled_for(s))
            self.stalled.labels(stream).set_function(lambda s=stream: float(is_stalled(s)))

    def set_blocklist_counts(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Publish the entry counts (``Replica.entry_counts``); every kind x status is set, missing ones to 0."""
        for kind in BLOCKLIST_KINDS:
            for status in BLOCKLIST_STATUSES:
                self.blocklist_entries.labels(kind, status).set(counts.get((kind, status), 0))
        for (kind, status), n in counts.items():
            if kind not in BLOCKLIST_KINDS or status not in BLOCKLIST_STATUSES:
                self.blocklist_entries.labels(kind, status).set(n)
        self.blocklist_counted.set(time.time())

    def clear_blocklist_counts(self) -> None:
        self.blocklist_entries.clear()

    def set_consumer_offsets(self, offsets: Mapping[tuple[str, int], tuple[int, int]]) -> None:
        """Publish (end offset, committed offset) per assigned partition; drop partitions no longer assigned."""
        current = set()
        for (topic, partition), (end, committed) in offsets.items():
            labels = (topic, str(partition))
            current.add(labels)
            self.end_offset.labels(*labels).set(end)
            self.consumer_lag.labels(*labels).set(max(0, end - committed))
        for labels in self._partitions - current:
            self.end_offset.remove(*labels)
            self.consumer_lag.remove(*labels)
        self._partitions = current
