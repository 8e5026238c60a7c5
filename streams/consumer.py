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
partitions re-decides the batch and re-sends the same ``command_id``s. The
commit's round trip overlaps the next batch's work; commits are issued in
order, each after the one before has finished.
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
        self.committed: dict[Any, int] = {}

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
        committing: asyncio.Future[None] | None = None
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=1000, max_records=self.settings.batch_max)
                if not batch:
                    continue
                by_topic: dict[str, list[Any]] = {}
                for tp, records in batch.items():
                    by_topic.setdefault(tp.topic, []).extend(records)
                # Transfers and calls are independent streams: one's decoding runs while the other waits for
                # Kafka's acknowledgements, so a mixed batch costs one acknowledgement wait, not two.
                await asyncio.gather(*(self.screens[topic].run(records) for topic, records in by_topic.items()))
                # Every output of the batch is acknowledged: its offsets may be committed. The commit's round
                # trip overlaps the next batch; commits stay in order (each waits for the one before).
                if committing is not None:
                    await committing
                committing = asyncio.ensure_future(self._commit({tp: records[-1].offset + 1
                                                                 for tp, records in batch.items()}))
                self.batches += 1
        finally:
            if committing is not None:  # the last batch's offsets, so the next owner does not re-decide it
                try:
                    await asyncio.wait_for(asyncio.shield(committing), 5)
                except (asyncio.TimeoutError, asyncio.CancelledError):
                    log.warning("the last offset commit did not finish; its batch may be re-decided")
            await asyncio.shield(consumer.stop())

    async def _commit(self, offsets: dict[Any, int]) -> None:
        assert self.consumer is not None
        try:
            await self.consumer.commit(offsets)
            self.committed.update(offsets)
        except CommitFailedError:
            # Partitions moved during the batch: the new owner re-decides it (same command ids).
            log.warning("offset commit failed after a rebalance; the batch will be re-decided")
        except KafkaError as exc:
            log.warning("offset commit failed (%s); the batch may be re-decided", type(exc).__name__)

    async def offsets(self) -> dict[tuple[str, int], tuple[int, int]]:
        """(end offset asked of the broker, committed offset) per assigned partition, for the lag gauge.

        Asking the broker, rather than reading the fetcher's high watermark, keeps the lag
        truthful when this worker has stopped fetching. Before a partition's first commit
        here, its fetch position stands in for the committed offset.
        """
        consumer = self.consumer
        if consumer is None:
            return {}
        try:
            assigned = sorted(consumer.assignment())
            if not assigned:
                return {}
            ends = await consumer.end_offsets(assigned)
            out = {}
            for tp in assigned:
                done = self.committed.get(tp)
                if done is None:
                    done = await consumer.position(tp)
                out[tp.topic, tp.partition] = (int(ends[tp]), int(done))
            return out
        except Exception as exc:  # noqa: BLE001 - not started / rebalancing: try again next interval
            log.debug("consumer offsets not available: %s", exc)
            return {}
