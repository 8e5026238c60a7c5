"""A worker started while Redis is down screens once Redis answers, without a restart.

Given Redis down when a worker starts (its replica cannot be loaded), when Redis comes up and a caller is
listed through ``sekat.reports``, then the worker loads its replica and blocks the caller's call.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
import redis as sync_redis

from sekat.localstack.processes import free_port
from sekat.localstack.redis_servers import RedisServer
from sekat.records import iso
from tests.support import Collector, Producer, Stack, WorkerProcess, isolated_env, unique, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

LISTED = "+60155555555"


@pytest.fixture
def late_redis(tmp_path: Path) -> Iterator[RedisServer]:
    redis = RedisServer(tmp_path / "redis", free_port())  # started by the test
    try:
        yield redis
    finally:
        redis.stop()


def test_a_worker_started_while_redis_is_down_screens_once_it_is_up(
        stack: Stack, logs_dir: Path, late_redis: RedisServer) -> None:
    name = unique("noredis")
    worker = WorkerProcess(isolated_env(stack, name, SEKAT_REDIS_URL=late_redis.url),
                           logs_dir / f"{name}.log").start()
    s = worker.settings
    producer = Producer(s)
    collector = Collector(s, [s.topic_block])
    try:
        time.sleep(3)  # the replica's first load fails meanwhile
        assert not late_redis.running()
        late_redis.start()
        index = sync_redis.Redis.from_url(late_redis.url)
        producer.send(s.topic_reports, {"report_id": f"r-{uuid.uuid4().hex[:8]}",
                                        "reported_at": iso(datetime.now(timezone.utc)), "kind": "phone",
                                        "value": LISTED, "status": "confirmed", "source": "PDRM", "case_ref": "KL/5",
                                        "reason": "scam caller"}, key=f"phone:{LISTED}".encode())
        wait_until("the report applied to the index", lambda: index.get(f"{s.redis_prefix}bl:phone:{LISTED}"),
                   bool, timeout=60)
        index.close()
        event = {"event_id": unique("c-"), "occurred_at": iso(datetime.now(timezone.utc)), "call_id": "n1",
                 "operator": "CELCOM", "caller": LISTED, "callee": "+60123000003"}
        producer.send(s.topic_calls, event)
        collector.wait_for(lambda r: r.json.get("event_id") == event["event_id"], timeout=40)
    finally:
        collector.close()
        producer.close()
        worker.stop()
