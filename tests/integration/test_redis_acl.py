"""Each process's Redis user can do everything that process does, and nothing of the others' work.

Given a Redis that knows only the users of ``sekat redis-acls`` (``sekat.localstack.secured.acl_redis``; the
Redis administrator ``ops`` reads its ACL LOG), when every store operation of a process runs as that
process's user — the worker's rebuild, report writes, replica start from the index and from the stored
snapshot, the background refresh of the snapshot, rule state, the safety brake, who acted and the release
sweep's reads and writes, the entry count; the agency API's look-ups, key checks, rate limits, a brake
re-arm and the appeal store; the CLI's key management, rebuild and appeal restore — then each answers, and
Redis logged no refusal for it.
The end-to-end run of the real processes under these users is ``test_security.py``.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import redis

from load_tests.rules_bench import make_calls, make_transfers
from sekat.api.clients import Clients
from sekat.api.keys import ApiKeyStore
from sekat.blocklist.appeals import (AppealCounts, AppealStore, Contact, acknowledged, decided, filed, new_appeal_id,
                                     new_token)
from sekat.blocklist.related import forget as forget_related
from sekat.blocklist.related import related
from sekat.blocklist.feedback import FeedbackStore, SentCommand
from sekat.blocklist.replica import Replica, positions, positions_key
from sekat.blocklist.store import BlocklistStore
from sekat.brake.store import BrakeStore, Trip
from sekat.localstack.processes import free_port
from sekat.localstack.redis_servers import RedisClusterServers
from sekat.localstack.secured import acl_redis
from sekat.records import Status, iso
from sekat.redis_acl import DEFAULT_USERS, acl_lines, redis_acl_plan
from sekat.release.acted import ActedStore
from sekat.rules import engine
from sekat.rules.policy import DEFAULT_POLICY_FILE, load_policy
from sekat.rules.registry import Context
from sekat.settings import Settings
from sekat.streams.state import RuleStateStore
from tests.support import file_report, unique

pytestmark = pytest.mark.integration

PASSWORDS = {"worker": "w-" + unique("pw"), "api": "a-" + unique("pw"), "admin": "x-" + unique("pw")}
OPS = "o-" + unique("pw")
LISTED = [f"phone:+6011{i:07d}" for i in range(20)] + [f"account:CIBBMYKL:80012{i:05d}" for i in range(20)]


@dataclass
class AclRedis:
    ports: list[int]  # one server, or the masters of a Redis Cluster
    prefix: str
    ops: dict[str, str]  # how the administrator logs in: username, password

    def url(self, role: str) -> str:
        user = f"{DEFAULT_USERS[role]}:{PASSWORDS[role]}"
        if len(self.ports) == 1:
            return f"redis://{user}@127.0.0.1:{self.ports[0]}/0"
        return f"redis+cluster://{user}@" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def refused(self, role: str) -> list[dict[str, object]]:
        """What Redis (every node) refused ``role``'s user so far (commands and keys; failed logins aside)."""
        found = []
        for port in self.ports:
            ops = redis.Redis(port=port, **self.ops)
            try:
                found += [e for e in ops.acl_log(count=1000)
                          if e["username"] == DEFAULT_USERS[role] and e["reason"] != "auth"]
            finally:
                ops.close()
        return found


@pytest.fixture(params=["server", pytest.param("cluster", marks=pytest.mark.cluster)])
def acl(request: pytest.FixtureRequest) -> Iterator[AclRedis]:
    """A Redis of its own for each test, with the users of ``sekat redis-acls`` for a prefix of its own: one
    server started from the users.acl the lines make, or a 3-master Redis Cluster given them by ACL SETUSER on
    each node (its default user stays on, for the cluster's own management and to read ACL LOG)."""
    base = Path(tempfile.mkdtemp(prefix="sekat-acl-"))
    prefix = unique("acl") + ":"
    if request.param == "server":
        server = acl_redis(base / "redis", free_port(), PASSWORDS, prefix=prefix, ops_password=OPS)
        ports, ops = [server.port], {"username": "ops", "password": OPS}
    else:
        server = RedisClusterServers(base / "redis", [free_port() for _ in range(3)])  # type: ignore[assignment]
        ports, ops = server.ports, {}  # type: ignore[attr-defined]
    try:
        server.start()
        if request.param == "cluster":
            for port in ports:
                node = redis.Redis(port=port)
                for line in acl_lines(redis_acl_plan(), prefix, PASSWORDS):
                    node.execute_command("ACL", "SETUSER", *line.split()[1:])
                node.close()
        yield AclRedis(ports, prefix, ops)
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


