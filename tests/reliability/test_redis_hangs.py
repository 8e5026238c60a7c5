"""Redis hangs instead of refusing (SIGSTOP: a stopped process, as a network black hole looks).

A refusing Redis fails a command at once; a hung one makes the client wait for its socket timeout. Given
``SEKAT_REDIS_TIMEOUT_MS``, a command to a hung Redis fails within about that long, and a worker keeps
deciding listed calls from its replica with each batch delayed about that long at most. A report that
arrives while Redis hangs waits (its batch retried, nothing committed): after ``SEKAT_STALL_AFTER_S`` the
worker's ``/healthz`` names the ``reports`` stream stalled, and once Redis answers again the report is
applied and the stream leaves ``stalled``.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest

from sekat.blocklist.connection import async_client
from sekat.blocklist.store import BlocklistStore
from sekat.localstack.processes import free_port
from sekat.localstack.redis_servers import RedisServer
from sekat.records import iso
from tests.support import (
    Collector, Producer, Stack, WorkerProcess, isolated_env, list_phone, report_body, report_key, unique, wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

LISTED = "+60177777777"
TIMEOUT_MS = 300  # the worker's SEKAT_REDIS_TIMEOUT_MS here
DEFAULT_TIMEOUT_MS = 500  # its default


class HungRedis:
    """A real redis-server that ``hang`` stops with SIGSTOP; it is continued again however the test ends."""

    def __init__(self, server: RedisServer) -> None:
        self.server = server
        self.pid = int(server.pid_file.read_text())
        self.stopped = False

    def hang(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)
        self.stopped = True

    def resume(self) -> None:
        if self.stopped:
            os.kill(self.pid, signal.SIGCONT)
            self.stopped = False


@pytest.fixture
def hung_redis(tmp_path: Path) -> Iterator[HungRedis]:
    server = RedisServer(tmp_path / "redis", free_port())
    server.start()
    hung = HungRedis(server)
    try:
        yield hung
    finally:
        hung.resume()  # a stopped process would not stop on SIGTERM
        server.stop()


def test_a_command_to_a_hung_redis_fails_within_the_default_timeout(hung_redis: HungRedis) -> None:
    async def go() -> float:
        client = async_client(hung_redis.server.url)  # as every store makes its client
        await client.set("k", "v")  # connected while Redis answers
        hung_redis.hang()
        started = time.monotonic()
        with pytest.raises(Exception) as caught:
            await asyncio.wait_for(client.mget(["k"]), 10)  # the test's own bound, far past the timeout
        assert "Timeout" in type(caught.value).__name__
        took = time.monotonic() - started
        hung_redis.resume()
        await client.aclose()
        return took

    took = asyncio.run(go())
    assert took < DEFAULT_TIMEOUT_MS / 1000 + 0.3, f"a command to a hung Redis took {took:.2f}s"


def test_a_health_probe_of_a_hung_redis_answers_false_within_its_own_bound(hung_redis: HungRedis) -> None:
    """The store's command timeout is seconds (batches of reports, imports); /healthz asks ``ping`` and must
    answer inside its caller's patience, not the store's timeout."""
    async def go() -> tuple[bool, bool, float]:
        store = BlocklistStore.from_url(hung_redis.server.url)
        up = await store.ping()
        hung_redis.hang()
        started = time.monotonic()
        down = await asyncio.wait_for(store.ping(within_s=0.5), 10)  # the test's own bound
        took = time.monotonic() - started
        hung_redis.resume()
        await store.close()
        return up, down, took

    up, down, took = asyncio.run(go())
    assert up is True and down is False
    assert took < 1.5, f"a probe of a hung Redis took {took:.2f}s"


def test_a_worker_decides_listed_calls_from_its_replica_while_redis_hangs(
        stack: Stack, logs_dir: Path, hung_redis: HungRedis) -> None:
    name = unique("rhang")
    env = isolated_env(stack, name, SEKAT_REDIS_URL=hung_redis.server.url, SEKAT_REDIS_TIMEOUT_MS=str(TIMEOUT_MS))
    worker = WorkerProcess(env, logs_dir / f"{name}.log").start()
    s = worker.settings
    producer = Producer(s)
    collector = Collector(s, [s.topic_block])
    try:
        list_phone(s, LISTED, "KL/9")
        worker.wait_replica()
        warm = unique("c-")
        producer.send(s.topic_calls, {"event_id": warm, "occurred_at": _now(), "call_id": "w", "operator": "CELCOM",
                                      "caller": LISTED, "callee": "+60123000001"})
        collector.wait_for(lambda r: r.json.get("event_id") == warm, timeout=30)

        hung_redis.hang()
        sent: dict[str, float] = {}
        for i in range(12):  # one call every 0.5 s for 6 s: several batches, well past redis-py's old 6 s
            event_id = unique("c-")
            sent[event_id] = time.time()
            producer.send(s.topic_calls, {"event_id": event_id, "occurred_at": _now(), "call_id": f"h{i}",
                                          "operator": "CELCOM", "caller": LISTED, "callee": f"+60123{i:06d}"})
            time.sleep(0.5)
        blocked = collector.wait_for(lambda r: r.json.get("event_id") in sent, count=len(sent), timeout=30)
        delays = sorted(r.timestamp_ms / 1000 - sent[r.json["event_id"]] for r in blocked)
        assert all(r.json["action"] == "BLOCK_CALL" for r in blocked)
        # A batch pays at most about one timeout (evidence or rule state, then Redis is not asked for 2 s),
        # plus the rule-state retries' backoff (~0.35 s) and scheduling on a shared machine.
        assert delays[-1] < TIMEOUT_MS / 1000 + 1.2, f"call decided {delays[-1]:.2f}s after it was sent: {delays}"
        print(f"\nRedis hung: {len(sent)} listed calls blocked, {delays[0]:.2f}-{delays[-1]:.2f}s after they were sent")
    finally:
        hung_redis.resume()
        collector.close()
        producer.close()
        worker.stop()


def test_reports_waiting_on_a_hung_redis_make_the_reports_stream_stalled_until_it_answers(
        stack: Stack, logs_dir: Path, hung_redis: HungRedis) -> None:
    stall_after_s = 3
    name = unique("rstall")
    env = isolated_env(stack, name, SEKAT_REDIS_URL=hung_redis.server.url, SEKAT_REDIS_TIMEOUT_MS=str(TIMEOUT_MS),
                       SEKAT_METRICS_INTERVAL_S="1", SEKAT_STALL_AFTER_S=str(stall_after_s))
    worker = WorkerProcess(env, logs_dir / f"{name}.log").start()
    s = worker.settings
    producer = Producer(s)
    applied = lambda: worker.sample("sekat_reports_applied_total")  # noqa: E731

    def health() -> tuple[int, list[str]]:
        status, body = worker.get("/healthz")
        return status, orjson.loads(body)["stalled"]

    try:
        worker.wait_replica()
        first = report_body("phone", "+60177700001", case_ref="KL/1")
        producer.send(s.topic_reports, first, key=report_key(first))
        wait_until("the first report applied", applied, lambda v: v == 1)
        time.sleep(stall_after_s + 1)  # idle past the stall time: the intake has nothing waiting
        assert health() == (200, [])

        hung_redis.hang()
        second = report_body("phone", "+60177700002", case_ref="KL/2")
        producer.send(s.topic_reports, second, key=report_key(second))
        sent_at = time.monotonic()
        wait_until("/healthz naming the reports stream", health, lambda v: v == (503, ["reports"]),
                   timeout=stall_after_s + 8, every=0.2)
        noticed_in = time.monotonic() - sent_at
        assert noticed_in > stall_after_s - 1
        assert worker.sample(r'sekat_stream_stalled\{stream="reports"\}') == 1
        assert worker.sample(r'sekat_stream_stalled\{stream="calls"\}') == 0
        assert applied() == 1 and worker.alive()

        hung_redis.resume()
        resumed_at = time.monotonic()
        wait_until("the second report applied once Redis answers", applied, lambda v: v == 2, timeout=30)
        wait_until("/healthz once Redis answers", health, lambda v: v == (200, []), timeout=30)
        recovered_in = time.monotonic() - resumed_at
        assert worker.sample(r'sekat_stream_stalled\{stream="reports"\}') == 0
        reports = re.escape(s.topic_reports)
        wait_until("reports lag after Redis answers",
                   lambda: worker.sample(rf'sekat_consumer_lag_messages\{{partition="\d+",topic="{reports}"\}}'),
                   lambda v: v == 0, timeout=30)
        print(f"\nreports stall: /healthz named reports stalled {noticed_in:.1f}s after the report arrived on a hung "
              f"Redis (SEKAT_STALL_AFTER_S={stall_after_s}); healthy again {recovered_in:.1f}s after Redis answered")
    finally:
        hung_redis.resume()
        producer.close()
        worker.stop()


def _now() -> str:
    return iso(datetime.now(timezone.utc))
