"""The screening consumer: Kafka batches straight into ``Screen.start``, offsets committed after the output is acked.

Why not a Faust agent: Faust's per-event stream machinery (conductor, per-message queue, stream
iteration, sensors) costs several times Sekat's own work per event (docs/performance.md). The
screening path therefore reads with aiokafka's ``getmany`` (one call per batch) inside the Faust
worker, which still hosts everything else: the web server (/metrics, /healthz), the replica task,
and the low-volume agents.

Guarantee (at-least-once): a batch's offsets are committed only after every
command, decision and dead letter it produced, and every batch before it, was
acknowledged by Kafka (acks=all). If the worker dies between the two, the next
owner of the partitions re-decides the batch and re-sends the same
``command_id``s. The acknowledgements, rule-state writes and commit of one
batch overlap the deciding of the next (``Pipeline``): a decision's latency
does not include the previous batch's round trips.
Each stream's progress (a batch finished, or nothing waiting) is kept in ``Progress`` for ``/healthz``
and ``sekat_stream_stalled`` (streams/progress.py). ``run`` may be called again after it raised: the
worker supervises it (``streams.retry.supervise``), and ``crashed`` marks its streams stalled meanwhile.
The consumer group is ``{SEKAT_APP_ID}.screen`` (Faust's own group is
``{SEKAT_APP_ID}``: the two use different assignors and cannot share one).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import CommitFailedError, KafkaError
from sekat.metrics.worker import WorkerMetrics
from sekat.streams.progress import Progress
from sekat.streams.screening import Screen

from sekat.settings import Settings

log = logging.getLogger(__name__)
IN_FLIGHT = 4  # batches decided but not yet acknowledged, written and committed


class ScreeningConsumer:
    def __init__(self, settings: Settings, screens: Mapping[str, Screen[Any]], metrics: WorkerMetrics) -> None:
        self.settings = settings
        self.screens = dict(screens)  # input topic -> screen
        self.metrics = metrics
        self.consumer: AIOKafkaConsumer | None = None
        self.batches = 0
        self.committed: dict[Any, int] = {}
        self.behind = False  # the last fetch was at least half a batch: records are waiting (streams/intake.py)
        self.progress = Progress([screen.stream for screen in self.screens.values()], settings.stall_after_s)

    def group_id(self) -> str:
        return f"{self.settings.app_id}.screen"

    async def start(self) -> None:
        self.committed = {}  # a restarted consumer commits afresh; the group's offsets are the truth
        self.consumer = AIOKafkaConsumer(
            *self.screens,
            **self.settings.aiokafka_config(),
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
        self.progress.restart()  # the time spent loading the replica and joining the group is not a stall

    async def run(self) -> None:
        """Decide batches until cancelled; batch N+1 is decided while N is acknowledged and written (``Pipeline``).

        Where a stream decodes in child processes (``sekat.decode.processes``), the loop reads one batch ahead:
        batch N+1 is handed to them before batch N is decided, so their decoding and the deciding overlap.
        When no batch is waiting, the batch in hand is decided at once.
        """
        processes = [screen.processes for screen in self.screens.values() if screen.processes is not None]
        for pool in processes:
            await pool.start()
        await self.start()
        consumer = self.consumer
        assert consumer is not None
        pipeline = Pipeline(self._commit, IN_FLIGHT, self._finished)
        ahead: FetchedBatch | None = None  # fetched, decoding in the child processes, not yet decided
        try:
            while True:
                pipeline.check()  # a batch whose acknowledgement or write failed stops the consumer
                batch = await consumer.getmany(timeout_ms=0 if ahead else 1000, max_records=self.settings.batch_max)
                self.behind = sum(map(len, batch.values())) * 2 >= self.settings.batch_max
                fetched = self._fetched(batch) if batch else None
                if ahead is not None:
                    await self._decide(ahead, pipeline)
                    ahead = None
                if fetched is not None:
                    if fetched.prepared:
                        ahead = fetched
                    else:
                        await self._decide(fetched, pipeline)
        finally:
            if ahead is not None:  # not decided: its offsets are not committed, the next owner decides it
                for prepared in ahead.prepared.values():
                    asyncio.ensure_future(prepared).cancel()
            # The last batches' output and offsets, so that the next owner does not re-decide them.
            if not await pipeline.drain(5):
                log.warning("the last batches were not all acknowledged and committed; they may be re-decided")
            await asyncio.shield(consumer.stop())
            self.consumer = None  # no lag is read from a stopped consumer
            for pool in processes:
                await asyncio.shield(pool.stop())

    def crashed(self, exc: BaseException) -> None:
        """``run`` raised ``exc``: every stream it serves is stalled until it works again; counted."""
        self.metrics.screening_crashes.inc()
        self.progress.crashed(self.progress.streams)

    def _fetched(self, batch: Mapping[Any, list[Any]]) -> "FetchedBatch":
        by_topic: dict[str, list[Any]] = {}
        for tp, records in batch.items():
            by_topic.setdefault(tp.topic, []).extend(records)
        prepared = {topic: self.screens[topic].prepare(records) for topic, records in by_topic.items()}
        return FetchedBatch(by_topic, {tp: records[-1].offset + 1 for tp, records in batch.items()},
                       {topic: p for topic, p in prepared.items() if p is not None})

    async def _decide(self, fetched: "FetchedBatch", pipeline: "Pipeline") -> None:
        await pipeline.wait_for_room()
        self.progress.taken(self.screens[topic].stream for topic in fetched.by_topic)
        # Transfers and calls are independent streams: one's decoding runs while the other waits for
        # Redis, so a mixed batch costs one wait, not two.
        read_back = pipeline.read_back
        pending = await asyncio.gather(*(self.screens[topic].start(records, read_back, fetched.prepared.get(topic))
                                         for topic, records in fetched.by_topic.items()))
        pipeline.add(pending, fetched.offsets)
        self.batches += 1

    def _finished(self, pending: Sequence[Any]) -> None:
        self.progress.finished(batch.screen.stream for batch in pending)

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
        here, its fetch position stands in for the committed offset (records fetched and not
        yet finished count as waiting in ``Progress`` all the same). ``Progress`` learns which
        streams have lag; when the broker does not answer it keeps what it knew.
        """
        out = await assigned_offsets(self.consumer, self.committed)
        self.progress.saw_lag(self.screens[topic].stream for (topic, _), (end, done) in out.items() if end > done)
        return out


