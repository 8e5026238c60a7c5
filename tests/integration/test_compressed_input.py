"""Input compressed by its producer is read: lz4, zstd, snappy and gzip, from Kafka's official Java producer.

Banks, telcos and agencies often produce with ``compression.type`` set. Given a worker, when an agency files a
report and a telco sends a call from the reported number, each compressed with one codec by the Java client,
then the report lists the number (the reports agent reads it), the call is blocked (the screening consumer
reads it), and a replay of the reports topic (``sekat blocklist rebuild``, another Kafka client) rebuilds
the same index from the compressed records.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest

from sekat.records import iso
from tests.support import (
    Collector,
    Stack,
    WorkerProcess,
    for_event,
    index_entries,
    isolated_env,
    produce_compressed,
    rebuilt_from_topic,
    report_body,
    report_key,
    unique,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

CODECS = {"lz4": "+60171000001", "zstd": "+60171000002", "snappy": "+60171000003", "gzip": "+60171000004"}


def test_reports_and_calls_compressed_by_the_java_producer_are_decided(stack: Stack, logs_dir: Path) -> None:
    name = unique("codec")
    worker = WorkerProcess(isolated_env(stack, name), logs_dir / f"{name}.log").start()
    s = worker.settings
    blocks = Collector(s, [s.topic_block])
    try:
        for codec, phone in CODECS.items():
            report = report_body("phone", phone, case_ref=f"KL/{codec}", reason="scam caller")
            produce_compressed(stack.kafka.bootstrap, s.topic_reports, orjson.dumps(report), codec, report_key(report))
        wait_until("the compressed reports applied", lambda: set(index_entries(s)),
                   lambda keys: keys >= {f"phone:{p}" for p in CODECS.values()})
        worker.wait_replica()
        calls = {}
        for codec, phone in CODECS.items():
            calls[codec] = {"event_id": unique("c-"), "occurred_at": iso(datetime.now(timezone.utc)),
                            "call_id": unique("x"), "operator": "CELCOM", "caller": phone, "callee": "+60123000002"}
            produce_compressed(stack.kafka.bootstrap, s.topic_calls, orjson.dumps(calls[codec]), codec)
        for codec, event in calls.items():
            [command] = blocks.wait_for(for_event(str(event["event_id"])), timeout=30)
            assert command.json["action"] == "BLOCK_CALL", codec
        assert worker.sample("sekat_screening_crashes_total") == 0
        assert rebuilt_from_topic(worker.env) == index_entries(s)
    finally:
        blocks.close()
        worker.stop()
