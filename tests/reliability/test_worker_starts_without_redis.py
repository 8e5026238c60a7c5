"""A worker started while Redis is down screens once Redis answers, without a restart, and meanwhile from
its replica's disk copy when it has one.

Given Redis down when a worker starts (its replica cannot be loaded), when Redis comes up and a caller is
listed through ``sekat.reports``, then the worker loads its replica and blocks the caller's call. Given a
worker that ran once with Redis up (its disk copy written), when it starts again with Redis stopped or hung,
then it blocks listed callers from the disk copy, says so in /healthz, and once Redis answers takes up the
change stream, so that a report filed during the outage takes effect.
"""

from __future__ import annotations

import os
import signal
import stat
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest
import redis as sync_redis

from sekat.blocklist.replica_disk import file_name
from sekat.localstack.processes import free_port
from sekat.localstack.redis_servers import RedisServer
from sekat.records import iso
from sekat.settings import Settings
from sekat.streams.topics import create_topics
from tests.support import Collector, Producer, Stack, WorkerProcess, isolated_env, unique, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

LISTED = "+60155555555"
LATER = "+60155555566"


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
    worker = WorkerProcess(isolated_env(stack, name, SEKAT_REDIS_URL=late_redis.url, SEKAT_REPLICA_DISK_DIR=""),
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


def _report(producer: Producer, s: Settings, phone: str, case_ref: str) -> None:
    producer.send(s.topic_reports, {"report_id": f"r-{uuid.uuid4().hex[:8]}",
                                    "reported_at": iso(datetime.now(timezone.utc)), "kind": "phone", "value": phone,
                                    "status": "confirmed", "source": "PDRM", "case_ref": case_ref,
                                    "reason": "scam caller"}, key=f"phone:{phone}".encode())


def _call(producer: Producer, s: Settings, caller: str) -> str:
    event = {"event_id": unique("c-"), "occurred_at": iso(datetime.now(timezone.utc)), "call_id": unique("n"),
             "operator": "CELCOM", "caller": caller, "callee": "+60123000003"}
    producer.send(s.topic_calls, event)
    return str(event["event_id"])


def _health(worker: WorkerProcess) -> tuple[int, dict]:
    status, body = worker.get("/healthz")
    return status, orjson.loads(body)


def _worker_with_a_disk_copy(stack: Stack, logs_dir: Path, redis: RedisServer, name: str,
                             producer_box: list[Producer]) -> tuple[dict[str, str], Path]:
    """A worker run once with Redis up: LISTED reported, the index built, the snapshot stored and copied to
    disk; then stopped. The environment (same app id, so the same data directory) and the copy's path."""
    env = isolated_env(stack, name, SEKAT_REDIS_URL=redis.url)
    s = Settings.from_environ(env)
    producer = Producer(s)
    producer_box.append(producer)
    create_topics(s)
    _report(producer, s, LISTED, "KL/1")  # in the topic before the index is built: the replay lists it
    first = WorkerProcess(env, logs_dir / f"{name}-first.log").start()
    path = s.replica_disk_path() / file_name(s.redis_prefix)
    try:
        # the stored snapshot is written by the first background check after the index is built (15 s)
        wait_until("the replica's disk copy written", path.exists, bool, timeout=60)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    finally:
        first.stop()
    return env, path


def test_a_worker_started_while_redis_is_down_screens_from_its_disk_copy_then_takes_up_redis(
        stack: Stack, logs_dir: Path, tmp_path: Path) -> None:
    """Redis stopped (it comes back empty): listed calls are blocked from the disk copy; once Redis is back
    and the index rebuilt from the topic, a report filed during the outage takes effect."""
    name = unique("diskcopy")
    redis = RedisServer(tmp_path / "redis", free_port())
    redis.start()
    producers: list[Producer] = []
    worker = None
    collector = None
    try:
        env, path = _worker_with_a_disk_copy(stack, logs_dir, redis, name, producers)
        producer = producers[0]
        s = Settings.from_environ(env)
        collector = Collector(s, [s.topic_block])
        redis.stop()
        worker = WorkerProcess(env, logs_dir / f"{name}.log").start()
        listed = _call(producer, s, LISTED)
        blocked = collector.wait_for(lambda r: r.json.get("event_id") == listed, timeout=40)
        assert blocked[0].json["action"] == "BLOCK_CALL"
        status, body = _health(worker)
        assert status == 503 and body["status"] == "degraded" and body["redis"] is False
        assert body["replica_from_disk"] is True and body["replica_loaded_from"] == "disk copy"
        # staleness counts from when the copy was taken (its file is written just after), less the follow
        # task's 1 s of blocking read
        assert body["replica_staleness_seconds"] >= time.time() - path.stat().st_mtime - 2
        assert worker.sample("sekat_blocklist_replica_staleness_seconds") >= body["replica_staleness_seconds"] - 1

        _report(producer, s, LATER, "KL/2")  # filed while Redis is down: waits in the topic
        redis.start()  # empty: the index is replayed from sekat.reports, the replica re-reads it
        wait_until("the worker following Redis again", lambda: _health(worker),
                   lambda v: v[0] == 200 and not v[1]["replica_from_disk"], timeout=60)
        worker.wait_replica()
        later = _call(producer, s, LATER)
        collector.wait_for(lambda r: r.json.get("event_id") == later, timeout=40)
        assert "screening from the blocklist replica's disk copy" in worker.log_tail(200_000)
    finally:
        if collector is not None:
            collector.close()
        for p in producers:
            p.close()
        if worker is not None:
            worker.stop()
        redis.stop()


def test_a_worker_started_while_redis_hangs_follows_the_change_stream_from_its_disk_copy(
        stack: Stack, logs_dir: Path, tmp_path: Path) -> None:
    """Redis hung (SIGSTOP: it keeps its data): the worker screens from its disk copy after one screening
    timeout, and once Redis answers follows the change stream from the copy's change id, without re-reading
    the index; a report filed while Redis hung then takes effect."""
    name = unique("diskhang")
    redis = RedisServer(tmp_path / "redis", free_port())
    redis.start()
    pid = int(redis.pid_file.read_text())
    producers: list[Producer] = []
    worker = None
    collector = None
    hung = False
    try:
        env, _ = _worker_with_a_disk_copy(stack, logs_dir, redis, name, producers)
        producer = producers[0]
        s = Settings.from_environ(env)
        collector = Collector(s, [s.topic_block])
        os.kill(pid, signal.SIGSTOP)
        hung = True
        worker = WorkerProcess(env, logs_dir / f"{name}.log").start()
        listed = _call(producer, s, LISTED)
        collector.wait_for(lambda r: r.json.get("event_id") == listed, timeout=40)
        assert _health(worker)[1]["replica_from_disk"] is True

        _report(producer, s, LATER, "KL/3")
        os.kill(pid, signal.SIGCONT)
        hung = False
        wait_until("the worker following Redis again", lambda: _health(worker),
                   lambda v: v[0] == 200 and not v[1]["replica_from_disk"], timeout=60)
        later = _call(producer, s, LATER)
        collector.wait_for(lambda r: r.json.get("event_id") == later, timeout=40)
        log = worker.log_tail(200_000)
        assert "caught up from its disk copy" in log and "re-reading the index" not in log
    finally:
        if hung:
            os.kill(pid, signal.SIGCONT)
        if collector is not None:
            collector.close()
        for p in producers:
            p.close()
        if worker is not None:
            worker.stop()
        redis.stop()
