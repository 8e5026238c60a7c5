"""The screening consumer's task dies: the worker says so at once, restarts it with backoff, and resumes.

The fault is a real one: a record batch of an input partition is damaged on the broker's disk (one byte of
a call flipped in the log segment, as a failing disk or a bad copy would). The broker serves the batch as it
is, the consumer's CRC check fails, and ``CorruptRecordException`` is raised out of the consumer's fetch:
the screening task dies. Nothing is in flight and no lag has been read: the crash is reported well before
the stall clock (``SEKAT_STALL_AFTER_S``, 15 s here) could say anything.

Given a worker that has decided a few calls, when the damaged call is fetched, then within seconds
``/healthz`` is 503 naming both screening streams (one consumer serves them), ``sekat_stream_stalled`` is
1 for each, ``sekat_screening_crashes_total`` counts the crash and keeps counting as the restarted task
meets the same record again (with backoff: a handful, not hundreds), and the worker stays up. When the
record is gone from the partition (an operator's last resort, once it is saved), then the next restart
resumes screening: a listed caller's call is blocked, and ``/healthz`` is 200 again once the idle
transfers stream has also been seen with nothing waiting for ``SEKAT_STALL_AFTER_S`` after the restart.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from sekat.records import iso
from sekat.settings import Settings
from tests.support import (
    Collector,
    Producer,
    Stack,
    WorkerProcess,
    for_event,
    isolated_env,
    list_phone,
    unique,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

LISTED = "+60199999997"
STALL_AFTER_S = 15


def call(i: int, caller: str) -> dict[str, object]:
    return {"event_id": unique("c-"), "occurred_at": iso(datetime.now(timezone.utc)), "call_id": f"x{i}",
            "operator": "CELCOM", "caller": caller, "callee": f"+60123{i:06d}"}


def damage_on_disk(stack: Stack, tp: TopicPartition, marker: bytes) -> None:
    """Flip one byte of the record holding ``marker`` in the partition's log segment on the broker's disk.

    The broker serves fetches from the segment's bytes without checking them, so the damaged batch reaches
    the consumer, whose CRC check of the batch fails.
    """
    [segment] = (stack.kafka.data_dir / "logs" / f"{tp.topic}-{tp.partition}").glob("*.log")
    with open(segment, "r+b") as f:
        data = f.read()
        at = data.index(marker)
        f.seek(at)
        f.write(bytes([data[at] ^ 0x20]))  # the case of one letter of the event id
        f.flush()


def end_offsets(settings: Settings, topic: str) -> dict[TopicPartition, int]:
    consumer = KafkaConsumer(**settings.kafka_client_config(), group_id=None)  # type: ignore[arg-type]
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return consumer.end_offsets(tps)
    finally:
        consumer.close()


def test_a_crashed_screening_task_is_reported_restarted_with_backoff_and_resumes(stack: Stack,
                                                                                  logs_dir: Path) -> None:
    name = unique("crash")
    env = isolated_env(stack, name, SEKAT_METRICS_INTERVAL_S="1", SEKAT_STALL_AFTER_S=str(STALL_AFTER_S))
    worker = WorkerProcess(env, logs_dir / f"{name}.log").start()
    s = worker.settings
    producer = Producer(s)
    blocks = Collector(s, [s.topic_block])

    def health() -> tuple[int, dict[str, object]]:
        status, body = worker.get("/healthz")
        return status, orjson.loads(body)

    crashes = lambda: worker.sample("sekat_screening_crashes_total")  # noqa: E731
    try:
        list_phone(s, LISTED, "KL/9")
        worker.wait_replica()
        for i in range(3):
            producer.send(s.topic_calls, call(i, f"+601234{i:05d}"))
        wait_until("warm-up calls decided", lambda: worker.sample(r'sekat_events_total\{outcome="ALLOW",stream="calls"\}'),
                   lambda v: v == 3)
        assert health()[0] == 200
        before = end_offsets(s, s.topic_calls)

        # Damaged before any consumer fetches it: the worker is stopped while the call is written and damaged.
        worker.stop()
        damaged = call(9, "+60123400009")
        producer.send(s.topic_calls, damaged)
        after = end_offsets(s, s.topic_calls)
        [poisoned] = [tp for tp in after if after[tp] > before[tp]]
        damage_on_disk(stack, poisoned, str(damaged["event_id"]).encode())
        worker = WorkerProcess(env, logs_dir / f"{name}-2.log").start()
        started_at = time.monotonic()  # ready: the consumer joins its group and fetches the damaged call
        _, body = wait_until("/healthz naming the streams of the crashed task", health,
                                  lambda h: h[0] == 503 and bool(h[1].get("stalled")), timeout=20, every=0.2)
        noticed_in = time.monotonic() - started_at
        assert noticed_in < STALL_AFTER_S - 5
        assert body["stalled"] == ["transfers", "calls", "sms"] and body["screening"] == "restarting", body
        assert worker.sample(r'sekat_stream_stalled\{stream="calls"\}') == 1
        assert worker.sample(r'sekat_stream_stalled\{stream="transfers"\}') == 1
        assert "CorruptRecordException" in worker.log_tail(20_000)
        # Restarted, it meets the same record and dies again: counted each time, spaced by the backoff.
        wait_until("the restarted task crashing again", crashes, lambda v: v >= 3, timeout=30)
        time.sleep(3)
        assert crashes() < 10 and worker.alive()
        assert health()[0] == 503

        # The operator saves the record elsewhere, then removes it from the partition.
        admin = KafkaAdminClient(**s.kafka_client_config())  # type: ignore[arg-type]
        try:
            admin.delete_records({poisoned: after[poisoned]})
        finally:
            admin.close()
        listed_call = call(10, LISTED)
        producer.send(s.topic_calls, listed_call)
        [blocked] = blocks.wait_for(for_event(str(listed_call["event_id"])), timeout=90)
        assert blocked.json["action"] == "BLOCK_CALL"
        _, body = wait_until("/healthz after screening resumed", health, lambda h: h[0] == 200,
                             timeout=STALL_AFTER_S + 30)
        assert body["stalled"] == [] and body["screening"] == "running", body
        print(f"\ncrash: /healthz 503 {noticed_in:.1f}s after the worker was ready with the damaged call waiting; "
              f"{crashes():.0f} crashes before the record was removed")
    finally:
        blocks.close()
        producer.close()
        worker.stop()
