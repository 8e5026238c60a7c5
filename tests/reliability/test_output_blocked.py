"""The command topic refuses writes for a while, and a bank's consumer of commands is slow: no command is lost.

Given a worker, a listed caller and a telco consumer that takes one command at
a time with a pause, when the command topic stops accepting writes (its
``max.message.bytes`` lowered below a command's size: the broker answers every
write with an error, as a full disk or a lost quorum does) and calls from the
listed caller keep arriving, then no command is on the topic and nothing is
committed (the lag holds every call: the worker re-sends the batch with
backoff, counting ``sekat_send_errors_total``, rather than skipping it), the
worker stays up; when the topic accepts writes again every call has its command,
duplicates keep their ``command_id``, the lag drains, and the slow consumer
receives every command in its own time (the command topics have no size
limit, only a 7-day retention).
"""

from __future__ import annotations

import re
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import KafkaError

from sekat.records import iso
from tests.support import (
    Producer, RefusedWrites, Stack, WorkerProcess, isolated_env, list_phone, unique, wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

LISTED = "+60199999999"
CALLS = 40


class SlowConsumer:
    """A telco's command consumer in its own group: one record per poll, a pause per record, commits as it goes."""

    def __init__(self, worker: WorkerProcess, topic: str, pause: float) -> None:
        self.received: list[dict[str, object]] = []
        self._pause = pause
        self._stop = threading.Event()
        self._consumer = KafkaConsumer(topic, **worker.settings.kafka_client_config(),  # type: ignore[arg-type]
                                       group_id=unique("telco-"), auto_offset_reset="earliest",
                                       enable_auto_commit=False, max_poll_records=1)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for records in self._consumer.poll(timeout_ms=200).values():
                for r in records:
                    self.received.append(orjson.loads(r.value))
                    time.sleep(self._pause)
                try:
                    self._consumer.commit()
                except KafkaError:  # a rebalance on a loaded machine: the group re-delivers, as for a real telco
                    continue

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._consumer.close()


def test_an_unwritable_command_topic_and_a_slow_consumer_lose_no_command(stack: Stack, logs_dir: Path) -> None:
    name = unique("oblk")
    env = isolated_env(stack, name, SEKAT_METRICS_INTERVAL_S="1")
    worker = WorkerProcess(env, logs_dir / f"{name}.log").start()
    s = worker.settings
    block = RefusedWrites(s, s.topic_block)
    producer = Producer(s)
    slow = SlowConsumer(worker, s.topic_block, pause=0.05)
    calls_escaped = re.escape(s.topic_calls)
    lag = lambda: worker.sample(rf'sekat_consumer_lag_messages\{{partition="\d+",topic="{calls_escaped}"\}}')  # noqa: E731
    on_topic = lambda: worker.sample(r'sekat_commands_total\{action="BLOCK_CALL"')  # noqa: E731

    try:
        # Commands are kept by time only: a slow consumer is never overtaken by a size limit.
        configs = block.admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t, None)
                                                for t in (s.topic_freeze, s.topic_block)], config_filter="all")
        for topic_configs in configs["topic"].values():
            assert topic_configs["retention.bytes"]["value"] == "-1"
            assert int(topic_configs["retention.ms"]["value"]) >= 7 * 24 * 3600 * 1000
        list_phone(s, LISTED, "KL/5")
        worker.wait_replica()
        # Warm-up: every input partition has a committed offset (before its first commit, the lag gauge
        # counts from the fetch position, which would hide records fetched but not yet committed).
        for i in range(10):
            producer.send(s.topic_calls, {"event_id": unique("w-"), "occurred_at": iso(datetime.now(timezone.utc)),
                                          "call_id": f"w{i}", "operator": "CELCOM", "caller": f"+601234{i:05d}",
                                          "callee": "+60123456780"}, key=f"w{i}".encode())
        wait_until("warm-up calls committed",
                   lambda: (worker.sample(r'sekat_events_total\{outcome="ALLOW",stream="calls"\}'), lag()),
                   lambda v: v == (10, 0))

        block.refuse()
        event_ids = [unique("c-") for _ in range(CALLS)]
        for i, event_id in enumerate(event_ids):
            producer.send(s.topic_calls, {"event_id": event_id, "occurred_at": iso(datetime.now(timezone.utc)),
                                          "call_id": f"x{i}", "operator": "CELCOM", "caller": LISTED,
                                          "callee": f"+60123{i:06d}"})
        blocked_at = time.monotonic()
        # While the topic refuses writes: nothing acknowledged, nothing committed, the worker waits.
        wait_until("lag while the command topic refuses writes", lag, lambda v: v == CALLS, timeout=15)
        time.sleep(3)
        assert on_topic() == 0 and not [c for c in slow.received if "event_id" in c]
        assert lag() == CALLS
        assert worker.sample("sekat_send_errors_total") > 0
        assert worker.alive()
        held_for = time.monotonic() - blocked_at

        block.accept()
        reopened_at = time.monotonic()
        wait_until("lag after the topic accepts writes", lag, lambda v: v == 0, timeout=60)
        drained_in = time.monotonic() - reopened_at
        received = wait_until("the slow consumer's commands",
                              lambda: [c for c in slow.received if "probe" not in c],
                              lambda got: {c["event_id"] for c in got} >= set(event_ids), timeout=60)
        by_event: dict[str, set[str]] = {}
        for command in received:
            assert command["action"] == "BLOCK_CALL"
            by_event.setdefault(str(command["event_id"]), set()).add(str(command["command_id"]))
        assert set(by_event) == set(event_ids)
        assert all(len(ids) == 1 for ids in by_event.values()), "a re-sent command keeps its command_id"
        print(f"\noutput blocked: {CALLS} calls held {held_for:.1f}s with nothing committed; after the topic "
              f"reopened the lag drained in {drained_in:.1f}s and the slow consumer received {len(received)} "
              f"commands for {len(by_event)} calls ({len(received) - len(by_event)} duplicates, same command_id)")
    finally:
        try:
            block.close()
        finally:
            slow.close()
            producer.close()
            worker.stop()
