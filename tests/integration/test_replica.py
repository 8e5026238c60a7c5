"""The local replica: same answers as the index, no round trip for a miss, still deciding when Redis is gone."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest

from sekat.blocklist.replica import Replica
from sekat.blocklist.store import BlocklistStore, changed_keys
from sekat.localstack.processes import free_port
from sekat.localstack.redis_servers import RedisServer
from sekat.records import Entry, Report, Status, iso
from tests.support import Stack, file_report, unique

pytestmark = pytest.mark.integration


async def wait_until(pred, timeout: float = 5.0) -> float:
    started = time.perf_counter()
    while not pred():
        if time.perf_counter() - started > timeout:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.002)
    return time.perf_counter() - started


async def test_snapshot_then_follow_changes(stack: Stack) -> None:
    prefix = unique("rep") + ":"
    store = BlocklistStore.from_url(stack.redis.url, prefix)
    await file_report(store, "phone:+60111111111", Status.CONFIRMED, "PDRM", "scam", "C1")
    await file_report(store, "account:CIBBMYKL:8001234567", Status.REPORTED, "MBB")
    await file_report(store, "phone:+60122222222", Status.CONFIRMED, "PDRM")
    # reports are ordered by their millisecond timestamps: the appeal comes later
    await file_report(store, "phone:+60122222222", Status.REVOKED, "NSRC", "appeal upheld",
                      reported_at=datetime.now(timezone.utc) + timedelta(milliseconds=10))
    replica = Replica(stack.redis.url, prefix)
    await replica.start()
    follower = asyncio.create_task(replica.follow())
    try:
        found = await replica.lookup_many(["phone:+60111111111", "account:CIBBMYKL:8001234567",
                                           "phone:+60122222222", "phone:+60133333333"])
        assert set(found) == {"phone:+60111111111", "account:CIBBMYKL:8001234567"}
        assert found["phone:+60111111111"].case_ref == "C1"  # evidence read from the index on a hit
        assert found["account:CIBBMYKL:8001234567"].status is Status.REPORTED
        assert replica.stats.entries == 2

        # A new report, a revoke and a re-listing take effect within milliseconds.
        await file_report(store, "phone:+60133333333", Status.CONFIRMED, "NSRC")
        took = await wait_until(lambda: "phone:+60133333333" in replica.candidates(["phone:+60133333333"], time.time()))
        assert took < 0.1
        await file_report(store, "phone:+60111111111", Status.REVOKED, "NSRC", "appeal upheld")
        await wait_until(lambda: not replica.candidates(["phone:+60111111111"], time.time()))
        await file_report(store, "phone:+60122222222", Status.CONFIRMED, "PDRM", "listed again")
        await wait_until(lambda: bool(replica.candidates(["phone:+60122222222"], time.time())))
        assert replica.staleness() < 1.0
    finally:
        follower.cancel()
        await replica.close()
        await store.close()


async def test_expired_entries_do_not_match(stack: Stack) -> None:
    prefix = unique("rep") + ":"
    store = BlocklistStore.from_url(stack.redis.url, prefix)
    past = iso(datetime.now(timezone.utc) - timedelta(seconds=1))
    future = iso(datetime.now(timezone.utc) + timedelta(days=1))
    await file_report(store, "phone:+60111111111", Status.CONFIRMED, "PDRM", expires_at=past)
    await file_report(store, "phone:+60122222222", Status.CONFIRMED, "PDRM", expires_at=future)
    replica = Replica(stack.redis.url, prefix)
    await replica.start()
    try:
        assert set(replica.candidates(["phone:+60111111111", "phone:+60122222222"], time.time())) == {
            "phone:+60122222222"}
    finally:
        await replica.close()
        await store.close()


async def test_overlay_merge_keeps_every_answer(stack: Stack) -> None:
    prefix = unique("rep") + ":"
    store = BlocklistStore.from_url(stack.redis.url, prefix)
    await file_report(store, "phone:+60111111111", Status.CONFIRMED, "PDRM")
    replica = Replica(stack.redis.url, prefix)
    await replica.start()
    try:
        from sekat.records import Entry
        for n in range(50):
            replica.apply(f"phone:+6019{n:07d}", Entry(key=f"phone:+6019{n:07d}", status=Status.REPORTED, source="X"))
        keys = ["phone:+60111111111"] + [f"phone:+6019{n:07d}" for n in range(50)]
        before = set(replica.candidates(keys, time.time()))
        replica._merge_overlay()
        assert set(replica.candidates(keys, time.time())) == before and len(before) == 51
        assert replica._overlay == {}
    finally:
        await replica.close()
        await store.close()


async def test_redis_gone_the_replica_still_decides_and_says_so(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis", free_port())
    server.start()
    try:
        store = BlocklistStore.from_url(server.url, "x:")
        await file_report(store, "phone:+60111111111", Status.CONFIRMED, "PDRM", "scam")
        await store.close()
        replica = Replica(server.url, "x:")
        await replica.start()
        follower = asyncio.create_task(replica.follow())
        await asyncio.sleep(0.1)
        server.stop()
        found = await replica.lookup_many(["phone:+60111111111", "phone:+60122222222"])
        assert list(found) == ["phone:+60111111111"]
        assert found["phone:+60111111111"].status is Status.CONFIRMED
        assert found["phone:+60111111111"].source == "replica"
        assert replica.stats.redis_fallbacks == 1
        await wait_until(lambda: replica.staleness() > 0.5, timeout=10)
        follower.cancel()
        await replica.close()
    finally:
        server.stop()


async def test_an_index_being_rebuilt_does_not_empty_the_replica(stack: Stack) -> None:
    """Redis came back empty (or a rebuild wiped it): until a new build is marked, the replica keeps its copy."""
    prefix = unique("rep") + ":"
    store = BlocklistStore.from_url(stack.redis.url, prefix)
    await file_report(store, "phone:+60111111111", Status.CONFIRMED, "PDRM", "scam", "C1")
    await store.mark_built("b1")
    replica = Replica(stack.redis.url, prefix)
    await replica.start()
    follower = asyncio.create_task(replica.follow())
    try:
        assert (await replica.lookup_many(["phone:+60111111111"]))["phone:+60111111111"].case_ref == "C1"

        # The marker goes, the index is wiped (each deletion announced): the replica still blocks, and says why.
        await store.mark_built(None)
        assert await store.wipe() == 1
        await wait_until(lambda: replica.awaiting_rebuild)
        await asyncio.sleep(0.05)
        found = await replica.lookup_many(["phone:+60111111111"])
        assert found["phone:+60111111111"].source == "replica"
        assert "rebuilt" in found["phone:+60111111111"].reason
        await asyncio.sleep(1.5)
        assert replica.staleness() > 0.4  # not fresh while the index is incomplete

        # The replay writes what the topic holds; once the new build is marked the replica re-reads the index.
        await file_report(store, "phone:+60122222222", Status.CONFIRMED, "NSRC")
        await wait_until(lambda: bool(replica.candidates(["phone:+60122222222"], time.time())))
        assert (await replica.lookup_many(["phone:+60111111111"]))["phone:+60111111111"].source == "replica"
        await store.mark_built("b2")
        await wait_until(lambda: not replica.awaiting_rebuild and replica.stats.entries == 1)
        assert set(await replica.lookup_many(["phone:+60111111111", "phone:+60122222222"])) == {"phone:+60122222222"}
        assert replica.staleness() < 1.0
    finally:
        follower.cancel()
        await replica.close()
        await store.close()


async def test_a_guarded_store_writes_only_to_a_built_index(stack: Stack) -> None:
    prefix = unique("rep") + ":"
    guarded = BlocklistStore.from_url(stack.redis.url, prefix, guarded=True)
    plain = BlocklistStore.from_url(stack.redis.url, prefix)
    try:
        from sekat.errors import IndexNotBuilt
        with pytest.raises(IndexNotBuilt):
            await file_report(guarded, "phone:+60111111111", Status.CONFIRMED)
        assert await guarded.get("phone:+60111111111") is None
        await plain.mark_built("b1")
        await file_report(guarded, "phone:+60111111111", Status.CONFIRMED)
        assert (await guarded.get("phone:+60111111111")).status is Status.CONFIRMED
    finally:
        await guarded.close()
        await plain.close()


async def test_a_replica_loaded_from_the_index_holds_sender_link_and_domain_entries_and_counts_each_kind(
        stack: Stack) -> None:
    """A worker that starts reads the whole index: every kind is in it, not only numbers and accounts."""
    prefix = unique("rep") + ":"
    store = BlocklistStore.from_url(stack.redis.url, prefix)
    keys = ["sender:POSLAJUX", "url:evil.example.my/pay", "domain:evil.example.my", "phone:+60111111111"]
    for key in keys:
        await file_report(store, key, Status.CONFIRMED, "NSRC")
    replica = Replica(stack.redis.url, prefix, stored_snapshot=False)
    await replica.start()
    try:
        assert set(await replica.lookup_many(keys)) == set(keys)
        counts = replica.entry_counts(time.time())
        assert counts is not None
        assert {kind: counts[kind, "confirmed"] for kind in ("sender", "url", "domain", "phone", "account")} == \
            {"sender": 1, "url": 1, "domain": 1, "phone": 1, "account": 0}
    finally:
        await replica.close()
        await store.close()


async def test_a_batch_of_reports_is_one_change_record_a_replica_applies_from_its_states(stack: Stack) -> None:
    prefix = unique("rep") + ":"
    store = BlocklistStore.from_url(stack.redis.url, prefix)
    await file_report(store, "phone:+60100000000", Status.CONFIRMED, "PDRM")  # the index exists
    replica = Replica(stack.redis.url, prefix)
    await replica.start()
    follower = asyncio.create_task(replica.follow())
    try:
        now = datetime.now(timezone.utc)
        keys = [f"phone:+6011{i:08d}" for i in range(50)]
        before = await store.client.xlen(f"{prefix}bl:changes")
        await store.apply([Report(report_id=f"r-{i}", reported_at=now, kind="phone", value=key.split(":")[1],
                                  status=Status.CONFIRMED if i % 2 else Status.REPORTED, source="PDRM",
                                  reason="bulk", ttl_days=30, filed_by="test") for i, key in enumerate(keys)])
        # One record for the batch, not one a key: it carries each key's status and expiry, in order.
        assert await store.client.xlen(f"{prefix}bl:changes") == before + 1
        [(_, fields)] = await store.client.xrevrange(f"{prefix}bl:changes", count=1)
        announced = changed_keys(fields)
        assert [k for k, _ in announced] == keys
        written = await store.lookup_many(keys)
        assert [state for _, state in announced] == [(written[k].status, written[k].expires_at) for k in keys]
        await wait_until(lambda: len(replica.candidates(keys, time.time())) == 50)
        # Applied from the record's states (a thin overlay entry, no read of the entry), the evidence is read on a
        # hit, as for a key of the arrays.
        assert {e.source for e in replica.candidates(keys, time.time()).values()} == {""}
        found = await replica.lookup_many(keys[:2])
        assert found[keys[1]].source == "PDRM" and found[keys[1]].status is Status.CONFIRMED
        # An expired thin entry does not match (as an expired key of the arrays does not).
        later = datetime.fromisoformat(written[keys[0]].expires_at).timestamp() + 1
        assert replica.candidates(keys[:1], later) == {}
        assert replica.candidates(keys[:1], time.time()).keys() == {keys[0]}
    finally:
        follower.cancel()
        await replica.close()
        await store.close()


async def test_a_re_read_entry_is_kept_thin_and_its_evidence_read_on_a_hit(stack: Stack) -> None:
    """A key announced without its state is re-read; the overlay keeps its status and expiry only, so what it
    costs does not grow with the entry's history, and a hit reads the evidence as for a key of the arrays."""
    prefix = unique("rep") + ":"
    store = BlocklistStore.from_url(stack.redis.url, prefix)
    await file_report(store, "phone:+60100000000", Status.CONFIRMED, "PDRM")  # the index exists
    replica = Replica(stack.redis.url, prefix)
    await replica.start()
    follower = asyncio.create_task(replica.follow())
    try:
        now = datetime.now(timezone.utc)
        key, gone = "phone:+60155555555", "phone:+60166666666"
        history = tuple(Report(report_id=f"r-{i}", reported_at=now, kind="phone", value=key.split(":")[1],
                               status=Status.CONFIRMED, source="PDRM", reason="x" * 500, filed_by="test")
                        for i in range(20))
        entry = Entry(key=key, status=Status.CONFIRMED, source="PDRM", reason="x" * 500, case_ref="C-9",
                      expires_at="2099-01-01T00:00:00.000Z", history=history)
        await store.client.set(f"{prefix}bl:{key}", orjson.dumps(entry.to_json()))
        await store.client.set(f"{prefix}bl:{gone}", b"not an entry")
        await store.client.xadd(f"{prefix}bl:changes", {"keys": f"{key}\n{gone}"})  # no states: re-read
        await wait_until(lambda: key in replica.candidates([key], time.time()))
        held = replica.candidates([key, gone], time.time())
        assert list(held) == [key] and held[key].source == "" and held[key].history == ()
        assert held[key].expires_at == "2099-01-01T00:00:00.000Z"
        found = await replica.lookup_many([key])
        assert found[key].case_ref == "C-9" and len(found[key].history) == 20
    finally:
        follower.cancel()
        await replica.close()
        await store.close()
