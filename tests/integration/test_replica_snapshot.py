"""The stored replica snapshot: the next worker starts from it and the change stream, answering exactly as a
worker that read the whole index; whenever following from it could miss something, it reads the index."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import orjson
import pytest
import redis
from redis.exceptions import ResponseError

from sekat.blocklist import index_scan
from sekat.blocklist import replica_snapshot as stored
from sekat.blocklist.connection import sync_client
from sekat.blocklist.replica import Replica
from sekat.blocklist.store import BlocklistStore
from sekat.localstack.processes import free_port
from sekat.localstack.redis_servers import RedisServer
from sekat.records import Status
from tests.support import Stack, file_report, unique

pytestmark = pytest.mark.integration

LISTED = [f"phone:+6011{i:07d}" for i in range(30)] + [f"account:CIBBMYKL:80012{i:05d}" for i in range(30)]
PROBE = LISTED + ["phone:+60190000001", "phone:+60190000002", "account:MBBEMYKL:9000000001"]


async def filled(url: str) -> tuple[str, BlocklistStore]:
    """A built index of LISTED (every fifth one revoked on appeal, so kept in the index but never matched)."""
    prefix = unique("snap") + ":"
    store = BlocklistStore.from_url(url, prefix)
    for i, key in enumerate(LISTED):
        await file_report(store, key, Status.CONFIRMED if i % 2 else Status.REPORTED, "PDRM", "scam", f"C{i}")
        if i % 5 == 0:  # reports are ordered by their millisecond timestamps: the appeal comes later
            later = datetime.now(timezone.utc) + timedelta(milliseconds=10)
            await file_report(store, key, Status.REVOKED, "NSRC", "appeal upheld", reported_at=later)
    await store.mark_built("b1")
    return prefix, store


Index = tuple[str, BlocklistStore, redis.Redis]


@pytest.fixture
async def index(stack: Stack) -> AsyncIterator[Index]:
    """A filled, built index under its own prefix, its store, and a plain client of the same Redis."""
    prefix, store = await filled(stack.redis.url)
    client = sync_client(stack.redis.url)
    try:
        yield prefix, store, client
    finally:
        client.close()
        await store.close()


async def started(url: str, prefix: str, **options: int | bool | float) -> Replica:
    replica = Replica(url, prefix, **options)  # type: ignore[arg-type]
    await replica.start()
    return replica


async def answers(url: str, prefix: str) -> dict[str, Status]:
    """What a worker that reads the whole index answers (no stored snapshot involved)."""
    fresh = await started(url, prefix, stored_snapshot=False)
    try:
        assert fresh.stats.loaded_from == "index"
        return {k: e.status for k, e in fresh.candidates(PROBE, time.time()).items()}
    finally:
        await fresh.close()


async def from_stored(url: str, prefix: str, **options: int | bool | float) -> dict[str, Status]:
    """What a worker starting now answers; it must have loaded the stored snapshot."""
    nxt = await started(url, prefix, **options)
    try:
        assert nxt.stats.loaded_from == "stored snapshot"
        return {k: e.status for k, e in nxt.candidates(PROBE, time.time()).items()}
    finally:
        await nxt.close()


def meta(url: str, prefix: str) -> stored.Meta | None:
    client = sync_client(url)
    try:
        raw = client.get(stored.meta_key(prefix))
        return stored.Meta(**orjson.loads(raw)) if raw else None
    finally:
        client.close()


async def changes_after_the_snapshot(store: BlocklistStore) -> None:
    """A new listing, a revocation of a loaded entry, a re-listing of a revoked one."""
    later = datetime.now(timezone.utc) + timedelta(milliseconds=20)
    await file_report(store, "phone:+60190000001", Status.CONFIRMED, "NSRC")
    await file_report(store, LISTED[1], Status.REVOKED, "NSRC", "appeal upheld", reported_at=later)
    await file_report(store, LISTED[5], Status.CONFIRMED, "PDRM", "listed again", reported_at=later)


async def test_the_next_worker_starts_from_the_stored_snapshot_and_sees_every_change_since(stack: Stack,
        index: Index) -> None:
    prefix, store, client = index
    first = await started(stack.redis.url, prefix)
    assert first.stats.loaded_from == "index"
    written = meta(stack.redis.url, prefix)
    # every entry of the index stored (revoked ones too, for the entry counts); 48 of them active
    assert written is not None and written.entries == 60 and first.stats.entries == 48 and written.build == "b1"
    await first.close()

    await changes_after_the_snapshot(store)
    nxt = await started(stack.redis.url, prefix)
    try:
        assert nxt.stats.loaded_from == "stored snapshot"
        assert nxt.stats.changes_applied >= 3  # caught up before it said ready
        assert nxt.ready.is_set()
        got = {k: e.status for k, e in nxt.candidates(PROBE, time.time()).items()}
        assert got == await answers(stack.redis.url, prefix)
        assert "phone:+60190000001" in got and LISTED[1] not in got and LISTED[5] in got
        assert nxt.stats.entries == len(got)
        # Evidence of a hit still comes from the index.
        assert (await nxt.lookup_many([LISTED[3]]))[LISTED[3]].case_ref == "C3"
        assert meta(stack.redis.url, prefix) == written  # a loader does not rewrite the snapshot
    finally:
        await nxt.close()


async def test_a_change_made_while_the_index_is_read_reaches_the_next_worker(stack: Stack, index: Index,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The stored snapshot is as of the stream id taken before the read: what changed during it is replayed."""
    prefix, store, client = index
    reads = 0
    scan = index_scan.scan_index

    def slow_scan(c: redis.Redis, p: str) -> Iterator[index_scan.Batch]:  # a revocation and a listing made part-way
        nonlocal reads
        for batch in scan(c, p):
            reads += 1
            if reads == 1:
                done = threading.Event()

                def change() -> None:
                    import asyncio
                    asyncio.run(_change(stack.redis.url, prefix))
                    done.set()
                threading.Thread(target=change).start()
                assert done.wait(10)
            yield batch
    monkeypatch.setattr(index_scan, "scan_index", slow_scan)
    snap = index_scan.read_index(stack.redis.url, prefix)
    assert reads >= 1
    written = meta(stack.redis.url, prefix)
    assert written is not None and written.last_id == snap.last_id

    got = await from_stored(stack.redis.url, prefix)
    assert got == await answers(stack.redis.url, prefix)
    assert "phone:+60190000002" in got and LISTED[3] not in got


