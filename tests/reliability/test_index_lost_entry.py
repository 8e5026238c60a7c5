"""The index loses entries while it stays marked built (a failover that dropped recent writes).

A hit: given a worker and a caller listed through ``sekat.reports``, when the caller's entry is deleted
from Redis behind the worker's back and the ``index:built`` marker is kept, then the caller's next call is
still blocked (from the worker's replica), and within seconds the index is replayed from the topic: the
entry is back in Redis, under a new build, and /healthz counts the rebuild.

No hit: given two workers and entries listed through ``sekat.reports``, when one entry nobody calls from is
lost with its count (the write and its INCRBY are one MULTI, so a failover drops both), then within seconds
a replica finds it holds more entries than the index counts, the index is replayed, the entry is back, and
``sekat_index_replays_total{cause="lost_count"}`` and the log say so.

A healthy index: under steady report traffic (new entries, updates, revocations) with two workers
following, no replay is ever made, and the count equals the entries in Redis.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest
import redis as sync_redis

from sekat.localstack.processes import free_port

from sekat.records import iso
from tests.support import (
    Collector,
    Producer,
    Stack,
    WorkerProcess,
    index_entries,
    isolated_env,
    report_body,
    report_key,
    unique,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]
REPLAYS = r'sekat_index_replays_total\{cause="lost_'  # either cause of a loss

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
        # A new build (every replica re-reads the index); its marker is written once the replay is done.
        wait_until("the index marked rebuilt", lambda: index.get(marker), lambda m: m not in (None, build))
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


def test_an_entry_nobody_asks_about_lost_with_its_count_is_noticed_and_replayed(stack: Stack,
                                                                                  logs_dir: Path) -> None:
    name = unique("lostn")
    env = isolated_env(stack, name)
    workers = [WorkerProcess(dict(env, SEKAT_WEB_PORT=str(free_port())), logs_dir / f"{name}-{i}.log").start()
               for i in range(2)]
    s = workers[0].settings
    producer = Producer(s)
    index = sync_redis.Redis.from_url(s.redis_url)
    marker, count = f"{s.redis_prefix}index:built", f"{s.redis_prefix}index:entries"
    reports = [report_body("phone", f"+6017700{i:04d}", case_ref=f"KL/{i}") for i in range(20)]
    unasked = f"{s.redis_prefix}bl:phone:+60177000007"
    try:
        for report in reports:
            producer.send(s.topic_reports, report, key=report_key(report))
        wait_until("the reports applied", lambda: len(index_entries(s)), lambda n: n == len(reports))
        for worker in workers:
            worker.wait_replica()
        assert int(index.get(count)) == len(reports)
        build = index.get(marker)

        with index.pipeline(transaction=True) as pipe:  # what a failover to a replica that missed the write leaves
            pipe.delete(unasked)
            pipe.decrby(count, 1)
            pipe.execute()
        lost_at = time.monotonic()
        wait_until("the lost entry replayed from the topic", lambda: index.get(unasked), bool, timeout=30)
        noticed_in = time.monotonic() - lost_at
        assert orjson.loads(index.get(unasked))["case_ref"] == "KL/7"
        assert index.get(marker) not in (None, build)
        assert int(index.get(count)) == len(reports)
        wait_until("the replay counted", lambda: sum(w.sample(r'sekat_index_replays_total\{cause="lost_count"\}')
                                                      for w in workers), lambda n: n == 1)
        assert any("entries lost" in w.log_tail(50_000) for w in workers)
        time.sleep(3)  # the replicas re-read the rebuilt index and compare again: no second replay
        assert sum(w.sample(REPLAYS) for w in workers) == 1
        print(f"\nlost with its count: entry back in Redis {noticed_in:.1f}s after the loss")
    finally:
        index.close()
        producer.close()
        for worker in workers:
            worker.stop()


def test_a_healthy_index_under_steady_report_traffic_is_never_replayed(stack: Stack, logs_dir: Path) -> None:
    name = unique("healthy")
    env = isolated_env(stack, name)
    workers = [WorkerProcess(dict(env, SEKAT_WEB_PORT=str(free_port())), logs_dir / f"{name}-{i}.log").start()
               for i in range(2)]
    s = workers[0].settings
    producer = Producer(s)
    index = sync_redis.Redis.from_url(s.redis_url)
    phones = [f"+6017800{i:04d}" for i in range(150)]
    try:
        deadline = time.monotonic() + 20
        sent = 0
        while time.monotonic() < deadline:  # ~40 reports a second: new entries, more filings, revocations
            phone = phones[sent % len(phones)]
            status = "revoked" if sent % 7 == 6 else ("confirmed" if sent % 3 else "reported")
            report = report_body("phone", phone, status=status, source="NSRC" if status == "revoked" else "PDRM")
            producer.send(s.topic_reports, report, key=report_key(report))
            sent += 1
            time.sleep(0.025)
        wait_until("every report applied", lambda: len(index_entries(s)), lambda n: n == len(phones))
        for worker in workers:
            worker.wait_replica()
        time.sleep(2)  # a few more follow steps comparing the count
        assert sum(w.sample(REPLAYS) for w in workers) == 0
        assert not any("entries lost" in w.log_tail(200_000) for w in workers)
        assert int(index.get(f"{s.redis_prefix}index:entries")) == len(phones)
        print(f"\nhealthy: {sent} reports over 20 s, no replay")
    finally:
        index.close()
        producer.close()
        for worker in workers:
            worker.stop()


def test_a_worker_started_after_a_loss_notices_it(stack: Stack, logs_dir: Path) -> None:
    """The loss happens while no worker runs; the next worker starts from the replica copy stored before it
    (a worker that read the index stored it), holds the entry, and finds the index counting one fewer."""
    name = unique("lostw")
    env = isolated_env(stack, name)
    worker = WorkerProcess(env, logs_dir / f"{name}.log").start()
    s = worker.settings
    producer = Producer(s)
    index = sync_redis.Redis.from_url(s.redis_url)
    count = f"{s.redis_prefix}index:entries"
    reports = [report_body("phone", f"+6017900{i:04d}", case_ref=f"KL/{i}") for i in range(5)]
    lost = f"{s.redis_prefix}bl:phone:+60179000003"
    try:
        for report in reports:
            producer.send(s.topic_reports, report, key=report_key(report))
        wait_until("the reports applied", lambda: len(index_entries(s)), lambda n: n == len(reports))
        worker.wait_replica()
        worker.stop()
        worker = WorkerProcess(env, logs_dir / f"{name}-2.log").start()  # reads the index, stores a copy
        wait_until("the replica copy stored", lambda: worker.log_tail(50_000),
                   lambda log: "stored the replica snapshot: 5 entries" in log)
        worker.stop()
        with index.pipeline(transaction=True) as pipe:
            pipe.delete(lost)
            pipe.decrby(count, 1)
            pipe.execute()
        worker = WorkerProcess(env, logs_dir / f"{name}-3.log").start()
        wait_until("the lost entry replayed from the topic", lambda: index.get(lost), bool, timeout=30)
        wait_until("the replay counted", lambda: worker.sample(r'sekat_index_replays_total\{cause="lost_count"\}'),
                   lambda n: n == 1)
        assert int(index.get(count)) == len(reports)
    finally:
        index.close()
        producer.close()
        worker.stop()