async def rebuilt(store: BlocklistStore) -> None:
    """What a rebuild does to the index (``streams.rebuild``): lock, marker off, wipe, replay, marker on, unlock."""
    token = unique("t")
    assert await store.take_rebuild_lock(token, 30_000)
    await store.mark_built(None)
    await store.wipe()
    for i, key in enumerate(LISTED):
        await file_report(store, key, Status.CONFIRMED if i % 2 else Status.REPORTED, "PDRM", "scam", f"C{i}")
    assert await store.extend_rebuild_lock(token, 30_000)
    await store.mark_built(unique("b"))
    await store.release_rebuild_lock(token)


async def test_the_worker_user_can_do_everything_the_worker_does(acl: AclRedis) -> None:
    url, p = acl.url("worker"), acl.prefix
    plain, guarded = BlocklistStore.from_url(url, p), BlocklistStore.from_url(url, p, guarded=True)
    acted, brakes = ActedStore.from_url(url, p), BrakeStore.from_url(url, p)
    state, sent = RuleStateStore.from_url(url, p), FeedbackStore.from_url(url, p)
    api = BlocklistStore.from_url(acl.url("api"), p)
    try:
        await rebuilt(plain)
        # A starting worker reads the index and stores the snapshot; the next one starts from it.
        first = Replica(url, p, snapshot_max_behind=4)
        await first.start()
        assert first.stats.loaded_from == "index" and first.stats.entries == len(LISTED)
        # The reports agent: a guarded write (WATCH on the marker); a revocation marks who acted due again.
        await acted.record([(LISTED[1], "RELEASE_ACCOUNT|CIBBMYKL"), (LISTED[3], "UNBLOCK_NUMBER|MAXIS")], now=100.0)
        later = datetime.now(timezone.utc) + timedelta(milliseconds=20)
        await file_report(guarded, LISTED[1], Status.REVOKED, "NSRC", "appeal upheld", reported_at=later)
        for i in range(4):
            await file_report(guarded, f"phone:+6019000000{i}", Status.CONFIRMED, "NSRC")
        assert first.refresh_stored_snapshot()  # the background refresh, 5 changes behind (> 4 // 2)
        await first.close()
        nxt = Replica(url, p)
        await nxt.start()
        try:
            assert nxt.stats.loaded_from == "stored snapshot"
            assert LISTED[1] not in nxt.candidates(LISTED, time.time())
            assert (await nxt.lookup_many([LISTED[3]]))[LISTED[3]].case_ref == "C3"
            # Following the change stream, it reports its position (for `blocklist import --wait-applied`).
            following = asyncio.create_task(nxt.follow())
            deadline = time.monotonic() + 5
            while not await plain.client.hgetall(positions_key(p)) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            following.cancel()
            assert list(positions(await plain.client.hgetall(positions_key(p)), int(time.time() * 1000)))
        finally:
            await nxt.close()
        # The release sweep: due entries, who acted, reschedule, forget.
        assert await acted.due(50.0) == [(LISTED[1], 0.0)]  # revoked: due now; the other at 100
        assert await acted.members([LISTED[1]]) == {LISTED[1]: ["RELEASE_ACCOUNT|CIBBMYKL"]}
        assert await acted.reschedule([(LISTED[3], 100.0, 9e9)]) == 1
        assert await acted.forget(LISTED[1], ["RELEASE_ACCOUNT|CIBBMYKL"])
        # The retention purge: the revoked entry is due, the reports agent forgets it, the purge takes it off
        # the count and trims the change stream.
        assert await guarded.retention_due("revoked", time.time() + 1, 10) == [LISTED[1]]
        assert (await guarded.forget(LISTED[1], datetime.now(timezone.utc))) == (True, None)
        assert await guarded.settle_forgotten(await guarded.settle_forgotten(0)) == 0
        # past every record written so far (one written in this very millisecond too: MINID keeps its own id)
        assert await guarded.trim_changes((int(time.time() * 1000) + 1000, 0)) > 0
        # Rule state: windows read and updated by the script, values written and read.
        policy, now = load_policy(DEFAULT_POLICY_FILE), datetime.now(timezone.utc)
        transfers, calls = make_transfers(200, 20, now, random.Random(5)), make_calls(200, now, random.Random(6))
        seen = await state.read_transfers(transfers, policy, now)
        heard = await state.read_calls(calls, policy, now)
        writes = [w for x in transfers for w in engine.decide_transfer(x, Context(now, {}, seen), policy).writes]
        writes += [w for x in calls for w in engine.decide_call(x, Context(now, {}, heard), policy).writes]
        assert writes
        await state.write(writes)
        assert (await state.read_transfers(transfers, policy, now)).counts.get("inflow")
        # The safety brake: count, trip once, read what is tripped.
        assert (await brakes.add({"rule:mule_inflow@1": 3}, 6000.0, 60))["rule:mule_inflow@1"] == 3
        assert await brakes.trip(Trip("rule:mule_inflow@1", 3, 2, 60, iso(now), "w1"))
        assert "rule:mule_inflow@1" in await brakes.tripped()
        # The purge: which of a purged entry's links are entries (its unlinks go to those).
        assert await plain.present([LISTED[0], "phone:+60139999998"]) == {LISTED[0]}
        # The purge: an entry tripped on leaves the brake (its trip, and its name in the log's events).
        assert await brakes.trip(Trip("entry:phone:+60139999999", 3, 2, 60, iso(now), "w1"))
        assert await brakes.forget("phone:+60139999999", "purged") == (True, 1)
        assert "entry:phone:+60139999999" not in await brakes.tripped()
        # What was sent to whom (the screening tail), and a pacs.002 matched to its hold and kept as feedback.
        held = SentCommand("c-acl-1", "HOLD_TRANSFER", "MBBEMYKL", iso(now), (LISTED[3],), {"uetr": "u-acl-1"})
        await sent.record_sent([held], 600)
        assert await sent.by_payment(["u-acl-1"]) == held
        assert await sent.add({"command_id": "c-acl-1", "institution": "MBBEMYKL", "outcome": "rejected",
                               "received_at": iso(now)}, held.entries)
        assert [f["outcome"] for f in await sent.of_entry(LISTED[3])] == ["rejected"]
        assert await sent.flags(LISTED[3]) == {}
        # A whole-index read (export, comparisons): a SCAN of the index.
        assert len([e async for batch in plain.scan_entries() for e in batch]) == len(LISTED) + 3  # one purged
        # The purge: the stream's newest record; a purged entry's appeals and the feedback naming it; decided
        # appeals past their retention (filed and decided through the API's user).
        assert await plain.last_change() is None  # the trim above dropped every record
        shared = {"command_id": "c-acl-2", "institution": "CELCOM", "outcome": "executed",
                  "received_at": iso(now), "entries": [LISTED[5], LISTED[6]]}
        assert await sent.add(shared, shared["entries"])
        api_appeals = AppealStore(api.client, p)  # type: ignore[arg-type]
        on_purged = filed(new_appeal_id(), LISTED[5], ("PDRM",), "person", Contact(name="A"), "g", "",
                          new_token()[1], "own-report", now - timedelta(days=300), 3_600, 86_400)
        old = decided(acknowledged(filed(new_appeal_id(), LISTED[7], ("PDRM",), "person", Contact(name="B"), "g",
                                         "", new_token()[1], "own-report", now - timedelta(days=300), 3_600,
                                         86_400), "PDRM", "k", now - timedelta(days=299)),
                      "PDRM", "k", "rejected", "r", {"PDRM"}, now - timedelta(days=299), 30)
        await api_appeals.put(on_purged)
        await api_appeals.put(old)
        gone = await related(plain.client, p, LISTED[5])
        assert gone.appeal_ids == {on_purged.appeal_id} and gone.rewritten == 1
        assert await forget_related(plain.client, p, gone) == 1
        assert (await sent.of_entry(LISTED[6]))[0]["entries"] == [LISTED[6]]
        worker_appeals = AppealStore(plain.client, p)  # type: ignore[arg-type]
        assert await worker_appeals.backfill_decided(now) == 0  # filed under decided already, by the API's put
        assert await worker_appeals.backfill_decided(now) is None  # marked done
        assert [a.appeal_id for a in await worker_appeals.decided_before(time.time(), 10)] == [old.appeal_id]
        assert await worker_appeals.drop(old) and await worker_appeals.get(old.appeal_id) is None
    finally:
        for closing in (plain, guarded, acted, brakes, state, sent, api):
            await closing.close()
    assert acl.refused("worker") == []