async def _change(url: str, prefix: str) -> None:
    store = BlocklistStore.from_url(url, prefix)
    later = datetime.now(timezone.utc) + timedelta(milliseconds=20)
    await file_report(store, "phone:+60190000002", Status.CONFIRMED, "NSRC")
    await file_report(store, LISTED[3], Status.REVOKED, "NSRC", "appeal upheld", reported_at=later)
    await store.close()


@pytest.mark.parametrize("spoil", ["rebuilt", "being rebuilt", "trimmed", "too far behind", "chunk gone", "off"])
async def test_a_snapshot_that_could_miss_a_change_is_not_used(stack: Stack, index: Index, spoil: str) -> None:
    prefix, store, client = index
    first = await started(stack.redis.url, prefix)
    await first.close()
    written = meta(stack.redis.url, prefix)
    assert written is not None
    await changes_after_the_snapshot(store)
    options: dict[str, int | bool] = {}
    if spoil == "rebuilt":
        await store.mark_built("b2")
    elif spoil == "being rebuilt":
        await store.mark_built(None)
    elif spoil == "trimmed":  # the stream lost records the snapshot would need
        client.xtrim(f"{prefix}bl:changes", maxlen=1, approximate=False)
    elif spoil == "too far behind":
        options["snapshot_max_behind"] = 2
    elif spoil == "chunk gone":
        client.delete(stored.chunk_key(prefix, written.gen, 0))
    else:
        options["stored_snapshot"] = False
    nxt = await started(stack.redis.url, prefix, **options)
    try:
        assert nxt.stats.loaded_from == "index"
        got = {k: e.status for k, e in nxt.candidates(PROBE, time.time()).items()}
        assert got == await answers(stack.redis.url, prefix)
        assert "phone:+60190000001" in got and LISTED[1] not in got
        rewritten = meta(stack.redis.url, prefix)
        if spoil in ("being rebuilt", "off"):  # nothing stored for an unbuilt index, nor when switched off
            assert rewritten == written
        else:  # the read stored a fresh snapshot for the next worker
            assert rewritten is not None and rewritten.gen != written.gen
            assert rewritten.entries == sum(1 for k in client.scan_iter(f"{prefix}bl:*") if not k.endswith(b":changes"))
            assert client.ttl(stored.chunk_key(prefix, rewritten.gen, 0)) == -1  # permanent
            if spoil != "chunk gone":
                assert 0 < client.ttl(stored.chunk_key(prefix, written.gen, 0)) <= stored.RETIRE_TTL_S
    finally:
        await nxt.close()


