"""A batch's output through the worker's own producer (Faust's aiokafka driver), on the real broker.

Given a Faust app's started producer and output topics of 6 partitions, when one output of 1,000 decision
records (each its own key) and 100 commands (one institution's key) is produced and acknowledged, then it
was handed over as record batches (``send_batch``, no ``send``), every record is on the partition Kafka's
default partitioner gives its key (kafka-python's murmur2: another implementation than the worker's), and
within each partition the records are in the order they were added.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.partitioner.default import murmur2
from sekat.streams.app import faust_app, output_topics
from sekat.streams.output import OutputBatch
from sekat.streams.topics import create_topics

from sekat.settings import Settings
from tests.support import Stack, isolated_env, unique

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

PARTITIONS = 6


def test_an_output_goes_as_record_batches_on_kafkas_partitions_in_order(stack: Stack) -> None:
    settings = Settings.from_environ(isolated_env(stack, unique("obat"), SEKAT_TOPIC_PARTITIONS=str(PARTITIONS)))
    create_topics(settings)
    calls: dict[str, int] = {"send": 0, "send_batch": 0}

    async def scenario() -> list[tuple[str, bytes, bytes]]:
        app = faust_app(settings)
        producer = await app.maybe_start_producer()
        kafka = producer._ensure_producer()
        for name, method in (("send", producer.send), ("send_batch", kafka.send_batch)):
            def counted(*args: Any, _name: str = name, _method: Any = method, **kwargs: Any) -> Any:
                calls[_name] += 1
                return _method(*args, **kwargs)
            setattr(producer if name == "send" else kafka, name, counted)
        try:
            topics = output_topics(app, settings)
            out = OutputBatch(topics)
            for n in range(1000):
                out.record(topics.decisions, f"e-{n}".encode(), f"decision {n}".encode())
                if n % 10 == 0:
                    out.record(topics.block, b"CELCOM", f"command {n}".encode())
            await out.send()
            return [(topic.get_topic_name(), key, value) for topic, key, value in out.messages]
        finally:
            await producer.stop()

    sent = asyncio.run(scenario())
    assert calls["send"] == 0 and calls["send_batch"] >= PARTITIONS + 1

    consumer = KafkaConsumer(**settings.kafka_client_config(), enable_auto_commit=False,  # type: ignore[arg-type]
                             consumer_timeout_ms=3000)
    try:
        tps = [TopicPartition(t, p) for t in (settings.topic_decisions, settings.topic_block) for p in range(PARTITIONS)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        on_topic: dict[tuple[str, int], list[bytes]] = {}
        for record in consumer:
            assert record.partition == (murmur2(record.key) & 0x7FFFFFFF) % PARTITIONS
            on_topic.setdefault((record.topic, record.partition), []).append(record.value)
            if sum(map(len, on_topic.values())) == len(sent):
                break
    finally:
        consumer.close()
    expected: dict[tuple[str, int], list[bytes]] = {}
    for topic, key, value in sent:
        expected.setdefault((topic, (murmur2(key) & 0x7FFFFFFF) % PARTITIONS), []).append(value)
    assert on_topic == expected
