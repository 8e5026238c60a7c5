"""Redis stops for 10 s under traffic and comes back empty, as a restarted cache does.

Given a worker on its own Redis, a caller listed through ``sekat.reports`` and
calls arriving all the time (every fifth from the listed caller), when Redis
stops for 10 s and a second caller is reported on the topic meanwhile, then:

- the worker keeps deciding on its local replica: every call is decided, every
  call from the listed caller is blocked, the lag drains;
- the staleness gauge grows with the outage (past the seconds Redis has been
  gone; SekatBlocklistStale fires on it once it passes 30 s for a minute, which
  the promtool tests in metrics/prometheus/tests prove) and /healthz says 503;
  rule state cannot be read, and the degraded-batches counter says so;
- when Redis is back, empty, a worker rebuilds the index from ``sekat.reports``
  with no manual step: both reports are in it again, the one filed during the
  outage takes effect, staleness drops and /healthz is 200 again.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest
import redis as sync_redis
import yaml

from sekat.localstack.kafka_servers import REPO_ROOT
from sekat.localstack.processes import free_port
from sekat.localstack.redis_servers import RedisServer
from sekat.records import iso
from tests.support import Collector, Producer, Stack, Traffic, WorkerProcess, isolated_env, unique, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

LISTED = "+60199999999"  # reported on the topic before the outage
LATE = "+60188888888"  # reported on the topic while Redis is down
OUTAGE_S = 10.0


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    redis = RedisServer(tmp_path / "redis", free_port())
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()


def report(number: str, case_ref: str) -> dict[str, object]:
    return {"report_id": f"r-{uuid.uuid4().hex[:8]}", "reported_at": iso(datetime.now(timezone.utc)),
            "kind": "phone", "value": number, "status": "confirmed", "source": "PDRM", "case_ref": case_ref,
            "reason": "scam caller"}


def call(caller: str, i: int) -> dict[str, object]:
    return {"event_id": unique("c-"), "occurred_at": iso(datetime.now(timezone.utc)), "call_id": f"x{i}",
            "operator": "CELCOM", "caller": caller, "callee": f"+60123{i:06d}"}


def test_redis_restarted_empty_under_traffic_loses_nothing_and_rebuilds_the_index(
        stack: Stack, logs_dir: Path, own_redis: RedisServer) -> None:
    name = unique("rdown")
    env = isolated_env(stack, name, SEKAT_REDIS_URL=own_redis.url, SEKAT_METRICS_INTERVAL_S="1")
    worker = WorkerProcess(env, logs_dir / f"{name}.log").start()
    s = worker.settings
    producer = Producer(s)
    collector = Collector(s, [s.topic_block])
    index = sync_redis.Redis.from_url(own_redis.url)
    entry = lambda number: index.get(f"{s.redis_prefix}bl:phone:{number}")  # noqa: E731
    calls_escaped = re.escape(s.topic_calls)
    decided = lambda: worker.sample(r'sekat_events_total\{outcome="[A-Z]+",stream="calls"\}')  # noqa: E731
    lag = lambda: worker.sample(rf'sekat_consumer_lag_messages\{{partition="\d+",topic="{calls_escaped}"\}}')  # noqa: E731
    staleness = lambda: worker.sample("sekat_blocklist_replica_staleness_seconds")  # noqa: E731
    listed_calls: list[str] = []

    def make(i: int) -> dict[str, object]:
        event = call(LISTED if i % 5 == 0 else f"+601234{i:05d}", i)
        if i % 5 == 0:
            listed_calls.append(str(event["event_id"]))
        return event

    traffic: Traffic | None = None
    try:
        producer.send(s.topic_reports, report(LISTED, "KL/1"), key=f"phone:{LISTED}".encode())
        wait_until("the report applied to the index", lambda: entry(LISTED), bool)
        worker.wait_replica()
        traffic = Traffic(s, s.topic_calls, make, rate=50).start()
        wait_until("calls decided before the outage", decided, lambda v: v >= 20)
        assert staleness() < 3

        own_redis.stop()
        down_at = time.monotonic()
        producer.send(s.topic_reports, report(LATE, "KL/2"), key=f"phone:{LATE}".encode())  # Kafka has it
        peak = 0.0
        while time.monotonic() - down_at < OUTAGE_S:
            peak = max(peak, staleness())
            time.sleep(0.5)
        assert worker.get("/healthz")[0] == 503
        during = len(traffic.sent)
        # Still deciding, on the replica, while Redis is away.
        wait_until("calls decided during the outage", decided, lambda v: v >= during - 10, timeout=10)
        peak = max(peak, staleness())
        outage = time.monotonic() - down_at
        assert peak >= OUTAGE_S - 2, f"staleness peaked at {peak:.1f}s in a {outage:.1f}s outage"
        assert peak <= outage + 2  # it counts from the last answer, not from start-up
        assert worker.sample("sekat_rule_state_degraded_batches_total") > 0

        own_redis.start()  # empty: no persistence, as a restarted cache
        back_at = time.monotonic()
        wait_until("the index rebuilt from the topic", lambda: bool(entry(LISTED)) and bool(entry(LATE)), bool)
        rebuilt_in = time.monotonic() - back_at
        assert orjson.loads(entry(LATE))["case_ref"] == "KL/2"
        wait_until("staleness after the rebuild", staleness, lambda v: v < 3)
        status, body = worker.get("/healthz")
        # Built twice by this worker: the fresh prefix when it started, and the empty Redis now.
        assert status == 200 and orjson.loads(body)["index_rebuilds"] == 2, body
        # The report filed while Redis was away takes effect.
        late_call = call(LATE, 999_999)
        producer.send(s.topic_calls, late_call)
        time.sleep(1)
        sent = traffic.stop()
        traffic = None

        # Nothing dropped: every call decided, the lag drains, every call from the listed caller blocked.
        assert len(sent) > OUTAGE_S * 30
        wait_until("every call decided", decided, lambda v: v == len(sent) + 1)
        wait_until("lag after recovery", lag, lambda v: v == 0)
        listed = set(listed_calls) & set(sent)
        blocked = collector.wait_for(lambda r: r.json.get("event_id") in listed | {late_call["event_id"]},
                                     count=len(listed) + 1, timeout=30)
        by_event: dict[str, list[str]] = {}
        for r in blocked:
            assert r.json["action"] == "BLOCK_CALL"
            by_event.setdefault(r.json["event_id"], []).append(r.json["command_id"])
        assert set(by_event) == listed | {late_call["event_id"]}
        assert all(len(set(ids)) == 1 for ids in by_event.values()), "a re-sent command keeps its command_id"
        duplicates = sum(len(ids) - 1 for ids in by_event.values())
        print(f"\nredis outage: {outage:.1f}s, {len(sent) + 1} calls decided, {len(by_event)} blocked "
              f"({during} calls sent before Redis came back), {duplicates} duplicate commands, staleness peak "
              f"{peak:.1f}s, index rebuilt {rebuilt_in:.1f}s after Redis came back")

        # The alert that pages on this: staleness over 30 s for a minute (its firing is unit-tested by promtool).
        rules = yaml.safe_load((REPO_ROOT / "metrics/prometheus/alerts.yml").read_text())
        [stale] = [r for g in rules["groups"] for r in g["rules"] if r.get("alert") == "SekatBlocklistStale"]
        assert "sekat_blocklist_replica_staleness_seconds" in stale["expr"]
    finally:
        if traffic is not None:
            traffic.stop()
        index.close()
        collector.close()
        producer.close()
        worker.stop()