async def test_a_writer_that_died_holds_a_starting_worker_up_only_until_its_lock_expires(stack: Stack,
        index: Index) -> None:
    prefix, store, client = index
    client.set(f"{prefix}replica:snapshot:writing", "died-mid-read", px=1500)  # nobody renews it
    started_at = time.perf_counter()
    first = await started(stack.redis.url, prefix)
    await first.close()
    assert time.perf_counter() - started_at >= 1.0  # it waited for the other writer...
    assert first.stats.loaded_from == "index"  # ...which stored nothing: it read the index itself
    written = meta(stack.redis.url, prefix)  # and stored it, the lock being free by then
    assert written is not None and written.entries == 60
    assert client.get(f"{prefix}replica:snapshot:writing") is None


async def test_nothing_is_stored_when_a_rebuild_ends_during_the_read(stack: Stack, index: Index,
        monkeypatch: pytest.MonkeyPatch) -> None:
    prefix, store, client = index
    scan = index_scan.scan_index

    def rebuilt_meanwhile(c: redis.Redis, p: str) -> Iterator[index_scan.Batch]:
        for batch in scan(c, p):
            client.set(f"{prefix}index:built", "b2")
            yield batch
    monkeypatch.setattr(index_scan, "scan_index", rebuilt_meanwhile)
    index_scan.read_index(stack.redis.url, prefix)
    assert meta(stack.redis.url, prefix) is None
    assert not list(client.scan_iter(match=f"{prefix}replica:snapshot*"))  # chunks dropped, lock released


async def test_a_redis_refusing_writes_still_lets_a_worker_start(tmp_path: Path) -> None:
    """Storing the snapshot is a favour to the next worker: a Redis at its maxmemory refuses it, the read goes on."""
    server = RedisServer(tmp_path / "redis", free_port())
    server.start()
    client = sync_client(server.url)
    try:
        prefix, store = await filled(server.url)
        await store.close()
        client.config_set("maxmemory", 1)  # every write refused (OOM), reads answered
        with pytest.raises(ResponseError):
            client.set("probe", "x")
        replica = await started(server.url, prefix)
        try:
            assert replica.stats.loaded_from == "index" and replica.stats.entries == 48
            assert not list(client.scan_iter(match=f"{prefix}replica:snapshot*"))
        finally:
            await replica.close()
    finally:
        client.close()
        server.stop()


async def test_a_worker_starting_while_another_stores_waits_for_its_snapshot(stack: Stack, index: Index) -> None:
    """On one Redis, N workers reading the index at once each take N times as long: one reads, the others wait."""
    prefix, store, client = index
    # Another worker is part-way through its read: it holds the lock (renewed while it reads).
    state = stored.stream_state(client, f"{prefix}bl:changes")
    assert state is not None
    writer = stored.Writer.start(client, prefix, state, "b1")
    assert writer is not None and stored.Writer.busy(client, prefix)
    waiting = Replica(stack.redis.url, prefix)
    task = asyncio.create_task(waiting.start())
    await asyncio.sleep(1.0)
    assert waiting.stats.loaded_from == "" and not waiting.started.is_set()
    # Meanwhile it screens from the index itself.
    assert waiting.ready.is_set() and waiting.loading
    assert {k: e.status for k, e in (await waiting.lookup_many(PROBE)).items()} == await answers(stack.redis.url,
                                                                                                 prefix)
    active = [(k, 2 if i % 2 else 1) for i, k in enumerate(LISTED) if i % 5]
    writer.add([k for k, _ in active], np.array([c for _, c in active], np.uint8), np.zeros(len(active), np.uint32))
    await changes_after_the_snapshot(store)  # made after the snapshot's id: caught up by the waiter
    writer.finish()
    await asyncio.wait_for(task, 10)
    try:
        assert waiting.stats.loaded_from == "stored snapshot"
        got = {k: e.status for k, e in waiting.candidates(PROBE, time.time()).items()}
        assert got == await answers(stack.redis.url, prefix)
    finally:
        await waiting.close()


