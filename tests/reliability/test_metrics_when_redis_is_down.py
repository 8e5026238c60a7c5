"""The metrics tell the truth when Redis goes away.

Given a worker on its own Redis, when that Redis stops and calls keep arriving,
then the staleness gauge grows past the seconds Redis has been gone, /healthz
says 503, the calls are not decided (events stay flat) and the consumer lag and
end offsets show them waiting, which is what SekatBlocklistStale,
SekatThroughputZero and SekatConsumerLagGrowing alert on. When Redis is back,
staleness drops, the waiting calls are decided and the lag returns to zero.
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
from tests.support import Producer, Stack, WorkerProcess, isolated_env, unique

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
        wait("staleness while Redis is down", staleness, lambda v: v > 4)
        assert staleness() <= time.monotonic() - down_at + 2  # it counts from the last answer, not from start
        assert worker.get("/healthz")[0] == 503
        wait("lag while Redis is down", lag, lambda v: v >= 20)
        wait("end offsets while Redis is down",
             lambda: sample(worker, rf'sekat_consumer_end_offset\{{partition="\d+",topic="{re.escape(calls)}"\}}'),
             lambda v: v >= ends_before + 20)
        assert events() == 5  # nothing is decided without the blocklist
        assert sample(worker, "sekat_blocklist_lookup_errors_total") > 0

        own_redis.start()
        wait("events after recovery", events, lambda v: v == 25)
        wait("staleness after recovery", staleness, lambda v: v < 3)
        wait("lag after recovery", lag, lambda v: v == 0)
        assert worker.get("/healthz")[0] == 200
    finally:
        producer.close()
        worker.stop()