async def assigned_offsets(consumer: AIOKafkaConsumer | None, committed: Mapping[Any, int]
                           ) -> dict[tuple[str, int], tuple[int, int]]:
    """(end offset asked of the broker, offset committed here or else the fetch position) per partition
    ``consumer`` is assigned; empty while it is not started or rebalancing (asked again next interval)."""
    if consumer is None:
        return {}
    try:
        assigned = sorted(consumer.assignment())
        ends = await consumer.end_offsets(assigned) if assigned else {}
        out = {}
        for tp in assigned:
            done = committed.get(tp)
            if done is None:
                done = await consumer.position(tp)
            out[tp.topic, tp.partition] = (int(ends[tp]), int(done))
        return out
    except Exception as exc:  # noqa: BLE001 - not started / rebalancing: try again next interval
        log.debug("consumer offsets not available: %s", exc)
        return {}


@dataclass
class FetchedBatch:
    """A batch as fetched: its records by topic, the offsets to commit after it, decoding started elsewhere."""

    by_topic: dict[str, list[Any]]
    offsets: dict[Any, int]
    prepared: dict[str, Awaitable[list[Any]]]


class Pipeline:
    """Batches decided but not yet acknowledged, written and committed: at most ``depth`` of them.

    ``add`` takes a batch's ``PendingBatch``es (one per stream) once they are handed to the producer; the rest runs
    here, in this order:
    - output: the producer sends records in the order they were handed over;
    - rule state: a batch writes only after its own acknowledgements and after the batch before it wrote;
      ``read_back`` is the newest writes a rule-state read can see, which the next batch awaits before
      reading (so a window or a warning is seen as if the batches had run one after the other);
    - offsets: a batch's are committed once it and every batch before it are acknowledged and written, so
      a committed offset always means every output before it is durable. One commit is in flight at a
      time, of the newest such offsets: a commit per batch, one round trip each and in order, would limit
      a worker that decides many small batches a second.
    """

    def __init__(self, commit: Callable[[dict[Any, int]], Awaitable[None]], depth: int,
                 finished: Callable[[Sequence[Any]], None] = lambda pending: None) -> None:
        self._commit = commit
        self._finished = finished  # told of each batch once it is acknowledged and written, in order
        self._depth = depth
        self._in_flight: deque[asyncio.Task[None]] = deque()
        self._written: asyncio.Future[None] | None = None  # the newest batch's rule-state writes
        self.read_back: asyncio.Future[None] | None = None
        self._to_commit: dict[Any, int] = {}  # durable batches' offsets, not yet committed
        self._committer: asyncio.Task[None] | None = None

    def check(self) -> None:
        """Forget finished batches; raise the error of one that failed."""
        while self._in_flight and self._in_flight[0].done():
            self._in_flight.popleft().result()

    async def wait_for_room(self) -> None:
        """Wait until fewer than ``depth`` batches are in flight."""
        self.check()
        while len(self._in_flight) >= self._depth:
            await self._in_flight.popleft()

    def add(self, pending: Sequence[Any], offsets: dict[Any, int]) -> None:
        written: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        before = self._in_flight[-1] if self._in_flight else None
        self._in_flight.append(asyncio.ensure_future(self._finish(pending, offsets, before, self._written, written)))
        self._written = written
        if any(batch.read_back for batch in pending):
            self.read_back = written

    async def drain(self, timeout: float) -> bool:
        """Finish every batch in flight and commit; False if that took longer than ``timeout`` seconds."""
        if not self._in_flight and self._committer is None:
            return True
        try:
            await asyncio.wait_for(asyncio.shield(self._finish_all()), timeout)
            return True
        except (asyncio.TimeoutError, asyncio.CancelledError):
            for task in self._in_flight:
                task.cancel()
            return False
        except Exception:  # noqa: BLE001 - a failed batch already stopped the consumer: that error is raised
            return False

    async def _finish_all(self) -> None:
        await asyncio.gather(*self._in_flight)
        while self._committer is not None and not self._committer.done():
            await self._committer

    async def _finish(self, pending: Sequence[Any], offsets: dict[Any, int], before: asyncio.Future[None] | None,
                      written_before: asyncio.Future[None] | None, written: asyncio.Future[None]) -> None:
        try:
            await asyncio.gather(*(batch.acked() for batch in pending))
            if written_before is not None:
                await written_before
            await asyncio.gather(*(batch.write() for batch in pending))
        finally:
            if not written.done():
                written.set_result(None)  # a failed batch stops the consumer; later reads must not hang on it
        for batch in pending:
            batch.observe()
        if before is not None:
            await before
        self._finished(pending)
        self._to_commit.update(offsets)
        if self._committer is None or self._committer.done():
            self._committer = asyncio.ensure_future(self._commit_latest())

    async def _commit_latest(self) -> None:
        while self._to_commit:
            offsets, self._to_commit = self._to_commit, {}
            await self._commit(offsets)
