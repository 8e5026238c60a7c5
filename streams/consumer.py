"""The screening consumer: Kafka batches straight into ``Screen.run``, offsets committed after the output is acked.

Why not a Faust agent: measured on this machine (load_tests/bench.py, README
"Performance"), Faust's per-event stream machinery — conductor, per-message
queue, stream iteration, sensors — cost about four times Sekat's own work per
event and capped a worker far below 50,000 events/s even with
``take_events``. The screening path therefore reads with aiokafka's
``getmany`` (one call per batch) inside the Faust worker, which still hosts
everything else: the web server (/metrics, /healthz), the replica task, and
the low-volume agents.

Guarantee (at-least-once): a batch's offsets are committed only after every
command, decision and dead letter it produced was acknowledged by Kafka
(acks=all). If the worker dies between the two, the next owner of the
partitions re-decides the batch and re-sends the same ``command_id``s.
The consumer group is ``{SEKAT_APP_ID}.screen`` (Faust's own group is
``{SEKAT_APP_ID}``: the two use different assignors and cannot share one).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import CommitFailedError, KafkaError

from metrics.worker import WorkerMetrics
from sekat.settings import Settings
from streams.screening import Screen

log = logging.getLogger(__name__)


class ScreeningConsumer:
    def __init__(self, settings: Settings, screens: Mapping[str, Screen[Any]], metrics: WorkerMetrics) -> None:
        self.settings = settings
        self.screens = dict(screens)  # input topic -> screen
        self.metrics = metrics
        self.consumer: AIOKafkaConsumer | None = None
        self.batches = 0

    def group_id(self) -> str:
        return f"{self.settings.app_id}.screen"

    async def start(self) -> None:
        self.consumer = AIOKafkaConsumer(
            *self.screens,
            **self.settings.aiokafka_config(),  # type: ignore[arg-type]
            group_id=self.group_id(),
            client_id=f"{self.settings.app_id}-screen",
            enable_auto_commit=False,
            auto_offset_reset=self.settings.kafka_offset_reset,
            max_poll_records=self.settings.batch_max,
            fetch_max_wait_ms=self.settings.batch_within_ms,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_bytes=32 * 1024 * 1024,
        )
        await self.consumer.start()

    async def run(self) -> None:
        """Decide batches until cancelled."""
        await self.start()
        consumer = self.consumer
        assert consumer is not None
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=1000, max_records=self.settings.batch_max)
                if not batch:
                    continue
                by_topic: dict[str, list[Any]] = {}
                for tp, records in batch.items():
                    by_topic.setdefault(tp.topic, []).extend(records)
                for topic, records in by_topic.items():
                    await self.screens[topic].run(records)
                offsets = {tp: records[-1].offset + 1 for tp, records in batch.items()}
                try:
                    await consumer.commit(offsets)
                except CommitFailedError:
                    # Partitions moved during the batch: the new owner re-decides it (same command ids).
                    log.warning("offset commit failed after a rebalance; the batch will be re-decided")
                except KafkaError as exc:
                    log.warning("offset commit failed (%s); the batch may be re-decided", type(exc).__name__)
                self.batches += 1
                for tp in batch:
                    high = consumer.highwater(tp)
                    if high is not None:
                        self.metrics.lag.labels(tp.topic, str(tp.partition)).set(max(0, high - offsets[tp]))
        finally:
            await asyncio.shield(consumer.stop())
