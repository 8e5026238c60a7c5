"""The index loses an entry while it stays marked built (a failover that dropped recent writes).

Given a worker and a caller listed through ``sekat.reports``, when the caller's entry is deleted from Redis
behind the worker's back and the ``index:built`` marker is kept, then the caller's next call is still
blocked (from the worker's replica), and within seconds the index is replayed from the topic: the entry is
back in Redis, under a new build, and /healthz counts the rebuild.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest
import redis as sync_redis

from sekat.records import iso
from tests.support import Collector, Producer, Stack, WorkerProcess, isolated_env, unique, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

LISTED = "+60166666666"


def call(caller: str) -> dict[str, object]:
    return {"event_id": unique("c-"), "occurred_at": iso(datetime.now(timezone.utc)), "call_id": unique("x"),
            "operator": "CELCOM", "caller": caller, "callee": "+60123000002"}


def test_an_entry_lost_from_a_built_index_stays_blocked_and_is_replayed(stack: Stack, logs_dir: Path) -> None:
    name = unique("lost")
    worker = WorkerProcess(isolated_env(stack, name), logs_dir / f"{name}.log").start()
    s = worker.settings
    producer = Producer(s)
    collector = Collector(s, [s.topic_block])
    index = sync_redis.Redis.from_url(s.redis_url)
    key, marker = f"{s.redis_prefix}bl:phone:{LISTED}", f"{s.redis_prefix}index:built"
    blocked = lambda event: collector.wait_for(lambda r: r.json.get("event_id") == event["event_id"])  # noqa: E731
    try:
        producer.send(s.topic_reports, {"report_id": f"r-{uuid.uuid4().hex[:8]}",
                                        "reported_at": iso(datetime.now(timezone.utc)), "kind": "phone",
                                        "value": LISTED, "status": "confirmed", "source": "PDRM", "case_ref": "KL/7",
                                        "reason": "scam caller"}, key=f"phone:{LISTED}".encode())
        wait_until("the report applied to the index", lambda: index.get(key), bool)
        # A replica holds entries listed since it started in full (its overlay) and answers them without
        # Redis; the entries it loaded at start are a status only, re-read from Redis on a hit. A worker
        # started now holds the entry that way.
        worker.stop()
        worker = WorkerProcess(worker.env, logs_dir / f"{name}-2.log").start()
        worker.wait_replica()
        first = call(LISTED)
        producer.send(s.topic_calls, first)
        blocked(first)
        build = index.get(marker)
        assert build is not None

        index.delete(key)  # lost, with no change announced; the marker stays
        second = call(LISTED)
        producer.send(s.topic_calls, second)
        [command] = blocked(second)
        assert command.json["action"] == "BLOCK_CALL"

        wait_until("the lost entry replayed from the topic", lambda: index.get(key), bool, timeout=30)
        assert orjson.loads(index.get(key))["case_ref"] == "KL/7"
        assert index.get(marker) not in (None, build)  # a new build: every replica re-reads the index
        wait_until("the rebuild counted", lambda: orjson.loads(worker.get("/healthz")[1])["index_rebuilds"],
                   lambda n: n == 1)  # the loss (the first worker built the fresh prefix)
        third = call(LISTED)
        producer.send(s.topic_calls, third)
        blocked(third)
    finally:
        index.close()
        collector.close()
        producer.close()
        worker.stop()
