"""Worker metrics: bounded labels, gauges that drop what is gone, staleness that grows when nothing answers."""

from __future__ import annotations

from datetime import datetime, timezone

from prometheus_client import CollectorRegistry

from sekat.metrics.worker import MAX_INSTITUTIONS, Freshness, WorkerMetrics
from sekat.records import Action, Command

NOW = datetime(2026, 11, 29, tzinfo=timezone.utc)


def cmd(action: Action, institution: str) -> Command:
    return Command(action, institution, "t", "e", "r", (), NOW)


def test_commands_are_counted_by_action_and_institution() -> None:
    registry = CollectorRegistry()
    m = WorkerMetrics(registry)
    m.count_commands([cmd(Action.HOLD_TRANSFER, "MBBEMYKL"), cmd(Action.FREEZE_ACCOUNT, "CIBBMYKL"),
                      cmd(Action.HOLD_TRANSFER, "MBBEMYKL")])
    m.count_commands([cmd(Action.BLOCK_CALL, "CELCOM")])
    value = registry.get_sample_value
    assert value("sekat_commands_total", {"action": "HOLD_TRANSFER", "institution": "MBBEMYKL"}) == 2
    assert value("sekat_commands_total", {"action": "FREEZE_ACCOUNT", "institution": "CIBBMYKL"}) == 1
    assert value("sekat_commands_total", {"action": "BLOCK_CALL", "institution": "CELCOM"}) == 1


def test_institution_values_are_capped_and_the_rest_counted_as_other() -> None:
    registry = CollectorRegistry()
    m = WorkerMetrics(registry)
    m.count_commands([cmd(Action.LABEL_CALL, f"OP{i}") for i in range(MAX_INSTITUTIONS + 25)])
    m.count_commands([cmd(Action.BLOCK_CALL, "OP0")])  # a known one keeps its own label
    family = next(f for f in registry.collect() if f.name == "sekat_commands")
    labels = {s.labels["institution"] for s in family.samples if s.name == "sekat_commands_total"}
    assert len(labels) == MAX_INSTITUTIONS + 1
    assert registry.get_sample_value("sekat_commands_total", {"action": "LABEL_CALL", "institution": "other"}) == 25
    assert registry.get_sample_value("sekat_commands_total", {"action": "BLOCK_CALL", "institution": "OP0"}) == 1


def test_dead_letter_reasons_and_outcomes_start_at_zero_so_rates_see_the_first_one() -> None:
    registry = CollectorRegistry()
    WorkerMetrics(registry, deadletter_reasons=("not_json", "invalid_phone"))
    assert registry.get_sample_value("sekat_deadletters_total", {"stream": "calls", "reason": "invalid_phone"}) == 0
    assert registry.get_sample_value("sekat_events_total", {"stream": "transfers", "outcome": "BLOCK"}) == 0


def test_blocklist_counts_set_every_kind_and_status() -> None:
    registry = CollectorRegistry()
    m = WorkerMetrics(registry)
    m.set_blocklist_counts({("phone", "confirmed"): 3, ("account", "expired"): 1})
    m.set_blocklist_counts({("phone", "confirmed"): 2})
    value = registry.get_sample_value
    assert value("sekat_blocklist_entries", {"kind": "phone", "status": "confirmed"}) == 2
    assert value("sekat_blocklist_entries", {"kind": "account", "status": "expired"}) == 0
    assert value("sekat_blocklist_entries", {"kind": "account", "status": "revoked"}) == 0


def test_lag_is_end_minus_committed_and_revoked_partitions_disappear() -> None:
    registry = CollectorRegistry()
    m = WorkerMetrics(registry)
    m.set_consumer_offsets({("calls", 0): (120, 100), ("calls", 1): (7, 7)})
    value = registry.get_sample_value
    assert value("sekat_consumer_lag_messages", {"topic": "calls", "partition": "0"}) == 20
    assert value("sekat_consumer_end_offset", {"topic": "calls", "partition": "0"}) == 120
    m.set_consumer_offsets({("calls", 1): (9, 8)})  # partition 0 moved to another worker
    assert value("sekat_consumer_lag_messages", {"topic": "calls", "partition": "0"}) is None
    assert value("sekat_consumer_lag_messages", {"topic": "calls", "partition": "1"}) == 1


def test_staleness_grows_until_the_blocklist_answers() -> None:
    now = [1000.0]
    fresh = Freshness(lambda: now[0])
    registry = CollectorRegistry()
    m = WorkerMetrics(registry, clock=lambda: now[0])
    now[0] += 42
    assert registry.get_sample_value("sekat_blocklist_replica_staleness_seconds") == 42
    m.freshness.mark()
    now[0] += 0.5
    assert registry.get_sample_value("sekat_blocklist_replica_staleness_seconds") == 0.5
    fresh.mark(at=now[0] + 10)  # a replica's clock slightly ahead never gives a negative age
    assert fresh.age() == 0


def test_target_and_worker_info() -> None:
    registry = CollectorRegistry()
    WorkerMetrics(registry, target_attempts=4_700_000_000, target_period_days=1095, app_id="sekat", version="9")
    assert registry.get_sample_value("sekat_target_attempts") == 4.7e9
    assert registry.get_sample_value("sekat_target_period_seconds") == 1095 * 86400
    assert registry.get_sample_value("sekat_worker_info", {"app_id": "sekat", "version": "9"}) == 1


def test_observe_many_exposes_what_one_observe_per_value_would() -> None:
    import numpy as np
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from sekat.metrics.worker import LATENCY_BUCKETS, observe_many

    values = np.array([0.0, 0.0005, 0.0007, 0.001, 0.0100001, 0.01, 3.0, 29.9, 30.0, 45.0, 1e-9, 0.25])
    one, many = CollectorRegistry(), CollectorRegistry()
    by_one = Histogram("sekat_x_seconds", "x", ["stream"], buckets=LATENCY_BUCKETS, registry=one).labels("calls")
    by_many = Histogram("sekat_x_seconds", "x", ["stream"], buckets=LATENCY_BUCKETS, registry=many).labels("calls")
    for v in values.tolist():
        by_one.observe(v)
    observe_many(by_many, values)
    observe_many(by_many, np.empty(0))

    def lines(registry: CollectorRegistry) -> list[bytes]:  # all but the creation time, which differs
        return [line for line in generate_latest(registry).splitlines() if b"_created" not in line]

    assert lines(many) == lines(one)
