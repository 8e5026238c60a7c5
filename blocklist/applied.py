"""Waiting for filed reports to take effect: ``sekat blocklist import --wait-applied``.

A report is in effect on a worker once (1) the reports intake has applied it to the Redis index and (2) that
worker's replica has followed the change stream past the announcement. (1) is read from Kafka: the intake
commits a batch's offsets in the reports consumer group (``reports_group``) only after its index write, so a
committed offset at or past a partition's last imported record means every record of it was applied. (2) is read from Redis: every following replica keeps its change-stream id in
``{prefix}replica:seen`` (``blocklist.replica.positions``); once the index holds the import, the change
stream's last id is read and each worker that reported lately is waited for until it has passed that id.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from redis.exceptions import RedisError

from sekat.blocklist.connection import async_client
from sekat.blocklist.replica import positions, positions_key, stream_id
from sekat.errors import BlocklistUnavailable, SekatError
from sekat.settings import Settings

POLL_S = 0.2


@dataclass
class Applied:
    """How far the reports agent and the replicas are (for progress lines)."""

    reports: int = 0  # imported reports the index holds
    replicas: int = 0  # workers whose replica has them
    workers: int = 0  # workers seen following the change stream


class WaitTimeout(SekatError):
    """The import was not in effect everywhere within the time given."""


def reports_group(settings: Settings) -> str:
    """The reports intake's consumer group (``{SEKAT_APP_ID}.reports``; Faust's own group is ``SEKAT_APP_ID``)."""
    return f"{settings.app_id}.reports"


class GroupOffsets:
    """A consumer group's committed offsets on the reports topic (the intake's by default), through one admin
    connection."""

    def __init__(self, settings: Settings, group: str | None = None) -> None:
        from aiokafka.admin import AIOKafkaAdminClient

        self._settings = settings
        self._group = group if group is not None else reports_group(settings)
        self._admin = AIOKafkaAdminClient(**settings.aiokafka_config())

    async def __aenter__(self) -> "GroupOffsets":
        from aiokafka.errors import KafkaError

        try:
            await self._admin.start()
        except (KafkaError, OSError) as exc:
            await self._admin.close()
            raise BlocklistUnavailable(f"Kafka unavailable at {self._settings.kafka_bootstrap}: "
                                       f"{type(exc).__name__}") from exc
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._admin.close()

    async def committed(self, partitions: list[int]) -> dict[int, int]:
        """The committed offset per partition of the reports topic (0 where nothing was committed)."""
        return {p: max(offset, 0) for p, offset in (await self.committed_or_none(partitions)).items()}

    async def committed_or_none(self, partitions: list[int]) -> dict[int, int]:
        """The committed offset per partition of the reports topic (-1 where nothing was committed)."""
        from aiokafka import TopicPartition
        from aiokafka.errors import KafkaError

        try:
            done = await self._admin.list_consumer_group_offsets(
                self._group,
                partitions=[TopicPartition(self._settings.topic_reports, p) for p in partitions])
        except (KafkaError, OSError) as exc:
            raise BlocklistUnavailable(f"Kafka did not say the reports group's offsets: {type(exc).__name__}") from exc
        return {tp.partition: meta.offset for tp, meta in done.items()}


def applied_count(first: Mapping[int, int], ends: Mapping[int, int], done: Mapping[int, int]) -> int:
    """Records of ``[first, ends)`` per partition below the committed offsets ``done``."""
    return sum(max(0, min(done.get(p, 0), end) - first[p]) for p, end in ends.items())


async def wait_applied(settings: Settings, first: Mapping[int, int], ends: Mapping[int, int], timeout_s: float,
                       progress: Callable[[Applied], None] | None = None,
                       on_indexed: Callable[[], None] | None = None) -> Applied:
    """Wait until the records ``[first[p], ends[p])`` of the reports topic are in the index and on every replica.

    ``on_indexed`` is called once the index holds them. Raises ``WaitTimeout`` naming what was still missing
    after ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    total = sum(ends[p] - first[p] for p in ends)
    state = Applied()
    async with GroupOffsets(settings) as group:
        while True:
            state.reports = applied_count(first, ends, await group.committed(sorted(ends)))
            if progress is not None:
                progress(state)
            if state.reports >= total:
                break
            if time.monotonic() > deadline:
                raise WaitTimeout(f"--wait-applied: the index holds {state.reports:,} of {total:,} imported reports "
                                  f"after {timeout_s:.0f}s (is a worker running with SEKAT_APP_ID={settings.app_id}?)")
            await asyncio.sleep(POLL_S)
    if on_indexed is not None:
        on_indexed()
    client = async_client(settings.redis_url)
    try:
        last = await client.xrevrange(f"{settings.redis_prefix}bl:changes", count=1)
        want = stream_id(last[0][0].decode()) if last else (0, 0)
        while True:
            seen = positions(await client.hgetall(positions_key(settings.redis_prefix)), int(time.time() * 1000))
            state.workers = len(seen)
            state.replicas = sum(1 for at in seen.values() if at >= want)
            if progress is not None:
                progress(state)
            if state.replicas == state.workers:
                return state
            if time.monotonic() > deadline:
                raise WaitTimeout(f"--wait-applied: {state.workers - state.replicas} of {state.workers} workers' "
                                  f"replicas had not followed the change stream to the import after {timeout_s:.0f}s")
            await asyncio.sleep(POLL_S)
    except (RedisError, OSError) as exc:
        raise BlocklistUnavailable(f"Redis did not answer while waiting for the replicas: {type(exc).__name__}") from exc
    finally:
        await client.aclose()