async def test_the_api_user_can_do_everything_the_api_does(acl: AclRedis) -> None:
    p = acl.prefix
    admin = BlocklistStore.from_url(acl.url("admin"), p)
    worker_brakes = BrakeStore.from_url(acl.url("worker"), p)
    worker_acted = ActedStore.from_url(acl.url("worker"), p)
    worker_sent = FeedbackStore.from_url(acl.url("worker"), p)
    try:  # an operator made the key; a worker listed an entry, acted on it, tripped the brake on a source, sent a command
        key, token = await ApiKeyStore(admin.client, p).create("NSRC", ("read", "report", "rearm"))
        await file_report(admin, "phone:+60177777777", Status.CONFIRMED, "PDRM")
        await worker_acted.record([("phone:+60177777777", "UNBLOCK_NUMBER|CELCOM")], now=100.0)
        assert await worker_brakes.trip(Trip("source:PDRM", 9, 5, 60, "2026-11-29T10:00:00Z", "w1"))
        await worker_sent.record_sent([SentCommand("c-api-1", "FREEZE_ACCOUNT", "CIBBMYKL", "2026-11-29T10:00:00.000Z",
                                                   ("phone:+60177777777",))], 600)
    finally:
        await admin.close()
        await worker_brakes.close()
        await worker_acted.close()
        await worker_sent.close()
    clients = Clients(Settings.from_environ({"SEKAT_REDIS_URL": acl.url("worker"), "SEKAT_REDIS_PREFIX": p,
                                             "SEKAT_API_REDIS_URL": acl.url("api")}))
    try:
        assert await clients.store.client.ping()
        assert await clients.keys.verify(token) == key
        assert (await clients.store.get("phone:+60177777777")).status is Status.CONFIRMED  # type: ignore[union-attr]
        assert await clients.store.lookup_many(["phone:+60177777777", "phone:+60170000000"])
        assert await clients.acted.members(["phone:+60177777777"]) == {"phone:+60177777777": ["UNBLOCK_NUMBER|CELCOM"]}
        assert (await clients.allow_status_check("203.0.113.9", 5))[0]
        assert (await clients.allow_any_status_check(100))[0]
        assert (await clients.allow_filing(key.key_id, 5))[0]
        assert "source:PDRM" in await clients.brakes.tripped()
        assert await clients.brakes.trip_of("source:PDRM") is not None
        assert await clients.brakes.rearm("source:PDRM", time.time(), 60, {"event": "rearm", "by": "NSRC"})
        assert [e["event"] for e in await clients.brakes.history(5)][:2] == ["rearm", "trip"]
        assert (await clients.allow_appeal("203.0.113.9", 5))[0]
        now = datetime.now(timezone.utc)
        appeal = filed(new_appeal_id(), "phone:+60177777777", ("PDRM",), "person", Contact(name="A"), "g", "",
                       new_token()[1], "own-report", now - timedelta(days=2), 3_600, 86_400)
        async with clients.appeals.lock(appeal.identifier) as held:
            assert held and await clients.appeals.latest_on(appeal.identifier) is None
            await clients.appeals.put(appeal)
        assert await clients.appeals.get(appeal.appeal_id) == appeal
        assert [a.appeal_id for a in await clients.appeals.open_for("PDRM")] == [appeal.appeal_id]
        assert await clients.appeals.counts(now, 3_600, 86_400) == AppealCounts(1, 0, 1, 1)
        # Feedback: the command's addressee, the entry's feedback and flags, an entry into review (a trip).
        assert await clients.feedback.sent("c-api-1") == SentCommand("c-api-1", "FREEZE_ACCOUNT", "CIBBMYKL",
                                                                     "2026-11-29T10:00:00.000Z", ("phone:+60177777777",))
        assert await clients.feedback.add({"command_id": "c-api-1", "institution": "CIBBMYKL",
                                           "outcome": "false_positive", "received_at": "2026-11-29T10:01:00.000Z"},
                                          ["phone:+60177777777"])
        assert len(await clients.feedback.of_entry("phone:+60177777777")) == 1
        assert await clients.feedback.flag("review", "phone:+60177777777", {"at": "2026-11-29T10:01:00.000Z"})
        assert "review" in await clients.feedback.flags("phone:+60177777777")
        assert await clients.brakes.trip(Trip("entry:phone:+60177777777", 3, 3, 0, "2026-11-29T10:01:00.000Z",
                                              "feedback", "confirmed"))
    finally:
        await clients.close()
    assert acl.refused("api") == []


