"""Records near the broker's size limit on an input partition: each is decided or dead-lettered, and the partition goes on.

Given a worker that accepts events up to 950,000 bytes and a listed caller, when
a ~900 KB call from the listed caller (a huge extra field the contract ignores),
a ~1,000,000-byte call (over SEKAT_MAX_EVENT_BYTES, under the broker's limit)
and then ordinary calls from the listed caller arrive on one partition, then
the 900 KB call gets its BLOCK_CALL like the ordinary ones, the 1 MB call a
``too_large`` dead letter that carries its size, SHA-256 and only its first
SEKAT_DEADLETTER_ORIGINAL_BYTES, and the group's committed offset passes
every one of them (before, that dead letter was larger than the producer's
max_request_size and its batch was re-sent forever).
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest
from kafka import KafkaAdminClient, KafkaProducer, TopicPartition

from sekat.records import iso
from sekat.redaction import mask_identifiers
from tests.support import Collector, Stack, WorkerProcess, isolated_env, list_phone, unique, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

LISTED = "+60376543210"
ORDINARY = 5
MAX_EVENT_BYTES = 950_000


def call(event_id: str, size: int = 0) -> bytes:
    """A valid call from the listed caller, padded with an ignored field to ``size`` bytes."""
    body = orjson.dumps({"event_id": event_id, "occurred_at": iso(datetime.now(timezone.utc)), "call_id": event_id,
                         "operator": "CELCOM", "caller": LISTED, "callee": "+60123456789", "padding": ""})
    return body[:-2] + b"x" * max(0, size - len(body)) + b'"}'


def test_records_near_the_broker_limit_are_decided_or_dead_lettered_and_the_partition_goes_on(
        stack: Stack, logs_dir: Path) -> None:
    name = unique("ovsz")
    worker = WorkerProcess(isolated_env(stack, name, SEKAT_MAX_EVENT_BYTES=str(MAX_EVENT_BYTES)),
                           logs_dir / f"{name}.log").start()
    s = worker.settings
    collector = Collector(s, [s.topic_block, s.topic_deadletter])
    producer = KafkaProducer(**s.kafka_client_config(), acks="all", linger_ms=0)  # type: ignore[arg-type]
    admin = KafkaAdminClient(**s.kafka_client_config())  # type: ignore[arg-type]
    try:
        list_phone(s, LISTED, "KL/2026/1")
        worker.wait_replica()
        big, huge = unique("big-"), unique("huge-")
        ordinary = [unique("c-") for _ in range(ORDINARY)]
        big_raw, huge_raw = call(big, 900_000), call(huge, 1_000_000)
        assert len(big_raw) == 900_000 and orjson.loads(big_raw)["event_id"] == big
        sent = [producer.send(s.topic_calls, raw, key=b"one-partition").get(timeout=15)
                for raw in [big_raw, huge_raw, *(call(e) for e in ordinary)]]
        partition = {m.partition for m in sent}
        assert len(partition) == 1

        blocked = collector.wait_for(lambda r: r.topic == s.topic_block, count=ORDINARY + 1, timeout=40)
        assert {r.json["event_id"] for r in blocked} >= {big, *ordinary}
        assert all(r.json["action"] == "BLOCK_CALL" for r in blocked)

        (dead,) = collector.wait_for(lambda r: r.topic == s.topic_deadletter, timeout=20)
        body = dead.json
        assert body["reason"] == "too_large"
        assert body["source"]["offset"] == sent[1].offset and body["source"]["topic"] == s.topic_calls
        assert body["original_size"] == len(huge_raw)
        assert body["original_sha256"] == hashlib.sha256(huge_raw).hexdigest()
        assert body["original_truncated"] is True
        assert base64.b64decode(body["original_b64"]) == mask_identifiers(huge_raw[:s.deadletter_original_bytes])
        assert len(dead.value) < 2 * s.deadletter_original_bytes

        tp, group = TopicPartition(s.topic_calls, sent[0].partition), f"{s.app_id}.screen"
        committed = wait_until("the screening group's committed offset past the last call",
                               lambda: admin.list_group_offsets(group).get(group, {}).get(tp),
                               lambda o: o is not None and o.offset == sent[-1].offset + 1, timeout=20)
        assert committed.offset == sent[-1].offset + 1
        assert worker.alive()
        assert "MessageSizeTooLargeError" not in worker.log_tail()
    finally:
        admin.close()
        producer.close()
        collector.close()
        worker.stop()
