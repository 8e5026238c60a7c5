"""Report intake: ``sekat.reports`` → the Redis serving index, in batches, offsets committed after each is applied.

``ReportsConsumer`` reads the topic with aiokafka's ``getmany`` (one call a batch) in the worker's
consumer group ``{SEKAT_APP_ID}.reports``, as the screening consumer reads its inputs (streams/consumer.py)
and for the same reason: a Faust agent's per-record machinery cost more than applying the reports.
A batch goes in two steps. ``Intake.prepare`` decodes each record (bad ones, protected identifiers
included, are queued for the dead letters), with no I/O. ``Intake.write`` applies the valid ones through
``BlocklistStore.apply`` (one MGET, one MULTI, one change-stream record for the batch), publishes the
consolidated records that keep the compacted topic self-sufficient and the reports derived for linked
identifiers (before the index write, so a crash re-derives them), and waits for Kafka's acknowledgement.
Only then are the batch's offsets committed (at-least-once; applying a report again changes nothing).
The next batch is fetched and decoded while one is written (its round trips to Redis and Kafka); one
batch is written at a time, in the order they were read, so a key's reports and tombstones keep their
order. A Redis or Kafka failure is retried with backoff, never skipped: a batch that cannot be applied, or
a partition whose lag is not worked off, for ``SEKAT_STALL_AFTER_S`` makes the ``reports`` stream stalled
(``Progress``, streams/progress.py), as a screening stream is: ``/healthz`` 503,
``sekat_stream_stalled{stream="reports"}``. Both share the worker's one thread with screening: while
screening is behind, the intake waits before each batch (``defer_to``), so a bulk import slows the intake,
not the decisions.

A tombstone (a record without a value, from the purge or an erasure,
``streams/purge.py``) removes its key's entry from the index, in its place
in the batch: the reports before it are applied first, those after it start
a new entry. An entry that is active again by then (a report re-listed it
before the tombstone) is kept, and published consolidated after the
tombstone so that compaction keeps it too.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any

import faust
import orjson
from sekat.blocklist.lifecycle import consolidated, known_reports
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from sekat.blocklist.applied import GroupOffsets, reports_group
from sekat.blocklist.store import BlocklistStore
from sekat.decode.reports import decode_report
from sekat.metrics.worker import WorkerMetrics
from sekat.streams.consumer import assigned_offsets
from sekat.streams.output import OutputBatch, OutputTopics
from sekat.streams.progress import Progress
from sekat.streams.retry import retry

from sekat.clock import Clock, utcnow
from sekat.errors import SekatError
from sekat.records import Rejection, Report, Source, iso
from sekat.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """A decoded batch: runs of valid reports with the key of each tombstone between them, in the batch's order,
    and the dead letters of its bad records."""

    steps: list[list[Report] | str]
    out: OutputBatch


class Intake:
    def __init__(self, store: BlocklistStore, topics: OutputTopics, reports: faust.TopicT, metrics: WorkerMetrics,
                 max_bytes: int, region: str, protected: Collection[str], clock: Clock = utcnow) -> None:
        self.store = store
        self.topics = topics
        self.reports = reports
        self.metrics = metrics
        self.decode: Callable[[bytes | None, bytes | None], Report | Rejection] = (
            lambda raw, key: decode_report(raw, key, max_bytes, region, protected))
        self.clock = clock

    async def publish(self, reports: list[Report]) -> None:
        """Consolidated and derived reports onto the topic, acknowledged before the index is written."""
        out = OutputBatch(self.topics)
        for report in reports:
            out.record(self.reports, report.key.encode(), orjson.dumps(report.to_json()))
        await retry("publishing consolidated and linked reports", out.send, self.metrics.send_errors.inc)

    async def run(self, records: Sequence[Any]) -> None:
        """Apply a batch of aiokafka ``ConsumerRecord``s (timestamp in ms); returns once the index holds it."""
        await self.write(self.prepare(records))

    def prepare(self, records: Sequence[Any]) -> Prepared:
        """Decode a batch (no I/O): its valid reports in runs between tombstones, its dead letters queued."""
        out = OutputBatch(self.topics)
        now = iso(self.clock())
        steps: list[list[Report] | str] = []
        valid: list[Report] = []
        for msg in records:
            if msg.value is None and msg.key:
                steps += [valid, msg.key.decode("utf-8", "replace")]
                valid = []
                continue
            result = self.decode(msg.value, msg.key)
            if isinstance(result, Rejection):
                source = Source(msg.topic, msg.partition, msg.offset, msg.timestamp, msg.key)
                out.deadletter(source, msg.value, result, now)
                self.metrics.deadletters.labels("reports", result.reason).inc()
            else:
                valid.append(result)
        steps.append(valid)
        return Prepared(steps, out)

    async def write(self, prepared: Prepared) -> None:
        """Apply a prepared batch in order (a tombstone's key forgotten in its place), then send its dead
        letters; returns once the index holds it."""
        for step in prepared.steps:
            if isinstance(step, str):
                await self.forget(step)
            else:
                await self.apply(step)
        await retry("sending intake output", prepared.out.send, self.metrics.send_errors.inc)

    async def apply(self, valid: list[Report]) -> None:
        """Apply ``valid`` reports to the index (retried until it works)."""
        if not valid:
            return
        changed, pending = await retry("applying reports", lambda: self.store.apply(valid, publish=self.publish),
                                       self.metrics.apply_errors.inc)
        self.metrics.reports_applied.inc(len(valid))
        self.metrics.entries_changed.inc(len(changed))
        if changed:
            log.info("applied %d report(s): %d entr%s changed, %d consolidated", len(valid), len(changed),
                     "y" if len(changed) == 1 else "ies", len(pending))

    async def forget(self, key: str) -> None:
        """A tombstone of ``key``: its entry out of the index unless it is active again (then re-published)."""
        removed, kept = await retry("purging an entry", lambda: self.store.forget(key, self.clock()),
                                    self.metrics.apply_errors.inc)
        if removed:
            self.metrics.entries_purged.inc()
            log.info("purged 1 entry from the index (tombstone on the reports topic)")
        elif kept is not None:
            await self.publish([consolidated(known_reports(kept)[-1], kept)])
            log.warning("tombstone for an entry that is active again: kept, and published again after it")

# While screening is behind (``ScreeningConsumer.behind``), the intake waits before each batch, in steps of
# DEFER_STEP_S, up to DEFER_MAX_S: decisions keep the worker's thread during a bulk import, and the intake still
# applies a batch at least every DEFER_MAX_S.
DEFER_STEP_S = 0.005
DEFER_MAX_S = 0.1


async def defer_to(busy: Callable[[], bool], step_s: float = DEFER_STEP_S, max_s: float = DEFER_MAX_S) -> float:
    """Wait while ``busy()`` says so, at most ``max_s``; the seconds waited."""
    waited = 0.0
    while waited < max_s and busy():
        await asyncio.sleep(step_s)
        waited += step_s
    return waited


STREAM = "reports"  # the intake's name in ``Progress``: /healthz ``stalled``, ``sekat_stream_stalled{stream}``


class ReportsConsumer:
    """The worker's reports intake: batches of ``sekat.reports`` into ``Intake.run``, then their offsets committed.

    ``ensure`` is awaited before each batch (the index guard: reports are applied only to a built index).
    Partitions move between workers as any consumer group's do; a batch applied and not yet committed when
    they move is applied again by the next owner, which changes nothing. A partition the group has never
    committed starts where the worker's Faust group (``SEKAT_APP_ID``), which applied reports before this
    group existed, had committed, so an upgraded fleet does not apply the whole topic again.
    """

    def __init__(self, settings: Settings, intake: Intake, ensure: Callable[[], Awaitable[None]],
                 metrics: WorkerMetrics, session_timeout_s: float, within_ms: int,
                 busy: Callable[[], bool] = lambda: False) -> None:
        self.settings = settings
        self.busy = busy  # screening is behind: let it have the thread first (``defer_to``)
        self.intake = intake
        self.ensure = ensure
        self.metrics = metrics
        self.session_timeout_s = session_timeout_s
        self.within_ms = within_ms
        self.consumer: AIOKafkaConsumer | None = None
        self.committed: dict[TopicPartition, int] = {}
        # Per partition the reports group never committed: the Faust group's committed offset, below which every
        # report was applied already (``_floors``).
        self.floors: dict[int, int] = {}
        self.progress = Progress([STREAM], settings.stall_after_s)

    async def run(self) -> None:
        """Apply batches until cancelled; on the way out, nothing is committed that was not applied."""
        self.committed = {}
        self.floors = await self._floors()
        consumer = self.consumer = AIOKafkaConsumer(
            **self.settings.aiokafka_config(),
            group_id=reports_group(self.settings),
            client_id=f"{self.settings.app_id}-reports",
            enable_auto_commit=False,
            auto_offset_reset=self.settings.kafka_offset_reset,
            max_poll_records=self.settings.batch_max,
            fetch_max_wait_ms=self.within_ms,
            session_timeout_ms=int(self.session_timeout_s * 1000),
            heartbeat_interval_ms=int(self.session_timeout_s * 1000 / 3),
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_bytes=32 * 1024 * 1024,
        )
        consumer.subscribe([self.settings.topic_reports], listener=_StartWhereFaustWas(self))
        await consumer.start()
        self.progress.restart()  # the time spent joining the group is not a stall
        writing: asyncio.Future[None] | None = None  # the batch before: being applied, then committed
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=1000, max_records=self.settings.batch_max)
                if writing is not None and writing.done():
                    writing.result()  # a batch whose write failed stops the intake here (``supervise`` restarts it)
                    writing = None
                if not batch:
                    continue
                self.progress.taken([STREAM])
                await defer_to(self.busy)
                await retry("waiting for the blocklist index to be built", self.ensure, self.metrics.apply_errors.inc)
                floors = self.floors
                prepared = self.intake.prepare([record for tp, records in batch.items() for record in records
                                                if not floors or record.offset >= floors.get(tp.partition, 0)])
                if writing is not None:  # one batch written at a time, in the order they were read
                    await writing
                writing = asyncio.ensure_future(
                    self._write(prepared, {tp: records[-1].offset + 1 for tp, records in batch.items()}))
                await asyncio.sleep(0)  # the write starts (its first round trip) before the next batch is decoded
        finally:
            if writing is not None:  # stopped mid-write: its offsets are not committed (applied again later)
                writing.cancel()
                await asyncio.gather(writing, return_exceptions=True)
            self.consumer = None
            await asyncio.shield(consumer.stop())

    async def _write(self, prepared: Prepared, offsets: dict[TopicPartition, int]) -> None:
        """Apply a decoded batch, then commit its offsets (nothing is committed that was not applied)."""
        await self.intake.write(prepared)
        await self._commit(offsets)
        self.progress.finished([STREAM])

    async def _floors(self) -> dict[int, int]:
        """The Faust group's committed offsets on the partitions the reports group never committed.

        The worker's Faust group (``SEKAT_APP_ID``) applied the reports before this group existed: an upgraded
        fleet starts where it had got to instead of applying the whole topic again. Read before joining,
        so that no batch is fetched before they are known.
        """
        partitions = list(range(await self._partition_count()))
        if not partitions:
            return {}
        try:
            async with GroupOffsets(self.settings) as own:
                mine = await own.committed_or_none(partitions)
            async with GroupOffsets(self.settings, self.settings.app_id) as faust_group:
                before = await faust_group.committed_or_none(partitions)
        except SekatError as exc:
            log.warning("could not read where the reports were applied up to (%s); starting where the reports "
                        "group is, or at %s", exc, self.settings.kafka_offset_reset)
            return {}
        return {p: before[p] for p in partitions if mine.get(p, -1) < 0 and before.get(p, -1) >= 0}

    async def _partition_count(self) -> int:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(**self.settings.aiokafka_config())
        try:
            await admin.start()
            [meta] = (await admin.describe_topics([self.settings.topic_reports])) or [{}]
            return len(meta.get("partitions") or ())
        except (KafkaError, OSError, ValueError) as exc:
            log.warning("could not describe %s (%s)", self.settings.topic_reports, type(exc).__name__)
            return 0
        finally:
            await admin.close()

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        assert self.consumer is not None
        try:
            await self.consumer.commit(offsets)
            self.committed.update(offsets)
            for tp, offset in offsets.items():
                if offset >= self.floors.get(tp.partition, offset + 1):
                    del self.floors[tp.partition]
        except CommitFailedError:
            log.warning("reports offset commit failed after a rebalance; the batch will be applied again")
        except KafkaError as exc:
            log.warning("reports offset commit failed (%s); the batch may be applied again", type(exc).__name__)

    async def offsets(self) -> dict[tuple[str, int], tuple[int, int]]:
        """(end offset asked of the broker, committed offset) per assigned partition, for the lag gauge (before a
        partition's first commit here, its fetch position stands in); tells ``progress`` whether reports wait."""
        out = await assigned_offsets(self.consumer, self.committed)
        self.progress.saw_lag([STREAM] if any(end > done for end, done in out.values()) else [])
        return out

    def crashed(self, exc: BaseException) -> None:
        """``run`` raised ``exc``: the reports stream is stalled until it works again; counted as an apply error."""
        self.metrics.apply_errors.inc()
        self.progress.crashed([STREAM])


class _StartWhereFaustWas(ConsumerRebalanceListener):  # type: ignore[misc]
    """Assigned partitions with a floor start there (no wait here: the fetcher may already be running)."""

    def __init__(self, owner: ReportsConsumer) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        for tp in revoked:
            self.owner.committed.pop(tp, None)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        consumer = self.owner.consumer
        for tp in assigned:
            if consumer is not None and tp.partition in self.owner.floors:
                consumer.seek(tp, self.owner.floors[tp.partition])