async def test_the_admin_user_manages_api_keys_and_rebuilds_the_index(acl: AclRedis) -> None:
    p = acl.prefix
    store = BlocklistStore.from_url(acl.url("admin"), p)
    keys = ApiKeyStore(store.client, p)
    try:
        key, token = await keys.create("PDRM", ("report",))
        assert key in await keys.all()
        assert await keys.disable(key.key_id)
        assert await keys.verify(token) is None
        await rebuilt(store)
        assert await store.build_id() is not None and await store.get(LISTED[0]) is not None
        # `sekat blocklist import --wait-applied`: the change stream's last id, the replicas' positions.
        await store.client.xrevrange(f"{p}bl:changes", count=1)
        await store.client.hgetall(positions_key(p))
        # `sekat appeals restore`: each appeal read, then written with its indexes.
        appeals = AppealStore(store.client, p)
        appeal = filed(new_appeal_id(), LISTED[1], ("PDRM",), "person", Contact(name="A"), "g", "", new_token()[1],
                       "own-report", datetime.now(timezone.utc), 3_600, 86_400)
        assert await appeals.get(appeal.appeal_id) is None
        await appeals.put(appeal)
        assert await appeals.get(appeal.appeal_id) == appeal
    finally:
        await store.close()
    assert acl.refused("admin") == []