async def test_the_index_read_in_parts_answers_as_one_read(stack: Stack, index: Index,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The SCAN pass cut in parts read at once: a batch that ends one part runs into the next, so some keys
    are read twice; the replica holds each once and answers as a read in one part."""
    prefix, store, client = index
    one = await answers(stack.redis.url, prefix)
    monkeypatch.setattr(index_scan, "SCAN_PARTS_FROM", 0)
    monkeypatch.setattr(index_scan, "SCAN_COUNT", 5)
    entries = []
    for parts in (2, 4):
        monkeypatch.setattr(index_scan, "SCAN_PARTS", parts)
        fresh = await started(stack.redis.url, prefix, stored_snapshot=False)
        try:
            assert {k: e.status for k, e in fresh.candidates(PROBE, time.time()).items()} == one
            entries.append(fresh.stats.entries)
            assert len(np.unique(fresh._hashes)) == len(fresh._hashes)
        finally:
            await fresh.close()
    assert entries == [len(one), len(one)]


# -- kept fresh by the running workers -------------------------------------------------------------------

async def more_changes(store: BlocklistStore) -> None:
    """Changes made after a refresh: the next worker catches them up from the stream."""
    later = datetime.now(timezone.utc) + timedelta(milliseconds=20)
    await file_report(store, "phone:+60190000002", Status.REPORTED, "NSRC")
    await file_report(store, LISTED[3], Status.REVOKED, "NSRC", "appeal upheld", reported_at=later)


async def until(check: Callable[[], object], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("spoil", ["none stored", "another build", "far behind"])
async def test_a_running_worker_refreshes_a_snapshot_the_next_worker_could_not_use(
        stack: Stack, index: Index, spoil: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The case that costs a starting worker a read of the whole index (no snapshot, one of an older build, one
    too far behind after a big import) is repaired in the background by a worker that is already running."""
    prefix, store, client = index
    monkeypatch.setattr(stored, "REFRESH_CHUNK_ENTRIES", 7)  # several chunks, as at scale
    monkeypatch.setattr(index_scan, "REFRESH_SCAN_COUNT", 5)
    options: dict[str, int | bool | float] = {"snapshot_max_behind": 4, "snapshot_check_s": 0.05}
    running = await started(stack.redis.url, prefix, **options)
    tasks = [asyncio.create_task(running.follow())]
    try:
        written = meta(stack.redis.url, prefix)
        assert written is not None
        if spoil == "none stored":
            client.delete(stored.meta_key(prefix))
        elif spoil == "another build":  # left by the index this one was rebuilt from
            client.set(stored.meta_key(prefix), orjson.dumps({**written.__dict__, "build": "b0"}))
        before = running.stats.changes_applied
        await changes_after_the_snapshot(store)  # 3 changes
        if spoil == "far behind":  # 5 changes, more than the 4 a starting worker would catch up
            await file_report(store, "account:MBBEMYKL:9000000001", Status.CONFIRMED, "PDRM")
            await file_report(store, "phone:+60190000003", Status.CONFIRMED, "PDRM")
        await until(lambda: running.stats.changes_applied >= before + (5 if spoil == "far behind" else 3))
        assert stored.usable(client, prefix, f"{prefix}bl:changes", "b1", 4) is None  # a starter would read
        tasks.append(asyncio.create_task(running.keep_stored_snapshot()))
        await until(lambda: running.stats.snapshot_refreshes == 1)
        refreshed = meta(stack.redis.url, prefix)
        assert refreshed is not None and refreshed.gen != written.gen and refreshed.build == "b1"
        assert refreshed.chunks > 1
        assert client.get(stored.refreshed_key(prefix)) is not None  # the fleet-wide rate limit is taken
        assert running.stats.loaded_from == "index"  # its own copy was left as it was, and still answers
        applied = running.stats.changes_applied
        await more_changes(store)
        await until(lambda: running.stats.changes_applied >= applied + 2)
        expected = await answers(stack.redis.url, prefix)
        assert {k: e.status for k, e in running.candidates(PROBE, time.time()).items()} == expected

        got = await from_stored(stack.redis.url, prefix, snapshot_max_behind=4)
        assert got == expected
        assert "phone:+60190000002" in got and LISTED[3] not in got  # made after the refresh
        assert "phone:+60190000001" in got and LISTED[1] not in got  # made before it
        await asyncio.sleep(0.3)
        assert running.stats.snapshot_refreshes == 1  # fresh now: nothing more to do
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await running.close()


async def test_one_refresher_at_a_time_and_at_most_one_refresh_per_interval(stack: Stack, index: Index) -> None:
    prefix, store, client = index
    a = await started(stack.redis.url, prefix, snapshot_refresh_s=1.5)
    b = await started(stack.redis.url, prefix, snapshot_refresh_s=1.5)
    try:
        assert not a.refresh_stored_snapshot()  # the snapshot a stored when it started will do
        client.delete(stored.meta_key(prefix))

        # Another process is storing one: nobody starts a second read, and the rate limit is not spent.
        state = stored.stream_state(client, f"{prefix}bl:changes")
        other = stored.Writer.start(client, prefix, state, "b1")
        assert other is not None
        assert not a.refresh_stored_snapshot() and not b.refresh_stored_snapshot()
        assert client.get(stored.refreshed_key(prefix)) is None
        other.abandon()

        # Both look at once: one refreshes.
        results = await asyncio.gather(asyncio.to_thread(a.refresh_stored_snapshot),
                                       asyncio.to_thread(b.refresh_stored_snapshot))
        assert sorted(results) == [False, True]
        assert meta(stack.redis.url, prefix) is not None

        # Spoiled again at once (say a big import): no second read of the index within the interval...
        client.delete(stored.meta_key(prefix))
        assert not a.refresh_stored_snapshot() and not b.refresh_stored_snapshot()
        assert meta(stack.redis.url, prefix) is None
        # ...and one once it has passed.
        await asyncio.sleep(1.6)
        assert b.refresh_stored_snapshot() and not a.refresh_stored_snapshot()
        assert a.stats.snapshot_refreshes + b.stats.snapshot_refreshes == 2
        assert client.get(f"{prefix}replica:snapshot:writing") is None
    finally:
        await a.close()
        await b.close()


async def test_the_hot_path_keeps_answering_while_a_refresh_runs(stack: Stack, index: Index,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A refresh under way: the running replica keeps following and answering; a worker that starts meanwhile
    waits for the refreshed snapshot (the refresh stops pacing itself for it) and catches up from it."""
    prefix, store, client = index
    monkeypatch.setattr(index_scan, "REFRESH_SCAN_COUNT", 5)
    running = await started(stack.redis.url, prefix)
    follow = asyncio.create_task(running.follow())
    go_on = threading.Event()
    batches = 0
    scan = index_scan.scan_index_lightly

    def held(c: redis.Redis, p: str) -> Iterator[index_scan.Batch]:  # the refresh stops after a batch until go_on
        nonlocal batches
        for batch in scan(c, p):
            batches += 1
            if batches == 2:
                assert go_on.wait(20)
            yield batch
    monkeypatch.setattr(index_scan, "scan_index_lightly", held)
    client.delete(stored.meta_key(prefix))
    refresh = asyncio.create_task(asyncio.to_thread(running.refresh_stored_snapshot))
    starting: asyncio.Task[None] | None = None
    waiting = Replica(stack.redis.url, prefix)
    try:
        await until(lambda: batches == 2)
        assert stored.Writer.busy(client, prefix)
        # The running replica keeps deciding and following (a change reaches it well within a second here).
        assert (await running.lookup_many([LISTED[3]]))[LISTED[3]].case_ref == "C3"
        await file_report(store, "phone:+60190000002", Status.CONFIRMED, "NSRC")
        filed = time.monotonic()
        await until(lambda: "phone:+60190000002" in running.candidates(["phone:+60190000002"], time.time()), 1.0)
        assert time.monotonic() - filed < 1.0
        # A worker that starts now waits for this snapshot, and says so.
        starting = asyncio.create_task(waiting.start())
        await until(lambda: client.exists(stored.waiting_key(prefix)) == 1, 5.0)
        assert waiting.loading and not waiting.started.is_set()  # screening from the index meanwhile
        go_on.set()
        assert await asyncio.wait_for(refresh, 15)
        await asyncio.wait_for(starting, 15)
        assert waiting.stats.loaded_from == "stored snapshot"
        got = {k: e.status for k, e in waiting.candidates(PROBE, time.time()).items()}
        assert got == await answers(stack.redis.url, prefix)
        assert "phone:+60190000002" in got  # filed during the refresh: caught up from the stream
        assert {k: e.status for k, e in running.candidates(PROBE, time.time()).items()} == got
    finally:
        go_on.set()
        follow.cancel()
        await asyncio.gather(follow, refresh, *([starting] if starting else []), return_exceptions=True)
        await running.close()
        await waiting.close()


async def test_a_closing_worker_abandons_its_refresh(stack: Stack, index: Index,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker stopping mid-refresh leaves no half-written snapshot, no lock, and no rate limit for the others."""
    prefix, store, client = index
    running = await started(stack.redis.url, prefix)
    scan = index_scan.scan_index_lightly
    closing = threading.Event()

    def closed_meanwhile(c: redis.Redis, p: str) -> Iterator[index_scan.Batch]:
        for batch in scan(c, p):
            asyncio.run_coroutine_threadsafe(running.close(), loop).result(5)
            closing.set()
            yield batch
    loop = asyncio.get_running_loop()
    monkeypatch.setattr(index_scan, "scan_index_lightly", closed_meanwhile)
    written = meta(stack.redis.url, prefix)
    client.delete(stored.meta_key(prefix))
    assert not await asyncio.to_thread(running.refresh_stored_snapshot)
    assert closing.is_set() and written is not None
    assert meta(stack.redis.url, prefix) is None
    assert client.get(f"{prefix}replica:snapshot:writing") is None
    assert client.get(stored.refreshed_key(prefix)) is None
    left = {k.decode() for k in client.scan_iter(match=f"{prefix}replica:snapshot:*")}
    assert left == {stored.chunk_key(prefix, written.gen, i) for i in range(written.chunks)}  # the old ones only


@pytest.mark.parametrize("how", ["replayed into an empty Redis", "rebuilt while it ran"])
async def test_after_a_rebuild_the_next_worker_finds_the_new_builds_snapshot(stack: Stack, index: Index,
                                                                             how: str) -> None:
    """Replayed into an empty Redis (``IndexGuard``: the running replica follows the replay and re-reads
    nothing) or rebuilt under a running replica (it re-reads the index): either way a snapshot of the new
    build is stored while the workers run, and the next one to start loads it."""
    prefix, store, client = index
    if how == "replayed into an empty Redis":
        await store.mark_built(None)
        client.delete(stored.meta_key(prefix))
    running = await started(stack.redis.url, prefix, snapshot_check_s=0.05)
    tasks = [asyncio.create_task(running.follow()), asyncio.create_task(running.keep_stored_snapshot())]
    try:
        if how == "rebuilt while it ran":
            await store.mark_built(None)
            await until(lambda: running.awaiting_rebuild)
        await changes_after_the_snapshot(store)
        await store.mark_built("b2")
        await until(lambda: (m := meta(stack.redis.url, prefix)) is not None and m.build == "b2")
        assert running.stats.snapshot_refreshes == (1 if how == "replayed into an empty Redis" else 0)
        got = await from_stored(stack.redis.url, prefix)
        assert got == await answers(stack.redis.url, prefix)
        assert "phone:+60190000001" in got and LISTED[1] not in got
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await running.close()


async def test_a_worker_reading_the_index_screens_from_the_index_itself_until_its_replica_is_loaded(
        stack: Stack, index: Index, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fleet's first worker is ready at once: until its replica is loaded, each lookup reads the index (one
    MGET with the built marker), answering as the loaded replica then does; changes made meanwhile included."""
    prefix, store, client = index
    await file_report(store, "phone:+60190000002", Status.CONFIRMED, "PDRM", expires_at="2020-01-01T00:00:00+00:00")
    expected = await answers(stack.redis.url, prefix)
    assert "phone:+60190000002" not in expected  # expired
    go_on = threading.Event()
    read_index = index_scan.read_index

    def held(*args: object, **kwargs: object) -> stored.Snapshot:
        go_on.wait(30)
        snap = read_index(*args, **kwargs)  # type: ignore[arg-type]
        # a listing made once the read is done, before the replica answers from it: on the change stream only
        key = "phone:+60190000003"
        client.set(f"{prefix}bl:{key}", orjson.dumps({"key": key, "status": "confirmed", "source": "PDRM"}))
        client.xadd(f"{prefix}bl:changes", {"keys": key, "states": "confirmed"})
        return snap

    monkeypatch.setattr(index_scan, "read_index", held)
    replica = Replica(stack.redis.url, prefix)
    task = asyncio.create_task(replica.start())
    try:
        await asyncio.wait_for(replica.ready.wait(), 10)
        assert replica.loading and not replica.started.is_set() and replica.stats.loaded_from == ""
        got = await replica.lookup_many(PROBE)
        assert {k: e.status for k, e in got.items()} == expected
        assert got[LISTED[3]].case_ref == "C3"  # the evidence with it
        assert replica.entry_counts(time.time()) is None and replica.staleness() == 0.0
        await changes_after_the_snapshot(store)  # seen at once: the index is the answer
        during = {k: e.status for k, e in (await replica.lookup_many(PROBE)).items()}
        assert "phone:+60190000001" in during and LISTED[1] not in during and LISTED[5] in during
        go_on.set()
        await asyncio.wait_for(task, 15)
        assert not replica.loading and replica.stats.loaded_from == "index"
        loaded = {k: e.status for k, e in (await replica.lookup_many([*PROBE, "phone:+60190000003"])).items()}
        # a listing made once the read was done: caught up before the replica answered
        assert loaded == {**during, "phone:+60190000003": Status.CONFIRMED}
        assert loaded == {k: e.status for k, e in replica.candidates([*PROBE, "phone:+60190000003"],
                                                                     time.time()).items()}
    finally:
        go_on.set()
        await asyncio.gather(task, return_exceptions=True)
        await replica.close()


async def test_a_loading_worker_does_not_screen_from_an_index_that_is_not_built(
        stack: Stack, index: Index, monkeypatch: pytest.MonkeyPatch) -> None:
    """An index without its built marker (empty, or being replayed) cannot say an identifier is not listed: the
    worker is not ready before its replica is loaded; and a rebuild starting while it screens from the index
    makes its lookups wait for the replica."""
    prefix, store, client = index
    go_on = threading.Event()
    read_index = index_scan.read_index

    def held(*args: object, **kwargs: object) -> stored.Snapshot:
        go_on.wait(30)
        return read_index(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(index_scan, "read_index", held)
    await store.mark_built(None)
    replica = Replica(stack.redis.url, prefix)
    task = asyncio.create_task(replica.start())
    try:
        await asyncio.sleep(0.5)
        assert not replica.ready.is_set() and not replica.loading
        go_on.set()
        await asyncio.wait_for(task, 15)
        assert replica.ready.is_set() and not replica.loading
    finally:
        go_on.set()
        await asyncio.gather(task, return_exceptions=True)
        await replica.close()

    go_on.clear()
    await store.mark_built("b1")
    second = Replica(stack.redis.url, prefix, stored_snapshot=False)
    task = asyncio.create_task(second.start())
    try:
        await asyncio.wait_for(second.ready.wait(), 10)
        assert second.loading
        await store.mark_built(None)  # a rebuild starts
        lookup = asyncio.create_task(second.lookup_many(PROBE))
        await asyncio.sleep(0.3)
        assert not lookup.done()  # waits for the replica rather than answer from a part of the index
        go_on.set()
        await asyncio.wait_for(task, 15)
        got = await asyncio.wait_for(lookup, 5)
        assert {k: e.status for k, e in got.items()} == {k: e.status for k, e in
                                                         second.candidates(PROBE, time.time()).items()}
    finally:
        go_on.set()
        await asyncio.gather(task, return_exceptions=True)
        await second.close()


async def test_catching_up_at_start_merges_the_overlay_as_it_grows(stack: Stack, index: Index,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that starts far behind the change stream (screening from the index meanwhile) keeps its
    overlay bounded while it catches up: it merges whenever the overlay is due, not only once loaded."""
    prefix, store, client = index
    await (await started(stack.redis.url, prefix)).close()  # stores the snapshot
    for i in range(60):
        await file_report(store, f"phone:+6018{i:07d}", Status.CONFIRMED, "PDRM")
    monkeypatch.setattr("sekat.blocklist.replica.MERGE_OVERLAY_AT", 10)
    monkeypatch.setattr("sekat.blocklist.replica.FOLLOW_COUNT", 5)  # catching up in steps of 5 records
    nxt = await started(stack.redis.url, prefix)
    try:
        assert nxt.stats.loaded_from == "stored snapshot" and nxt.stats.changes_applied >= 60
        assert len(nxt._overlay) + len(nxt._revoked) <= 10 + 5
        got = nxt.candidates([f"phone:+6018{i:07d}" for i in range(60)], time.time())
        assert len(got) == 60
    finally:
        await nxt.close()
