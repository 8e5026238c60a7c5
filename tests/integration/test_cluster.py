"""Scale-out on one machine: Sekat on a 3-broker KRaft cluster and a 3-master Redis Cluster, unchanged but
for its settings.

Given the cluster (started once for the module: ``sekat.localstack.kafka_servers.KafkaCluster`` and
``RedisClusterServers``, the code ``sekat up --brokers 3 --redis-cluster`` runs), Sekat's topics are
replicated three ways with two in sync; the blocklist index, the replica and the rule state answer on the
Redis Cluster exactly as on one server while spreading their keys over every master; so do the record of who
acted on an entry (release commands) and the safety brake, and a worker on the cluster releases the account it
froze once the entry is revoked; the scale benchmark runs on it with every command correct; and when one broker
is stopped under traffic, two workers lose no command.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType

from load_tests import scale
from load_tests.bench import bench_policy, load_blocklist
from load_tests.harness import check
from load_tests.rules_bench import make_calls, make_transfers
from load_tests.traffic import Population, Traffic
from sekat.blocklist.connection import sync_client
from sekat.blocklist.replica import Replica
from sekat.blocklist.index_scan import KINDS
from sekat.blocklist.store import BlocklistStore
from sekat.brake.store import BrakeStore, Trip
from sekat.localstack.kafka_servers import KafkaCluster
from sekat.localstack.processes import free_port
from sekat.localstack.redis_servers import RedisClusterServers
from sekat.records import Entry, Report, Status, iso
from sekat.release.acted import ActedStore
from sekat.rules import engine
from sekat.rules.policy import DEFAULT_POLICY_FILE, load_policy
from sekat.rules.registry import Context
from sekat.settings import Settings
from sekat.streams.state import RuleStateStore
from sekat.streams.topics import create_topics
from tests.support import Collector, Producer, Stack, WorkerProcess, file_report, for_event, isolated_env, unique

pytestmark = [pytest.mark.integration, pytest.mark.cluster]


@pytest.fixture(scope="module")
def cluster() -> Iterator[Stack]:
    """3 KRaft brokers (RF 3, min.insync.replicas=2) and a 3-master Redis Cluster, on free loopback ports."""
    base = Path(tempfile.mkdtemp(prefix="sekat-cluster-"))
    redis = RedisClusterServers(base / "redis", [free_port() for _ in range(3)])
    kafka = KafkaCluster(base / "kafka", [free_port() for _ in range(3)],
                         controller_ports=[free_port() for _ in range(3)])
    try:
        redis.start()
        kafka.start()
        yield Stack(kafka, redis)  # type: ignore[arg-type]  # same face: .bootstrap, .url
    finally:
        kafka.stop()
        redis.stop()
        shutil.rmtree(base, ignore_errors=True)


def cluster_env(cluster: Stack, name: str, **overrides: str) -> dict[str, str]:
    return isolated_env(cluster, name, SEKAT_TOPIC_REPLICATION="3", SEKAT_TOPIC_PARTITIONS="4", **overrides)


def test_topics_are_replicated_three_ways_with_two_in_sync(cluster: Stack) -> None:
    settings = Settings.from_environ(cluster_env(cluster, unique("rf")))
    create_topics(settings)
    admin = KafkaAdminClient(bootstrap_servers=cluster.kafka.bootstrap.split(","))
    try:
        for topic in admin.describe_topics([settings.topic_transfers, settings.topic_reports]):
            for partition in topic["partitions"]:
                assert len(partition["replica_nodes"]) == 3 and len(partition["isr_nodes"]) == 3
        # kafka-python 3: {resource type: {resource name: {config key: {config data}}}}; a broker that has
        # not yet learned of the new topic answers with no configs, so ask until one does
        deadline = time.monotonic() + 20
        while True:
            configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, settings.topic_freeze)],
                                             config_filter="all")
            entry = next(iter(configs.values()), {}).get(settings.topic_freeze, {}).get("min.insync.replicas")
            if entry is not None or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert entry is not None and (entry.get("value") if isinstance(entry, dict) else entry) == "2", entry
    finally:
        admin.close()


def master_key_counts(cluster: Stack, pattern: str) -> list[int]:
    import redis

    counts = []
    for server in cluster.redis.servers:  # type: ignore[attr-defined]
        client = redis.Redis(port=server.port)
        counts.append(sum(1 for _ in client.scan_iter(match=pattern, count=1000)))
        client.close()
    return counts


async def test_index_and_replica_answer_on_the_cluster_as_on_one_server(cluster: Stack, stack: Stack) -> None:
    prefix = unique("cl") + ":"
    one = BlocklistStore.from_url(stack.redis.url, prefix)
    many = BlocklistStore.from_url(cluster.redis.url, prefix)
    keys = [f"phone:+6011{i:07d}" for i in range(40)] + [f"account:CIBBMYKL:80012{i:05d}" for i in range(40)]
    try:
        later = datetime.now(timezone.utc) + timedelta(milliseconds=10)
        for i, key in enumerate(keys):
            for store in (one, many):
                await file_report(store, key, Status.CONFIRMED if i % 2 else Status.REPORTED, "PDRM", "scam", f"C{i}")
                if i % 10 == 0:  # cleared on appeal: kept in the index, never matched
                    await file_report(store, key, Status.REVOKED, "NSRC", "appeal upheld", reported_at=later)
        probe = keys + ["phone:+60199999999"]
        assert (await many.lookup_many(probe)).keys() == (await one.lookup_many(probe)).keys()
        exported = [e.key async for batch in many.scan_entries() for e in batch]
        assert sorted(exported) == sorted(keys)
        # The entries really are spread: every master holds some.
        assert all(n > 0 for n in master_key_counts(cluster, f"{prefix}bl:*")), "entries on one shard only"
        # Counted as written (a count in another slot than the entries on the cluster): what replicas compare with.
        assert await many.entry_count() == await one.entry_count() == len(keys)

        # Built, as a worker's IndexGuard marks it: an unbuilt index's deletions are held back by the replica
        # (streams/rebuild.py), and this test follows a wipe.
        await many.mark_built("b1")
        replica = Replica(cluster.redis.url, prefix)
        await replica.start()
        follower = asyncio.create_task(replica.follow())
        try:
            now = time.time()
            assert replica.candidates(probe, now).keys() == {k for i, k in enumerate(keys) if i % 10}
            # entries by kind and status (sekat_blocklist_entries) read from every master
            assert replica.entry_counts(now) == {(kind, status): n if kind in ("phone", "account") else 0
                                                 for kind in KINDS for status, n in
                                                 (("reported", 16), ("confirmed", 20), ("revoked", 4), ("expired", 0))}
            found = await replica.lookup_many(["phone:+6011" + "0000001"])
            assert found["phone:+60110000001"].case_ref == "C1"  # evidence read from the cluster on a hit
            await file_report(many, "phone:+60199999999", Status.CONFIRMED, "NSRC")
            started = time.perf_counter()
            while "phone:+60199999999" not in replica.candidates(["phone:+60199999999"], time.time()):
                assert time.perf_counter() - started < 1.0, "change not applied within a second"
                await asyncio.sleep(0.005)
            assert await many.wipe() == len(keys) + 1
            while replica.stats.entries:
                assert time.perf_counter() - started < 5.0, "wipe not applied"
                await asyncio.sleep(0.01)
            while any((replica.entry_counts(time.time()) or {}).values()):
                assert time.perf_counter() - started < 5.0, "wipe not counted"
                await asyncio.sleep(0.01)
        finally:
            follower.cancel()
            await replica.close()
    finally:
        await one.wipe()
        await one.close()
        await many.close()


async def test_the_stored_replica_snapshot_works_on_the_cluster(cluster: Stack) -> None:
    """The first replica reads the index from every master and stores its snapshot (chunks spread by slot);
    the next one starts from it and the change stream and answers as a replica that read the index."""
    prefix = unique("cls") + ":"
    store = BlocklistStore.from_url(cluster.redis.url, prefix)
    keys = [f"phone:+6012{i:07d}" for i in range(40)] + [f"account:CIBBMYKL:80013{i:05d}" for i in range(40)]
    probe = keys + ["phone:+60198888888"]
    replicas: list[Replica] = []
    try:
        for i, key in enumerate(keys):
            await file_report(store, key, Status.CONFIRMED, "PDRM", "scam", f"C{i}")
        await store.mark_built("b1")
        for options in ({}, None, {}, {"stored_snapshot": False}):
            if options is None:  # between the first and the next: a listing and a revocation
                await file_report(store, "phone:+60198888888", Status.CONFIRMED, "NSRC")
                await file_report(store, keys[0], Status.REVOKED, "NSRC", "appeal upheld",
                                  reported_at=datetime.now(timezone.utc) + timedelta(milliseconds=20))
                continue
            replica = Replica(cluster.redis.url, prefix, **options)
            await replica.start()
            replicas.append(replica)
        first, nxt, fresh = replicas
        assert (first.stats.loaded_from, nxt.stats.loaded_from, fresh.stats.loaded_from) == (
            "index", "stored snapshot", "index")
        now = time.time()
        assert nxt.candidates(probe, now).keys() == fresh.candidates(probe, now).keys() == set(probe) - {keys[0]}
        assert (await nxt.lookup_many([keys[7]]))[keys[7]].case_ref == "C7"
        # Gone (say an older build's): a running replica refreshes it in the background, read from every master.
        plain = sync_client(cluster.redis.url)
        try:
            plain.delete(f"{prefix}replica:snapshot")
        finally:
            plain.close()
        assert await asyncio.to_thread(nxt.refresh_stored_snapshot)
        again = Replica(cluster.redis.url, prefix)
        replicas.append(again)
        await again.start()
        assert again.stats.loaded_from == "stored snapshot"
        assert again.candidates(probe, time.time()).keys() == set(probe) - {keys[0]}
    finally:
        for replica in replicas:
            await replica.close()
        await store.wipe()
        await store.close()


async def test_an_entry_written_but_not_announced_is_announced_when_its_batch_is_retried(cluster: Stack) -> None:
    """On a cluster an entry and its announcement are two steps; a failure between them heals on the retry."""
    from sekat.blocklist.lifecycle import merge
    from sekat.records import Report

    prefix = unique("ann") + ":"
    store = BlocklistStore.from_url(cluster.redis.url, prefix)
    replica = Replica(cluster.redis.url, prefix)
    await replica.start()
    follower = asyncio.create_task(replica.follow())
    report = Report(unique("r-"), datetime.now(timezone.utc), "phone", "+60123400001", Status.CONFIRMED, "PDRM",
                    "", "KL/1", "scam", 0)
    try:
        entry = merge(None, report)
        assert entry is not None
        # step one of an interrupted apply: the entry is written, the process dies before announcing it
        await store.client.set(f"{prefix}bl:{report.key}", orjson.dumps(entry.to_json()))
        await asyncio.sleep(0.3)
        assert not replica.candidates([report.key], time.time())  # no replica knows
        changed, _ = await store.apply([report])  # the batch, re-consumed: nothing changes in the index...
        assert changed == []
        started = time.perf_counter()
        while not replica.candidates([report.key], time.time()):  # ...but its key is announced again
            assert time.perf_counter() - started < 2.0, "the retried batch did not announce its key"
            await asyncio.sleep(0.005)
        # The interrupted attempt never counted its entry and the retry found it present: the count stays low
        # (a replica then reports a loss, and the replay counts the index afresh), never high.
        assert await store.entry_count() == 0
        assert await store.count_entries() == 1 and await store.entry_count() == 1
    finally:
        follower.cancel()
        await replica.close()
        await store.close()


async def test_api_keys_and_the_status_rate_limit_work_on_the_cluster(cluster: Stack) -> None:
    from sekat.api.clients import Clients

    clients = Clients(Settings.from_environ({"SEKAT_REDIS_URL": cluster.redis.url,
                                             "SEKAT_REDIS_PREFIX": unique("api") + ":"}))
    try:
        key, token = await clients.keys.create("PDRM", ("report", "read"))
        assert (await clients.keys.verify(token)) == key
        assert await clients.keys.verify(token[:-2] + "xx") is None
        allowed = [(await clients.allow_status_check("203.0.113.9", 2))[0] for _ in range(3)]
        assert allowed == [True, True, False]  # INCR + EXPIRE in one MULTI on the key's node
    finally:
        await clients.close()


async def test_rule_state_on_the_cluster_matches_one_server(cluster: Stack, stack: Stack) -> None:
    """The window script split per slot and MGETs split per slot give the same observations as one server."""
    prefix = unique("rs") + ":"
    policy = load_policy(DEFAULT_POLICY_FILE)
    one = RuleStateStore.from_url(stack.redis.url, prefix)
    many = RuleStateStore.from_url(cluster.redis.url, prefix)
    rng = random.Random(11)
    try:
        for _ in range(4):
            now = datetime.now(timezone.utc)
            transfers = make_transfers(300, 40, now, rng)  # 40 payees: windows fill up and rules fire
            calls = make_calls(300, now, rng)
            obs = []
            for store in (one, many):
                t = await store.read_transfers(transfers, policy, now)
                c = await store.read_calls(calls, policy, now)
                writes = [w for x in transfers for w in engine.decide_transfer(x, Context(now, {}, t), policy).writes]
                writes += [w for x in calls for w in engine.decide_call(x, Context(now, {}, c), policy).writes]
                await store.write(writes)
                obs.append((t, c, len(writes)))
            assert obs[0] == obs[1]
        assert obs[1][0].counts.get("inflow") and obs[1][2] > 0  # payees filled up; callers stay below 20
        assert all(n > 0 for n in master_key_counts(cluster, f"{prefix}rs:*")), "rule state on one shard only"
    finally:
        await one.close()
        await many.close()


async def acted_scenario(acted: ActedStore, store: BlocklistStore) -> list[object]:
    """Everything the release sweep asks of ``sekat.release.acted``, with the answers it gets, in order."""
    keys = [f"account:CIBBMYKL:80034{i:05d}" for i in range(30)] + [f"phone:+6013{i:07d}" for i in range(30)]
    seen: list[object] = []
    # two batches, one acting again on keys of the first: NX keeps the first time
    await acted.record([(k, f"RELEASE_ACCOUNT|{bank}") for k in keys[:30] for bank in ("CIBBMYKL", "MBBEMYKL")]
                       + [(k, "UNBLOCK_NUMBER|MAXIS") for k in keys[30:45]], now=100.0)
    await acted.record([(k, "UNBLOCK_NUMBER|DIGI") for k in keys[40:]] + [(keys[0], "RELEASE_ACCOUNT|RHBBMYKL")],
                       now=200.0)
    seen.append(await acted.due(150.0))
    seen.append(await acted.due(1e9, limit=20))  # oldest first, ties by key, across every group
    seen.append(await acted.due(1e9))
    seen.append(await acted.members(keys))
    # the sweep moves active ones to their expiry; two were revoked meanwhile: compare-and-set keeps them due now
    await store.put_many([Entry(k, Status.REVOKED, "NSRC", "appeal upheld", report_id=f"r-{k}") for k in keys[::7]])
    await store.put(Entry("phone:+60199999999", Status.REVOKED, "NSRC", "nobody acted", report_id="r-x"))
    seen.append(await acted.due(50.0))
    seen.append(await acted.reschedule([(k, 100.0 if i < 45 else 200.0, 1e6 + i) for i, k in enumerate(keys)]))
    seen.append(await acted.reschedule([(keys[1], 100.0, 5.0)]))  # a stale read moves nothing
    seen.append(await acted.due(1e9))
    # release: forget exactly what was released; one that acted meanwhile stays, and its key stays due
    forgot = [await acted.forget(k, ["RELEASE_ACCOUNT|CIBBMYKL", "RELEASE_ACCOUNT|MBBEMYKL"]) for k in keys[:30:7]]
    seen.append(forgot)
    seen.append(await acted.forget(keys[35], ["UNBLOCK_NUMBER|MAXIS"]))
    seen.append(await acted.due(1e9))
    seen.append(await acted.members(keys))
    return seen


async def test_who_acted_answers_on_the_cluster_as_on_one_server(cluster: Stack, stack: Stack) -> None:
    prefix = unique("ac") + ":"
    answers = []
    for url in (stack.redis.url, cluster.redis.url):
        acted, store = ActedStore.from_url(url, prefix), BlocklistStore.from_url(url, prefix)
        try:
            answers.append(await acted_scenario(acted, store))
        finally:
            await acted.close()
            await store.close()
    assert answers[0] == answers[1]
    due_later = answers[1][-2]
    # five keys fully released left; the first is still owed to RHBBMYKL, due now
    assert len(due_later) == 60 - 5 and due_later[0] == ("account:CIBBMYKL:8003400000", 0.0)
    assert "phone:+60199999999" not in dict(due_later)  # nobody acted on it: a revocation does not add it
    assert all(n > 0 for n in master_key_counts(cluster, f"{prefix}acted:*")), "acted state on one shard only"


async def retention_scenario(store: BlocklistStore) -> list[object]:
    """What the purge and the reports agent ask of the index (``streams.purge``), with the answers, in order."""
    now = datetime.now(timezone.utc)
    long_ago = iso(now - timedelta(days=100))
    keys = [f"phone:+6014{i:07d}" for i in range(20)]
    await store.put_many([Entry(k, Status.REVOKED, "NSRC", "appeal upheld", report_id=f"r-{k}", reported_at=long_ago)
                          for k in keys[:10]]
                         + [Entry(k, Status.CONFIRMED, "PDRM", expires_at=iso(now + timedelta(days=1)))
                            for k in keys[10:]])
    seen: list[object] = [sorted(await store.retention_due("revoked", now.timestamp(), 100)),
                          sorted(await store.retention_due("expired", now.timestamp() + 2 * 86400, 100))]
    seen.append([await store.forget(k, now) for k in keys[:10]])  # revoked: removed
    seen.append([(removed, kept is not None) for removed, kept in [await store.forget(k, now) for k in keys[10:12]]])
    seen.append(await store.retention_due("revoked", now.timestamp(), 100))
    seen.append(await store.settle_forgotten(0))
    seen.append(await store.settle_forgotten(10))
    seen.append(await store.entry_count())
    seen.append(sorted((await store.lookup_many(keys)).keys()))
    seen.append(sorted(await store.present(keys)))  # which of a purged entry's links get an unlink
    return seen


async def test_the_retention_purge_answers_on_the_cluster_as_on_one_server(cluster: Stack, stack: Stack) -> None:
    prefix = unique("rt") + ":"
    answers = []
    for url in (stack.redis.url, cluster.redis.url):
        store = BlocklistStore.from_url(url, prefix)
        try:
            answers.append(await retention_scenario(store))
        finally:
            await store.close()
    assert answers[0] == answers[1]
    assert answers[1][2] == [(True, None)] * 10 and answers[1][3] == [(False, True)] * 2, "a listed entry stays"
    assert answers[1][5:8] == [10, 0, 10], "removals leave the count one run later"


async def test_a_revoked_entry_written_but_not_marked_due_is_marked_when_its_batch_is_retried(cluster: Stack) -> None:
    """On a cluster the revoked entry and its due mark are two steps; a failure between them heals on the retry."""
    from sekat.blocklist.lifecycle import merge

    prefix = unique("rv") + ":"
    acted, store = ActedStore.from_url(cluster.redis.url, prefix), BlocklistStore.from_url(cluster.redis.url, prefix)
    key = "account:CIBBMYKL:8005550001"
    try:
        await file_report(store, key, Status.CONFIRMED)
        await acted.record([(key, "RELEASE_ACCOUNT|CIBBMYKL")], now=100.0)
        assert await acted.reschedule([(key, 100.0, float("inf"))]) == 1  # never expires: only a revocation
        revoke = Report(unique("r-"), datetime.now(timezone.utc) + timedelta(milliseconds=5), "account",
                        "8005550001", Status.REVOKED, "NSRC", "CIBBMYKL", "NSRC/A/1", "appeal upheld", 0)
        revoked = merge(await store.get(key), revoke)
        assert revoked is not None and revoked.status is Status.REVOKED
        # step one of an interrupted apply: the entry is written revoked, the process dies before marking it
        await store.client.set(f"{prefix}bl:{key}", orjson.dumps(revoked.to_json()))
        assert await acted.due(time.time()) == []
        changed, _ = await store.apply([revoke])  # the batch, re-consumed: nothing changes in the index...
        assert changed == []
        assert await acted.due(time.time()) == [(key, 0.0)]  # ...but the entry is due now: its release is sent
    finally:
        await acted.close()
        await store.close()


async def brake_scenario(brakes: BrakeStore) -> list[object]:
    """Everything the workers and the brake API ask of ``sekat.brake.store``, with the answers they get."""
    targets = [f"entry:account:CIBBMYKL:80077{i:05d}" for i in range(20)] + ["rule:mule_inflow@1", "source:PDRM"]
    seen: list[object] = []
    window = 60
    seen.append(await brakes.add({t: i + 1 for i, t in enumerate(targets)}, 6000.0, window))
    seen.append(await brakes.add({t: 2 for t in targets[::3]}, 6030.0, window))
    seen.append(await brakes.add({t: 1 for t in targets[::2]}, 6075.0, window))  # next window: slides over both
    trips = [Trip(t, 25, 20, window, "2026-11-29T10:00:00Z", f"w{i}") for i, t in enumerate(targets[-3:])]
    seen.append([await brakes.trip(t) for t in trips])
    seen.append(await brakes.trip(Trip(targets[-1], 30, 20, window, "2026-11-29T10:00:01Z", "w9")))  # already
    seen.append(await brakes.tripped())
    seen.append(await brakes.rearm(targets[-1], 6080.0, window, {"event": "rearm", "by": "NSRC", "reason": "ok"}))
    seen.append(await brakes.rearm(targets[-1], 6080.0, window, {"event": "rearm", "by": "NSRC", "reason": "again"}))
    seen.append(await brakes.add({targets[-1]: 1, targets[0]: 1}, 6081.0, window))  # its counts were forgotten
    seen.append(await brakes.tripped())
    # an entry's trip lifted once confirmed: only the trip of the time the worker saw
    lapsed = Trip(targets[1], 25, 20, window, "2026-11-29T10:00:02Z", "w1", "reported")
    seen.append(await brakes.trip(lapsed))
    seen.append(await brakes.rearm(targets[1], 6082.0, window, {"event": "lift"}, tripped_at="2026-11-29T10:00:09Z"))
    seen.append(await brakes.rearm(targets[1], 6082.0, window, {"event": "lift"}, tripped_at=lapsed.at))
    seen.append(await brakes.tripped())
    seen.append(await brakes.history(10))
    # an entry purged: its trip goes, and its log events are kept without it (a script on the log's key)
    seen.append(await brakes.trip(Trip(targets[2], 25, 20, window, "2026-11-29T10:00:03Z", "w2", "confirmed")))
    seen.append(await brakes.forget(targets[2].removeprefix("entry:"), "purged"))
    seen.append(await brakes.tripped())
    seen.append(await brakes.history(10))
    return seen


async def test_the_safety_brake_answers_on_the_cluster_as_on_one_server(cluster: Stack, stack: Stack) -> None:
    prefix = unique("bk") + ":"
    answers = []
    for url in (stack.redis.url, cluster.redis.url):
        brakes = BrakeStore.from_url(url, prefix)
        try:
            answers.append(await brake_scenario(brakes))
        finally:
            await brakes.close()
    assert answers[0] == answers[1]
    assert answers[1][3] == [True, True, True] and answers[1][4] is False
    assert answers[1][7] is None and "source:PDRM" not in answers[1][9]
    assert answers[1][10] is True and answers[1][11] is None and answers[1][12]["status"] == "reported"
    assert answers[1][-3] == (True, 1) and "entry:account:CIBBMYKL:8007700002" not in answers[1][-2]
    assert "8007700002" not in orjson.dumps(answers[1][-1]).decode()
    assert answers[1][13] == answers[1][9]  # lifted: as before that trip
    assert [e["event"] for e in answers[1][14]] == ["lift", "trip", "rearm", "trip", "trip", "trip"]


def test_a_worker_on_the_cluster_releases_the_account_it_froze_once_the_entry_is_revoked(
        cluster: Stack, logs_dir: Path) -> None:
    name = unique("rel")
    env = cluster_env(cluster, name, SEKAT_RELEASE_INTERVAL_S="1")
    worker = WorkerProcess(env, logs_dir / f"{name}.log")
    s = worker.settings
    collector = Collector(s, [s.topic_freeze, s.topic_decisions])
    producer = Producer(s)
    mule = str(int(unique("")[:10], 16))[-10:].rjust(10, "0")
    key = f"account:CIBBMYKL:{mule}"

    def report(status: str, **extra: str) -> None:
        producer.send(s.topic_reports, {"report_id": unique("r-"), "reported_at": iso(datetime.now(timezone.utc)),
                                        "kind": "account", "bank": "CIBBMYKL", "value": mule, "status": status,
                                        "source": extra.get("source", "PDRM"), "reason": extra.get("reason", "mule")},
                      key=key.encode())

    def wait_entry(status: str) -> None:
        async def read() -> Entry | None:
            store = BlocklistStore.from_url(s.redis_url, s.redis_prefix)
            try:
                return await store.get(key)
            finally:
                await store.close()
        deadline = time.monotonic() + 30
        while (found := asyncio.run(read())) is None or found.status.value != status:
            assert time.monotonic() < deadline, f"{key} not {status}: {found}"
            time.sleep(0.1)
        worker.wait_replica()

    try:
        worker.start(90)
        report("confirmed")
        wait_entry("confirmed")
        event_id = unique("t-")
        payer = "7" + mule[1:]
        producer.send(s.topic_transfers, {
            "event_id": event_id, "occurred_at": iso(datetime.now(timezone.utc)), "transfer_id": unique("DN"),
            "amount": "900.00", "currency": "MYR", "payer": {"bank": "MBBEMYKL", "account": payer},
            "payee": {"bank": "CIBBMYKL", "account": mule}}, key=payer.encode())
        frozen = collector.wait_for(lambda r: r.topic == s.topic_freeze and for_event(event_id)(r), 2, timeout=30)
        assert {(c.json["action"], c.key) for c in frozen} == {("HOLD_TRANSFER", b"MBBEMYKL"),
                                                                ("FREEZE_ACCOUNT", b"CIBBMYKL")}
        time.sleep(2.5)  # two sweeps while it is still listed: nothing is released
        report("revoked", source="NSRC", reason="appeal upheld")
        released = collector.wait_for(lambda r: r.topic == s.topic_freeze
                                      and r.json.get("action") == "RELEASE_ACCOUNT"
                                      and r.json.get("identifier") == key, 2, timeout=30)
        assert sorted(r.key for r in released) == [b"CIBBMYKL", b"MBBEMYKL"]
        assert all(r.json["released"] == "revoked" and r.json["account"] == f"CIBBMYKL:{mule}" for r in released)
        assert worker.alive()
    finally:
        producer.close()
        collector.close()
        worker.stop()


def test_the_scale_benchmark_runs_on_the_cluster(cluster: Stack, tmp_path: Path) -> None:
    args = scale.parser().parse_args(["--events", "8000", "--rate", "1000", "--steady-seconds", "1",
                                      "--partitions", "4", "--blocklist", "2000", "--listed", "500",
                                      "--customers", "20000", "--timeout", "120"])
    prefix = unique("sc") + ":"
    load_blocklist(cluster.redis.url, prefix, Population(args.customers, args.listed), args.blocklist)
    result = scale.run_workers(1, bootstrap=cluster.kafka.bootstrap, redis_url=cluster.redis.url, prefix=prefix,
                               base=tmp_path, args=args, replication=3)
    assert result["workers"] == 1  # (the group of two is the next test's)
    assert result["recall"] == 1.0 and result["false_commands"] == 0 and result["deadletters"] == 0
    assert result["expected_events"] > 50 and result["latency_samples"] > 0
    assert result["p99_ms"] is not None


def test_no_command_is_lost_when_a_broker_stops_under_two_workers(cluster: Stack, logs_dir: Path,
                                                                   tmp_path: Path) -> None:
    name = unique("loss")
    env = cluster_env(cluster, name, SEKAT_POLICY_FILE=bench_policy(tmp_path, "shadow"))
    settings = Settings.from_environ(env)
    population = Population(5_000, 300)
    load_blocklist(cluster.redis.url, settings.redis_prefix, population, 300)
    workers = [WorkerProcess(env | {"SEKAT_WEB_PORT": str(free_port())}, logs_dir / f"{name}-{i}.log")
               for i in range(2)]
    collector = Collector(settings, [settings.topic_freeze, settings.topic_block])
    producer = KafkaProducer(bootstrap_servers=cluster.kafka.bootstrap.split(","), acks="all", retries=20,
                             retry_backoff_ms=200, request_timeout_ms=10_000, linger_ms=5)
    traffic = Traffic(population, listed_share=0.1, seed=5, run=name)
    expected: dict[str, tuple[tuple[str, ...], int]] = {}
    try:
        with ThreadPoolExecutor(2) as pool:  # both join the group at once, as a deployment's workers do
            for started in [pool.submit(w.start, 90) for w in workers]:
                started.result()

        def send(first: int, last: int) -> None:
            now = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            pending = []
            for seq in range(first, last):
                value, key, kind, actions, event_id = traffic.event(seq, now)
                pending.append((producer.send(settings.topic_names()[kind], value, key=key), event_id, actions))
            for future, event_id, actions in pending:
                future.get(timeout=60)  # only what Kafka acknowledged (acks=all, 2 in sync) is owed a command
                if actions:
                    expected[event_id] = (actions, 0)

        send(0, 1500)
        collector.wait_for(lambda r: True, count=10, timeout=60)  # the group is deciding
        admin = KafkaAdminClient(bootstrap_servers=cluster.kafka.bootstrap.split(","))
        try:
            leader = admin.describe_topics([settings.topic_transfers])[0]["partitions"][0]["leader_id"]
        finally:
            admin.close()
        victim = cluster.kafka.brokers[leader - 1]  # type: ignore[attr-defined]
        stopping = threading.Thread(target=victim.stop)
        stopping.start()  # mid-traffic: the rest is sent while the broker goes away
        send(1500, 3000)
        stopping.join(60)
        assert not victim.running()
        send(3000, 4000)

        def arrived() -> bool:
            return check(expected, [(r.json["event_id"], r.json["action"], 0) for r in collector.matching(
                lambda r: True)])[0] == 1.0
        deadline = time.monotonic() + 120
        while not arrived() and time.monotonic() < deadline:
            time.sleep(0.5)
        commands = [r.json for r in collector.matching(lambda r: True)]
        recall, false, _ = check(expected, [(c["event_id"], c["action"], 0) for c in commands])
        assert len(expected) > 200
        assert recall == 1.0, f"{recall:.4f} of {len(expected)} events got all their commands"
        assert false == 0
        # At-least-once: a command re-sent after a rebalance or a retry carries the same id and body.
        by_id = Counter(c["command_id"] for c in commands)
        for command_id in [i for i, n in by_id.items() if n > 1]:
            bodies = {orjson.dumps({k: v for k, v in c.items() if k != "issued_at"})
                      for c in commands if c["command_id"] == command_id}
            assert len(bodies) == 1, f"command {command_id} differs between deliveries"
        assert all(w.alive() for w in workers)
    finally:
        producer.close()
        collector.close()
        for w in workers:
            w.stop()
