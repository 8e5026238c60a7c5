"""The relay: commands from the command topics, POSTed signed to each configured institution.

    getmany -> per (partition, institution) lane, in offset order -> sign, POST, retry -> ack -> commit

Topics: ``SEKAT_TOPIC_FREEZE``, ``SEKAT_TOPIC_BLOCK`` and, under per-institution routing, each institution's
own topic; consumer group ``{SEKAT_APP_ID}.relay``, so several relays split the partitions as workers do. A
command is keyed by the institution that must act; one the institutions file does not list is not the
relay's to deliver (that institution reads Kafka) and is passed over.

Ordering: a lane delivers one command at a time, so an institution receives a partition's commands in
order; the next one starts only once the previous was accepted (2xx) or given up. Lanes of different
institutions, or of different partitions, run side by side.

At-least-once: a partition's offset is committed only up to its first command not yet delivered or given up
(each second, and when partitions are revoked). A relay killed with commands in flight leaves them
uncommitted: the next owner delivers them again, with the same ``webhook-id`` (the ``command_id``), which is
what an institution de-duplicates on. A command still failing ``SEKAT_RELAY_GIVE_UP_S`` after its first
attempt is written to ``SEKAT_TOPIC_UNDELIVERED`` with the last error (acks=all) before its offset counts as
done. Attempts are paced by ``breaker.backoff`` and each institution's ``breaker.Breaker``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from sekat.relay.breaker import Breaker, backoff
from sekat.institutions import Institution
from sekat.relay.metrics import RelayMetrics
from sekat.relay.signing import webhook_headers
from sekat.relay.undelivered import undelivered_record

from sekat.settings import Settings

log = logging.getLogger(__name__)
# Commands read and not yet done, all partitions together (~1 KB each): past it, the relay stops reading. An
# institution down long enough to hold this many stalls the others' reading too (docs/webhooks.md).
MAX_PENDING = 50_000
COMMIT_EVERY_S = 1.0


def command_topics(settings: Settings) -> list[str]:
    return [settings.topic_freeze, settings.topic_block, *settings.command_topics().values()]


@dataclass
class Job:
    record: Any  # an aiokafka ConsumerRecord
    institution: Institution
    done: bool = False


@dataclass
class PartitionState:
    """Offsets read from one partition, in order, until everything before them is done."""

    jobs: deque[Job] = field(default_factory=deque)
    next_offset: int | None = None  # one past the last offset read

    def committable(self) -> int | None:
        while self.jobs and self.jobs[0].done:
            self.jobs.popleft()
        return self.jobs[0].record.offset if self.jobs else self.next_offset


class Relay:
    def __init__(self, settings: Settings, institutions: Mapping[str, Institution], metrics: RelayMetrics,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.institutions = dict(institutions)
        self.metrics = metrics
        self.clock = clock
        self.breakers = {name: Breaker(settings.relay_breaker_failures, settings.relay_breaker_open_s, clock)
                         for name in institutions}
        self.partitions: dict[TopicPartition, PartitionState] = {}
        self.lanes: dict[tuple[TopicPartition, str], deque[Job]] = {}
        self.tasks: dict[tuple[TopicPartition, str], asyncio.Task[None]] = {}
        self.pending = 0
        self.room = asyncio.Event()
        self.committed: dict[TopicPartition, int] = {}
        self.assigned = asyncio.Event()
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.session: aiohttp.ClientSession | None = None

    def configure(self, institution: Institution) -> None:
        """Serve ``institution`` (new, or its URL or secrets changed) from the next command read; a command being
        retried uses the new URL and secrets from its next attempt."""
        self.institutions[institution.id] = institution
        self.breakers.setdefault(institution.id, Breaker(self.settings.relay_breaker_failures,
                                                         self.settings.relay_breaker_open_s, self.clock))
        self.metrics.serve(institution.id)

    def remove(self, ident: str) -> None:
        """Deliver nothing more read for ``ident``; commands already read are delivered or given up as before."""
        self.institutions.pop(ident, None)

    def group_id(self) -> str:
        return f"{self.settings.app_id}.relay"

    async def run(self) -> None:
        settings = self.settings
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=settings.relay_timeout_ms / 1000))
        self.producer = AIOKafkaProducer(acks="all", **settings.aiokafka_config())
        self.consumer = AIOKafkaConsumer(group_id=self.group_id(), enable_auto_commit=False,
                                         auto_offset_reset=settings.kafka_offset_reset, **settings.aiokafka_config())
        self.consumer.subscribe(command_topics(settings), listener=_Rebalance(self))
        await self.producer.start()
        await self.consumer.start()
        last_commit = self.clock()
        try:
            while True:
                if self.pending < MAX_PENDING:
                    batches = await self.consumer.getmany(timeout_ms=200, max_records=MAX_PENDING - self.pending)
                    for tp, records in batches.items():
                        for record in records:
                            self._dispatch(tp, record)
                else:  # full: read on once commands are done, and go on committing meanwhile
                    self.room.clear()
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self.room.wait(), COMMIT_EVERY_S)
                if self.clock() - last_commit >= COMMIT_EVERY_S:
                    await self._commit(list(self.partitions))
                    last_commit = self.clock()
        finally:
            await self.stop()

    async def stop(self) -> None:
        for task in list(self.tasks.values()):
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        if self.consumer is not None:
            try:
                await self._commit(list(self.partitions))
            finally:
                await self.consumer.stop()
        if self.producer is not None:
            await self.producer.stop()
        if self.session is not None:
            await self.session.close()

    # -- reading -------------------------------------------------------------------------------------------------
    def _dispatch(self, tp: TopicPartition, record: Any) -> None:
        state = self.partitions.setdefault(tp, PartitionState())
        state.next_offset = record.offset + 1
        institution = self.institutions.get((record.key or b"").decode("utf-8", "replace"))
        if institution is None:
            return  # not an institution the relay serves: nothing to wait for before committing past it
        job = Job(record, institution)
        state.jobs.append(job)
        self.pending += 1
        self.metrics.pending.labels(institution.id).inc()
        lane_key = (tp, institution.id)
        self.lanes.setdefault(lane_key, deque()).append(job)
        if lane_key not in self.tasks:
            self.tasks[lane_key] = asyncio.create_task(self._lane(lane_key), name=f"relay-{tp.topic}-{tp.partition}-"
                                                                                    f"{institution.id}")

    async def _lane(self, lane_key: tuple[TopicPartition, str]) -> None:
        lane = self.lanes[lane_key]
        try:
            while lane:
                job = lane[0]
                await self._deliver(job)
                lane.popleft()
                self._done(job)
        finally:
            if self.tasks.get(lane_key) is asyncio.current_task():
                del self.tasks[lane_key]
                if not lane:
                    self.lanes.pop(lane_key, None)

    def _done(self, job: Job) -> None:
        if job.done:  # its partition was revoked meanwhile
            return
        job.done = True
        self.pending -= 1
        self.metrics.pending.labels(job.institution.id).dec()
        self.room.set()

    # -- delivering ------------------------------------------------------------------------------------------------
    async def _deliver(self, job: Job) -> None:
        settings, inst, metrics = self.settings, job.institution, self.metrics
        breaker = self.breakers[inst.id]
        value: bytes = job.record.value or b""
        command_id, error = _command_id(value)
        first_wall, first = time.time(), self.clock()
        deadline = first + settings.relay_give_up_s
        attempts = 0
        while command_id is not None:
            if not await breaker.wait_turn(deadline):
                break
            attempts += 1
            inst = self.institutions.get(inst.id, inst)  # its URL and secrets as now configured
            try:
                error = await self._post(inst, command_id, value)
            except asyncio.CancelledError:
                breaker.probing = False  # a probe cut short by a revocation: let another lane probe
                raise
            breaker.record(error is None, error)
            metrics.breaker_open.labels(inst.id).set(1 if breaker.is_open else 0)
            if error is None:
                accepted = time.time()
                metrics.delivered.labels(inst.id).inc()
                metrics.last_accepted.labels(inst.id).set(accepted)
                if job.record.timestamp:
                    metrics.latency.labels(inst.id).observe(max(0.0, accepted - job.record.timestamp / 1000))
                return
            metrics.failed.labels(inst.id).inc()
            pause = backoff(attempts, settings.relay_retry_base_ms / 1000, settings.relay_retry_max_ms / 1000)
            if self.clock() + pause >= deadline:
                break
            log.info("relay: %s refused command %s (attempt %d): %s; again in %.1f s", inst.id, command_id,
                     attempts, error, pause)
            await asyncio.sleep(pause)
            metrics.retried.labels(inst.id).inc()
        if error is None:  # never tried: the breaker stayed open until the give-up time
            error = f"circuit breaker open; the institution's last error: {breaker.last_error}"
        await self._give_up(job, command_id or "", error, attempts, first_wall)

    async def _post(self, inst: Institution, command_id: str, body: bytes) -> str | None:
        """None when the institution accepted the command, else what went wrong."""
        assert self.session is not None
        headers = webhook_headers(command_id, int(time.time()), body, inst.keys)
        try:
            async with self.session.post(inst.url, data=body, headers=headers, allow_redirects=False) as resp:
                if 200 <= resp.status < 300:
                    return None
                text = (await resp.content.read(200)).decode("utf-8", "replace").strip()
                return f"HTTP {resp.status}: {text}" if text else f"HTTP {resp.status}"
        except asyncio.TimeoutError:
            return f"no answer within {self.settings.relay_timeout_ms} ms"
        except aiohttp.ClientError as exc:
            return f"{type(exc).__name__}: {exc}"

    async def _give_up(self, job: Job, command_id: str, error: str, attempts: int, first_wall: float) -> None:
        assert self.producer is not None
        r = job.record
        log.warning("relay: gave up command %s to %s after %d attempt(s): %s", command_id, job.institution.id,
                    attempts, error)
        value = undelivered_record(command_id=command_id, institution=job.institution.id, url=job.institution.url,
                                   error=error, attempts=attempts, first_attempt_at=first_wall,
                                   given_up_at=time.time(), topic=r.topic, partition=r.partition, offset=r.offset,
                                   timestamp_ms=r.timestamp, value=r.value or b"")
        while True:  # the offset may not be committed before Kafka has the dead letter
            try:
                await (await self.producer.send(self.settings.topic_undelivered, value,
                                                key=job.institution.id.encode()))
                break
            except Exception as exc:  # noqa: BLE001 - Kafka unavailable: keep the command until it is written
                log.warning("relay: cannot write the undelivered command %s yet: %s", command_id, exc)
                await asyncio.sleep(1.0)
        self.metrics.given_up.labels(job.institution.id).inc()

    # -- committing ------------------------------------------------------------------------------------------------
    async def _commit(self, tps: list[TopicPartition]) -> None:
        assert self.consumer is not None
        offsets = {}
        for tp in tps:
            state = self.partitions.get(tp)
            position = state.committable() if state else None
            if position is not None and self.committed.get(tp) != position:
                offsets[tp] = position
        if offsets:
            await self.consumer.commit(offsets)
            self.committed.update(offsets)

    async def revoked(self, tps: list[TopicPartition]) -> None:
        """Partitions leave this relay: commit what is done, stop their lanes (the next owner sends the rest)."""
        try:
            await self._commit([tp for tp in tps if tp in self.partitions])
        except Exception as exc:  # noqa: BLE001 - the next owner re-delivers from the last commit
            log.warning("relay: commit on revocation failed: %s", exc)
        for lane_key in [k for k in self.tasks if k[0] in tps]:
            self.tasks.pop(lane_key).cancel()
        for tp in tps:
            state = self.partitions.pop(tp, None)
            self.committed.pop(tp, None)
            for job in state.jobs if state else ():
                if not job.done:
                    job.done = True
                    self.pending -= 1
                    self.metrics.pending.labels(job.institution.id).dec()
        for lane_key in [k for k in self.lanes if k[0] in tps]:
            del self.lanes[lane_key]
        self.room.set()


def _command_id(value: bytes) -> tuple[str | None, str | None]:
    try:
        command_id = orjson.loads(value).get("command_id")
    except (orjson.JSONDecodeError, AttributeError):
        return None, "not a JSON command"
    if not isinstance(command_id, str) or not command_id.strip():
        return None, "no command_id"
    return command_id, None


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.relay.revoked(list(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("Relay ready: partitions assigned %s", sorted(f"{tp.topic}/{tp.partition}" for tp in assigned))
        self.relay.assigned.set()
