"""The replica's disk copy: every worker keeps the stored snapshot on its own disk, and a worker that starts
while Redis does not answer answers from it exactly as a worker loaded from Redis then did."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from sekat.blocklist import replica_snapshot as stored
from sekat.blocklist.replica import Replica
from sekat.blocklist.replica_disk import DiskCopy
from sekat.localstack.processes import free_port
from sekat.records import Status
from tests.integration import test_replica_snapshot
from tests.integration.test_replica_snapshot import PROBE, Index, answers, meta, started
from tests.support import Stack

pytestmark = pytest.mark.integration

index = test_replica_snapshot.index  # the fixture: a filled, built index under its own prefix


async def answers_from_disk(copy: DiskCopy, prefix: str) -> tuple[Replica, dict[str, Status]]:
    """A replica started against a Redis that refuses every connection, once it answers from ``copy``."""
    replica = Replica(f"redis://127.0.0.1:{free_port()}/0", prefix, disk=copy)
    task = asyncio.create_task(replica.start())
    try:
        await asyncio.wait_for(replica.ready.wait(), 10)
        assert replica.from_disk and replica.stats.loaded_from == "disk copy" and not replica.started.is_set()
        return replica, {k: e.status for k, e in replica.candidates(PROBE, time.time()).items()}
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_each_worker_keeps_the_stored_snapshot_on_disk_and_answers_from_it_without_redis(
        stack: Stack, index: Index, tmp_path: Path) -> None:
    prefix, _, _ = index
    first_copy, next_copy = DiskCopy(tmp_path / "a", prefix), DiskCopy(tmp_path / "b", prefix)
    first = await started(stack.redis.url, prefix, disk=first_copy)  # reads the index, stores it
    nxt = await started(stack.redis.url, prefix, disk=next_copy)  # loads what the first stored
    try:
        assert (first.stats.loaded_from, nxt.stats.loaded_from) == ("index", "stored snapshot")
        written = meta(stack.redis.url, prefix)
        assert written is not None and first_copy.current_gen() == next_copy.current_gen() == written.gen
        expected = await answers(stack.redis.url, prefix)
        for copy in (first_copy, next_copy):
            replica, got = await answers_from_disk(copy, prefix)
            assert got == expected and replica.stats.entries == first.stats.entries  # active (stored: revoked too)
            status = (await replica.lookup_many([PROBE[3]]))[PROBE[3]]
            assert status.source == "replica" and "details unavailable" in status.reason
            await replica.close()
    finally:
        await first.close()
        await nxt.close()


async def test_a_disk_copy_older_than_its_max_age_is_not_answered_from(
        stack: Stack, index: Index, tmp_path: Path) -> None:
    prefix, _, _ = index
    await (await started(stack.redis.url, prefix, disk=DiskCopy(tmp_path, prefix))).close()
    replica = Replica(f"redis://127.0.0.1:{free_port()}/0", prefix, disk=DiskCopy(tmp_path, prefix, max_age_s=0))
    task = asyncio.create_task(replica.start())
    try:
        await asyncio.sleep(1.5)  # a first attempt, the copy refused, a second attempt
        assert not replica.ready.is_set() and not replica.from_disk
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await replica.close()


async def test_a_running_worker_copies_the_snapshot_another_stored_and_keeps_it_young(
        stack: Stack, index: Index, tmp_path: Path) -> None:
    """Every disk copy is taken from the stored snapshot: once it is half the copies' max age old a running
    worker refreshes it, and every other running worker copies the new one to its disk."""
    prefix, _, _ = index
    refresher_copy, other_copy = DiskCopy(tmp_path / "a", prefix, max_age_s=2), DiskCopy(tmp_path / "b", prefix)
    refresher = await started(stack.redis.url, prefix, disk=refresher_copy, snapshot_refresh_s=0.1)
    other = await started(stack.redis.url, prefix, disk=other_copy)
    try:
        before = meta(stack.redis.url, prefix)
        assert before is not None and other_copy.current_gen() == before.gen
        assert not await asyncio.to_thread(refresher.refresh_stored_snapshot)  # young: nothing to do
        assert not await asyncio.to_thread(other.copy_stored_to_disk)  # it holds that one already
        await asyncio.sleep(1.2)  # past half of 2 s
        assert await asyncio.to_thread(refresher.refresh_stored_snapshot)
        after = meta(stack.redis.url, prefix)
        assert after is not None and after.gen != before.gen and refresher_copy.current_gen() == after.gen
        assert await asyncio.to_thread(other.copy_stored_to_disk)
        assert other_copy.current_gen() == after.gen
        found = other_copy.load()
        assert found is not None and found[0].as_of == after.written_at and found[1].build == "b1"
    finally:
        await refresher.close()
        await other.close()


def test_stored_snapshot_and_disk_copies_agree_on_what_could_be_missed() -> None:
    state = stored.StreamState(added=10, length=10, last_id="5-0")
    assert stored.gap("b1", 10, "5-0", "b1", state, 100) == ""
    assert "build" in stored.gap("b1", 10, "5-0", "b2", state, 100)
    assert "trimmed" in stored.gap("b1", 3, "2-0", "b1", stored.StreamState(10, 5, "5-0"), 100)
    assert "behind" in stored.gap("b1", 3, "2-0", "b1", state, 5)


async def test_a_worker_on_a_redis_cluster_that_does_not_answer_screens_from_its_disk_copy(
        stack: Stack, index: Index, tmp_path: Path) -> None:
    """A cluster client fails with its own exception when no seed answers: the start-up still goes to the disk
    copy and keeps trying, rather than ending the replica's task."""
    prefix, _, _ = index
    copy = DiskCopy(tmp_path, prefix)
    await (await started(stack.redis.url, prefix, disk=copy)).close()
    expected = await answers(stack.redis.url, prefix)
    replica = Replica(f"redis+cluster://127.0.0.1:{free_port()}", prefix, disk=copy)
    task = asyncio.create_task(replica.start())
    try:
        await asyncio.wait_for(replica.ready.wait(), 10)
        assert replica.from_disk
        assert {k: e.status for k, e in replica.candidates(PROBE, time.time()).items()} == expected
        hit = (await replica.lookup_many([PROBE[3]]))[PROBE[3]]  # the evidence read fails: its own answer
        assert hit.status == expected[PROBE[3]] and "details unavailable" in hit.reason
        await asyncio.sleep(1.0)
        assert not task.done()  # still trying to reach the cluster
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await replica.close()
