"""The Kafka broker restarts under traffic: producers and workers reconnect, nothing is lost, the lag drains.

Given a worker on its own broker (the session's broker is never stopped) and
calls arriving all the time (every fourth from a listed caller), when the
broker shuts down and starts again on the same ports and data, then the
traffic producer rides through it (retrying each event until it is
acknowledged), the worker reconnects on its own, every record on the input
topic is decided exactly as many times as it is counted (no gap), every call
from the listed caller has a BLOCK_CALL command, duplicates keep their
``command_id``, and the consumer lag drains to zero.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from sekat.localstack.kafka_servers import KafkaBroker
from tests.support import (Collector, Stack, Traffic, WorkerProcess, call_traffic, isolated_env, list_phone, unique,
                           wait_until)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

LISTED = "+60199999999"


def records_on(worker: WorkerProcess, topic: str) -> int:
    consumer = KafkaConsumer(**worker.settings.kafka_client_config(), group_id=None)  # type: ignore[arg-type]
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum(consumer.end_offsets(tps).values())
    finally:
        consumer.close()


def test_a_broker_restart_under_traffic_loses_nothing(stack: Stack, logs_dir: Path, own_broker: KafkaBroker) -> None:
    name = unique("brst")
    env = isolated_env(Stack(own_broker, stack.redis), name, SEKAT_METRICS_INTERVAL_S="1")
    worker = WorkerProcess(env, logs_dir / f"{name}.log").start()
    s = worker.settings
    listed_calls: list[str] = []
    calls_escaped = re.escape(s.topic_calls)
    decided = lambda: worker.sample(r'sekat_events_total\{outcome="[A-Z]+",stream="calls"\}')  # noqa: E731
    lag = lambda: worker.sample(rf'sekat_consumer_lag_messages\{{partition="\d+",topic="{calls_escaped}"\}}')  # noqa: E731

    make = call_traffic(LISTED, 4, listed_calls)
    list_phone(s, LISTED, "KL/7")
    worker.wait_replica()
    traffic = Traffic(s, s.topic_calls, make, rate=100).start()
    collector: Collector | None = None
    try:
        wait_until("calls decided before the restart", decided, lambda v: v >= 20)
        stopped_at = time.monotonic()
        own_broker.stop()
        down_for = time.monotonic() - stopped_at
        time.sleep(1)
        own_broker.start()
        back_at = time.monotonic()
        down = back_at - stopped_at
        before = len(traffic.sent)
        wait_until("traffic acknowledged again", lambda: len(traffic.sent), lambda v: v >= before + 30, timeout=60)
        producer_back_in = time.monotonic() - back_at
        sent = traffic.stop()

        # Nothing lost: every record on the input topic is decided, the lag drains.
        on_topic = records_on(worker, s.topic_calls)
        assert on_topic >= len(sent)
        wait_until("every record on the topic decided", decided, lambda v: v == on_topic, timeout=60)
        wait_until("lag after the restart", lag, lambda v: v == 0, timeout=30)
        worker_back_in = time.monotonic() - back_at

        collector = Collector(s, [s.topic_block])
        expected = set(listed_calls) & set(sent)
        commands = collector.wait_for(lambda r: r.json.get("event_id") in expected, count=len(expected), timeout=30)
        by_event: dict[str, list[str]] = {}
        for r in commands:
            by_event.setdefault(r.json["event_id"], []).append(r.json["command_id"])
        assert set(by_event) == expected
        assert all(len(set(ids)) == 1 for ids in by_event.values()), "a re-sent command keeps its command_id"
        duplicates = sum(len(ids) - 1 for ids in by_event.values())
        assert worker.alive()
        print(f"\nbroker restart: stop took {down_for:.1f}s, down {down:.1f}s in all; {len(sent)} calls acknowledged "
              f"({traffic.retries} producer retries, {on_topic} records on the topic), all decided; "
              f"{len(expected)} had to be blocked, {len(commands)} commands, {duplicates} duplicates; producer "
              f"back {producer_back_in:.1f}s and lag drained {worker_back_in:.1f}s after the broker")
    finally:
        traffic.stop()
        if collector is not None:
            collector.close()
        worker.stop()


def test_a_worker_stops_within_the_grace_period_when_the_broker_is_gone(stack: Stack, logs_dir: Path,
                                                                          own_broker: KafkaBroker) -> None:
    """SIGTERM with the broker unreachable: out well inside Kubernetes' 30 s grace (was 60-65 s: Faust's own
    consumer thread waited for aiokafka's stop, which retried against the missing broker until mode's 60 s)."""
    name = unique("bgone")
    worker = WorkerProcess(isolated_env(Stack(own_broker, stack.redis), name), logs_dir / f"{name}.log").start()
    assert worker.proc is not None
    own_broker.stop()
    time.sleep(3)  # the clients notice: connections refused, heartbeats failing
    started = time.monotonic()
    worker.proc.terminate()
    code = worker.proc.wait(timeout=40)
    took = time.monotonic() - started
    assert took < 20, f"the worker took {took:.1f}s to stop"
    assert code == 0, worker.log_tail(3000)
