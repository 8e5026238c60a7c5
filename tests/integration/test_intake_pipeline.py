"""The reports intake decodes the next batch while the one before is being written, one write at a time.

A real broker and the real ``ReportsConsumer``; the intake it drives records when it decodes and writes each
batch (and the committed offset it finds when a write starts), and takes 0.3 s to write one, as a large batch
takes while Redis and the broker share the machine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from kafka import KafkaProducer
from prometheus_client import CollectorRegistry

from sekat.blocklist.applied import reports_group
from sekat.metrics.worker import WorkerMetrics
from sekat.settings import Settings
from sekat.streams.intake import Prepared, ReportsConsumer
from sekat.streams.output import OutputBatch
from sekat.streams.topics import create_topics
from tests.support import Stack, unique

BATCH = 5
BATCHES = 4


class RecordingIntake:
    """Decodes nothing and writes nothing: records the order of ``prepare`` and ``write`` and what was committed
    when each write started."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.steps: list[tuple[str, int]] = []  # ("prepare" | "write" | "written", last offset of the batch)
        self.committed_at_write: list[tuple[int, int | None]] = []
        self.consumer: ReportsConsumer | None = None

    def prepare(self, records: Sequence[Any]) -> Prepared:
        self.steps.append(("prepare", records[-1].offset))
        return Prepared([[r.offset for r in records]], OutputBatch(None))  # type: ignore[arg-type,list-item]

    async def write(self, prepared: Prepared) -> None:
        last = prepared.steps[0][-1]
        assert self.consumer is not None
        committed = self.consumer.committed.get(TopicPartition(self.settings.topic_reports, 0))
        self.committed_at_write.append((prepared.steps[0][0], committed))  # type: ignore[index]
        self.steps.append(("write", last))  # type: ignore[arg-type]
        await asyncio.sleep(0.3)
        self.steps.append(("written", last))  # type: ignore[arg-type]


def test_the_next_batch_is_decoded_while_one_is_written_and_offsets_follow_the_writes(stack: Stack) -> None:
    settings = Settings.from_environ(stack.settings_env(
        SEKAT_APP_ID=unique("pipe"), SEKAT_TOPIC_REPORTS=unique("reports"), SEKAT_TOPIC_PARTITIONS="1",
        SEKAT_BATCH_MAX=str(BATCH), SEKAT_KAFKA_OFFSET_RESET="earliest"))
    create_topics(settings)
    producer = KafkaProducer(**settings.kafka_client_config())
    for i in range(BATCH * BATCHES):
        producer.send(settings.topic_reports, b"{}", key=f"phone:+6012345{i:04d}".encode())
    producer.flush()
    producer.close()

    intake = RecordingIntake(settings)
    consumer = ReportsConsumer(settings, intake, _nothing, WorkerMetrics(CollectorRegistry()),  # type: ignore[arg-type]
                               session_timeout_s=10, within_ms=50)
    intake.consumer = consumer
    asyncio.run(_run_until_committed(consumer, settings, BATCH * BATCHES))

    writes = [last for step, last in intake.steps if step == "write"]
    assert writes == sorted(writes) and writes[-1] == BATCH * BATCHES - 1  # every batch, in order
    # One write at a time: each ends before the next starts.
    order = [step for step, _ in intake.steps if step != "prepare"]
    assert order == ["write", "written"] * len(writes)
    # While a batch was being written, the next one was already decoded.
    overlapped = [i for i, (step, _) in enumerate(intake.steps)
                  if step == "prepare" and i and intake.steps[i - 1][0] == "write"]
    assert overlapped, intake.steps
    # A batch's offsets are committed once it is written, before the next write starts.
    for first, committed in intake.committed_at_write[1:]:
        assert committed == first


async def _nothing() -> None:
    return None


async def _run_until_committed(consumer: ReportsConsumer, settings: Settings, end: int) -> None:
    task = asyncio.ensure_future(consumer.run())
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            if task.done():
                task.result()
            if consumer.committed.get(TopicPartition(settings.topic_reports, 0)) == end:
                break
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    check = AIOKafkaConsumer(**settings.aiokafka_config(), group_id=reports_group(settings), enable_auto_commit=False)
    await check.start()
    try:
        tp = TopicPartition(settings.topic_reports, 0)
        assert await check.committed(tp) == end
    finally:
        await check.stop()
