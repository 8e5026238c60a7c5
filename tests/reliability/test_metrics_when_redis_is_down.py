"""Redis goes away: the worker keeps deciding on its local replica, and the metrics say so.

Given a worker on its own Redis with a listed caller, when that Redis stops and
calls keep arriving, then the calls are still decided from the replica (the
listed caller is still blocked, its evidence marked as coming from the
replica), the lag drains, and the staleness gauge grows past the seconds Redis
has been gone and /healthz says 503 — which is what SekatBlocklistStale alerts
on. Rule state cannot be read meanwhile, and the degraded-batches counter says
so. When Redis is back, staleness drops and /healthz is 200 again.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from sekat.localstack import RedisServer, free_port
from sekat.records import iso
import asyncio

from blocklist.store import BlocklistStore
from sekat.records import Status
from tests.support import file_report, Collector, Producer, Stack, WorkerProcess, for_event, isolated_env, unique

pytestmark = pytest.mark.integration


def sample(worker: WorkerProcess, pattern: str) -> float:
    """Sum of the samples on the worker's /metrics whose line starts with ``pattern`` (a regex)."""
    status, page = worker.get("/metrics")
    assert status == 200
    return sum(float(m.group(1)) for m in re.finditer(rf"^{pattern}\S* (\S+)$", page.decode(), re.M))


def wait(what: str, read: Callable[[], float], pred: Callable[[float], bool], timeout: float = 30.0) -> float:
    deadline = time.monotonic() + timeout
    value = read()
    while not pred(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still {value} after {timeout}s")
        time.sleep(0.3)
        value = read()
    return value


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    redis = RedisServer(tmp_path / "redis", free_port())
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()


def test_staleness_lag_and_health_report_a_redis_outage_and_the_recovery(
        stack: Stack, logs_dir: Path, own_redis: RedisServer) -> None:
    name = unique("rdown")
    env = isolated_env(stack, name, SEKAT_REDIS_URL=own_redis.url, SEKAT_METRICS_INTERVAL_S="1")
    worker = WorkerProcess(env, logs_dir / f"{name}.log").start()
    producer = Producer(worker.settings)
    collector = Collector(worker.settings, [worker.settings.topic_block])

    async def list_caller() -> None:
        store = BlocklistStore.from_url(own_redis.url, worker.settings.redis_prefix)
        await file_report(store, "phone:+60199999999", Status.CONFIRMED, "PDRM", "scam caller", "KL/1")
        await store.close()
    asyncio.run(list_caller())
    worker.wait_replica()
    calls = worker.settings.topic_calls
    events = lambda: sample(worker, r'sekat_events_total\{outcome="ALLOW",stream="calls"\}')  # noqa: E731
    lag = lambda: sample(worker, rf'sekat_consumer_lag_messages\{{partition="\d+",topic="{re.escape(calls)}"\}}')  # noqa: E731
    staleness = lambda: sample(worker, "sekat_blocklist_replica_staleness_seconds")  # noqa: E731

    def send(n: int) -> None:
        for i in range(n):
            producer.send(calls, {"event_id": unique("c-"), "occurred_at": iso(datetime.now(timezone.utc)),
                                  "call_id": f"x{i}", "operator": "CELCOM", "caller": f"+601234{i:05d}",
                                  "callee": "+60123456780"})
    try:
        send(5)
        wait("events before the outage", events, lambda v: v == 5)
        assert staleness() < 3
        ends_before = sample(worker, rf'sekat_consumer_end_offset\{{partition="\d+",topic="{re.escape(calls)}"\}}')

        own_redis.stop()
        down_at = time.monotonic()
        send(20)
        listed_call = unique("c-listed-")
        producer.send(calls, {"event_id": listed_call, "occurred_at": iso(datetime.now(timezone.utc)),
                              "call_id": "listed", "operator": "CELCOM", "caller": "019-999 9999",
                              "callee": "+60123456780"})
        # Still deciding, on the replica: the clean calls are allowed and the listed caller is blocked.
        wait("events while Redis is down", events, lambda v: v == 25)
        [blocked] = collector.wait_for(for_event(listed_call), timeout=30)
        assert blocked.json["action"] == "BLOCK_CALL"
        assert "PDRM KL/1" in blocked.json["reasons"][0]  # listed after start: the replica holds the evidence
        wait("lag while Redis is down", lag, lambda v: v == 0)
        wait("end offsets while Redis is down",
             lambda: sample(worker, rf'sekat_consumer_end_offset\{{partition="\d+",topic="{re.escape(calls)}"\}}'),
             lambda v: v >= ends_before + 21)
        # ... and says how old its knowledge is.
        wait("staleness while Redis is down", staleness, lambda v: v > 4)
        assert staleness() <= time.monotonic() - down_at + 2  # it counts from the last answer, not from start
        assert worker.get("/healthz")[0] == 503
        assert sample(worker, "sekat_rule_state_degraded_batches_total") > 0

        own_redis.start()
        wait("staleness after recovery", staleness, lambda v: v < 3)
        assert worker.get("/healthz")[0] == 200
        send(3)
        wait("events after recovery", events, lambda v: v == 28)
    finally:
        collector.close()
        producer.close()
        worker.stop()
