"""Retention and erasure end to end: a real worker, the real Kafka broker's log cleaner, real Redis.

Given an entry revoked longer ago than SEKAT_RETENTION_REVOKED_DAYS, the worker's purge tombstones it on
the compacted reports topic and the reports agent removes it: then no Redis key or value holds its
identifier, the worker's replica no longer has it (a call from the number is not blocked), an export
does not list it, and once the broker has compacted the topic no record of it is left there either.
Given an erasure while events flow, the worker keeps deciding and the identifier is gone.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import msgspec
import orjson
import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic

from sekat.blocklist.appeals import Appeal, AppealStore, Contact, acknowledged, decided, filed
from sekat.blocklist.connection import sync_client
from sekat.blocklist.feedback import FeedbackStore
from sekat.blocklist.store import BlocklistStore
from sekat.brake.store import BrakeStore, Trip
from sekat.records import Entry, Status, iso
from tests.support import (ApiProcess, Collector, Producer, Stack, Traffic, WorkerProcess, isolated_env, sekat,
                           unique, wait_until)

pytestmark = pytest.mark.integration

# The reports topic of this test compacts within seconds: segments roll after 500 ms, any dirt is worth
# cleaning, and a tombstone is dropped 1 s after its key's older records were (the broker's cleaner looks
# every 15 s by default).
FAST_COMPACTION = {"cleanup.policy": "compact", "segment.ms": "500", "min.cleanable.dirty.ratio": "0.001",
                   "delete.retention.ms": "1000", "min.compaction.lag.ms": "0"}


def mobile() -> str:
    digits = str(int(unique("")[:8], 16))[-7:].rjust(7, "0")
    return f"+6013{digits}"


class Desk:
    def __init__(self, worker: WorkerProcess, api: ApiProcess, producer: Producer, collector: Collector) -> None:
        self.worker, self.api, self.producer, self.out = worker, api, producer, collector
        self.settings = worker.settings
        self.env = worker.env
        self.http = httpx.Client(base_url=api.url, timeout=20)

    def subject(self, key: str) -> str:
        return "hmac-sha256:" + hmac.new(self.settings.audit_key.encode(), key.encode(), hashlib.sha256).hexdigest()

    def report(self, number: str, status: str, at: datetime, **extra: Any) -> None:
        body = {"report_id": unique("r-"), "reported_at": iso(at), "kind": "phone", "value": number,
                "source": "PDRM", "status": status, "reason": "scam calls", "filed_by": "cli:test", **extra}
        self.producer.send(self.settings.topic_reports, body, key=f"phone:{number}".encode())

    def entry(self, key: str) -> Entry | None:
        async def go() -> Entry | None:
            store = BlocklistStore.from_url(self.settings.redis_url, self.settings.redis_prefix)
            try:
                return await store.get(key)
            finally:
                await store.close()
        return asyncio.run(go())

    def call(self, caller: str) -> str:
        event_id = unique("c-")
        body = {"event_id": event_id, "occurred_at": iso(datetime.now(timezone.utc)), "call_id": unique("call-"),
                "operator": "CELCOM", "caller": caller, "callee": "+60123456780"}
        self.producer.send(self.settings.topic_calls, body, key=caller.encode())
        return event_id

    def redis_traces(self, digits: str) -> list[str]:
        """Every key under this worker's prefix whose name or value holds ``digits``."""
        client = sync_client(self.settings.redis_url)
        found = []
        try:
            for rkey in client.scan_iter(match=f"{self.settings.redis_prefix}*", count=1000):
                name = rkey.decode()
                kind = client.type(rkey).decode()
                if kind == "string":
                    values = [client.get(rkey) or b""]
                elif kind == "stream":
                    values = [b" ".join(v for f in fields.values() for v in [f]) for _, fields in client.xrange(rkey)]
                elif kind == "zset":
                    values = [m for m in client.zrange(rkey, 0, -1)]
                elif kind == "set":
                    values = list(client.smembers(rkey))
                elif kind == "list":
                    values = list(client.lrange(rkey, 0, -1))
                elif kind == "hash":
                    values = [b" ".join([k, v]) for k, v in client.hgetall(rkey).items()]
                else:
                    values = []
                if digits in name or any(digits.encode() in v for v in values):
                    found.append(name)
        finally:
            client.close()
        return found

    def latest(self, topic: str) -> dict[bytes, bytes | None]:
        """The latest record value of each key of ``topic``, read from its first offset (None: a tombstone)."""
        consumer = KafkaConsumer(**self.settings.kafka_client_config(), group_id=None, enable_auto_commit=False)
        try:
            tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or set()]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            ends = consumer.end_offsets(tps)
            found: dict[bytes, bytes | None] = {}
            while any(consumer.position(tp) < ends[tp] for tp in tps):
                for records in consumer.poll(timeout_ms=1000).values():
                    found.update((r.key, r.value) for r in records)
            return found
        finally:
            consumer.close()

    def give_feedback(self, record: dict[str, Any]) -> None:
        """Feedback as ``FeedbackDesk.apply`` records it: on the feedback topic, then in each entry's history."""
        self.producer.send(self.settings.topic_feedback, record, key=record["command_id"].encode())

        async def go() -> None:
            store = FeedbackStore.from_url(self.settings.redis_url, self.settings.redis_prefix)
            try:
                await store.add(record, record["entries"])
            finally:
                await store.close()
        asyncio.run(go())

    def history(self, key: str) -> list[dict[str, Any]]:
        async def go() -> list[dict[str, Any]]:
            store = FeedbackStore.from_url(self.settings.redis_url, self.settings.redis_prefix)
            try:
                return await store.of_entry(key)
            finally:
                await store.close()
        return asyncio.run(go())

    def appeal(self, appeal_id: str) -> Appeal | None:
        async def go() -> Appeal | None:
            store = BlocklistStore.from_url(self.settings.redis_url, self.settings.redis_prefix)
            try:
                return await AppealStore(store.client, self.settings.redis_prefix).get(appeal_id)
            finally:
                await store.close()
        return asyncio.run(go())

    def keep_appeal(self, appeal: Appeal) -> None:
        """An appeal as the API keeps each step of it: on the appeals topic, then in Redis."""
        self.producer.send(self.settings.topic_appeals, appeal.to_json(), key=appeal.appeal_id.encode())

        async def go() -> None:
            store = BlocklistStore.from_url(self.settings.redis_url, self.settings.redis_prefix)
            try:
                await AppealStore(store.client, self.settings.redis_prefix).put(appeal)
            finally:
                await store.close()
        asyncio.run(go())

    def topic_records(self, digits: str) -> list[tuple[bytes | None, bytes | None]]:
        """Every record of the reports topic, read from its first offset, whose key or value holds ``digits``."""
        consumer = KafkaConsumer(**self.settings.kafka_client_config(), group_id=None, enable_auto_commit=False)
        try:
            parts = consumer.partitions_for_topic(self.settings.topic_reports) or set()
            tps = [TopicPartition(self.settings.topic_reports, p) for p in parts]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            ends = consumer.end_offsets(tps)
            found = []
            while any(consumer.position(tp) < ends[tp] for tp in tps):
                for records in consumer.poll(timeout_ms=1000).values():
                    found += [(r.key, r.value) for r in records
                              if digits.encode() in (r.key or b"") or digits.encode() in (r.value or b"")]
            return found
        finally:
            consumer.close()


@pytest.fixture(scope="module")
def desk(stack: Stack, logs_dir: Path) -> Iterator[Desk]:
    name = unique("priv")
    env = isolated_env(stack, name, SEKAT_RETENTION_REVOKED_DAYS="30", SEKAT_RETENTION_EXPIRED_DAYS="30",
                       SEKAT_RETENTION_APPEALS_DAYS="30", SEKAT_PURGE_INTERVAL_S="1",
                       SEKAT_BLOCKLIST_COUNT_INTERVAL_S="1")
    admin = KafkaAdminClient(bootstrap_servers=stack.kafka.bootstrap)
    try:
        admin.create_topics([NewTopic(env["SEKAT_TOPIC_REPORTS"], 2, 1, topic_configs=FAST_COMPACTION)])
    finally:
        admin.close()
    worker = WorkerProcess(env, logs_dir / f"{name}.log").start()
    api = ApiProcess(env, logs_dir / f"{name}-api.log").start()
    producer = Producer(worker.settings)
    s = worker.settings
    collector = Collector(s, [s.topic_block, s.topic_decisions, s.topic_audit, s.topic_deadletter])
    desk = Desk(worker, api, producer, collector)
    try:
        yield desk
    finally:
        desk.http.close()
        collector.close()
        producer.close()
        api.stop()
        worker.stop()


def revoked_phones(desk: Desk) -> float:
    """Revoked phone entries the worker's replica holds (``sekat_blocklist_entries``, counted by the replica)."""
    return desk.worker.sample('sekat_blocklist_entries{kind="phone",status="revoked"}')


def test_an_entry_past_its_retention_leaves_no_trace(desk: Desk) -> None:
    number, kept = mobile(), mobile()
    digits = number.lstrip("+")
    now = datetime.now(timezone.utc)
    # Revoked 31 days ago: a day past the 30 days a revoked entry is kept. Marked by a call of the number
    # before it is revoked, so that rule state and the decision hold it too.
    desk.report(number, "confirmed", now - timedelta(days=40))
    wait_until("the entry listed", lambda: desk.entry(f"phone:{number}"), lambda e: e is not None)
    desk.worker.wait_replica()
    blocked = desk.call(number)
    desk.out.wait_for(lambda r: r.topic == desk.settings.topic_block and r.json["event_id"] == blocked)
    desk.report(kept, "confirmed", now - timedelta(days=3))
    desk.report(kept, "revoked", now - timedelta(days=1), reason="cleared on appeal")  # a day ago: kept
    wait_until("the kept entry revoked", lambda: desk.entry(f"phone:{kept}"),
               lambda e: e is not None and e.status.value == "revoked")
    wait_until("the replica counting the kept entry", lambda: revoked_phones(desk), lambda n: n >= 1)
    desk.report(number, "revoked", now - timedelta(days=31), reason="cleared on appeal")

    wait_until("the purge removing the entry", lambda: desk.entry(f"phone:{number}"), lambda e: e is None)
    assert desk.entry(f"phone:{kept}") is not None, "an entry within its retention stays"
    desk.worker.wait_replica()
    wait_until("the replica dropping the entry", lambda: revoked_phones(desk), lambda n: n == 1)

    # Rule state (the call's windows) and what was sent to whom (for feedback) expire on their own TTLs (the
    # latter within the retention: SEKAT_FEEDBACK_WINDOW_DAYS may not exceed it); everything else of the entry
    # goes, the change stream's announcements once the replica has passed them.
    wait_until("no trace of the identifier in Redis", lambda: desk.redis_traces(digits),
               lambda keys: [k for k in keys if ":rs:" not in k and ":sent:" not in k] == [])
    exported = sekat(desk.env, "blocklist", "export", "--purpose", "retention check")
    assert exported.returncode == 0, exported.stderr
    assert digits not in exported.stdout and kept.lstrip("+") in exported.stdout
    assert desk.worker.sample("sekat_blocklist_entries_purged_total") >= 1
    assert desk.worker.sample('sekat_purge_tombstones_total{ended="revoked"') >= 1

    # The broker compacts the topic: the reports and then the tombstone go. A record on another key after
    # each wait rolls the active segment (the cleaner never touches it) so that the key's records are cleanable.
    def records_left() -> list[Any]:
        desk.report(mobile(), "reported", datetime.now(timezone.utc))
        return desk.topic_records(digits)
    wait_until("compaction of the reports topic", records_left, lambda found: found == [], timeout=120, every=3)
    assert desk.topic_records(kept.lstrip("+")), "the kept entry's records stay on the topic"

    # A replay of the compacted topic (what a worker does when Redis comes back empty) does not bring it back.
    rebuilt = sekat(desk.env, "blocklist", "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert desk.entry(f"phone:{number}") is None and desk.entry(f"phone:{kept}") is not None


def test_a_purged_entry_takes_its_appeals_and_the_feedback_naming_it_along(desk: Desk) -> None:
    """The purge removes an entry's appeals (Redis and the appeals topic) and institutions' feedback naming it,
    found through the indexes Redis keeps per identifier: a record on a command that acted on another entry too
    stays for that entry, without the purged one, on the topic and in that entry's history."""
    number, other = mobile(), mobile()
    key, other_key = f"phone:{number}", f"phone:{other}"
    digits = number.lstrip("+")
    now = datetime.now(timezone.utc)
    desk.report(number, "confirmed", now - timedelta(days=40))
    desk.report(other, "confirmed", now - timedelta(days=3))
    wait_until("both listed", lambda: (desk.entry(key), desk.entry(other_key)), lambda pair: None not in pair)
    email = f"{unique('appellant-')}@mail.example.my"
    filed_appeal = desk.http.post("/v1/appeals", json={
        "kind": "phone", "value": number, "appellant": "person", "contact": {"name": "Nurul Huda", "email": email},
        "grounds": "the number was spoofed", "evidence_ref": "CELCOM letter 2026/12/91"})
    assert filed_appeal.status_code == 202, filed_appeal.text
    appeal_id = filed_appeal.json()["appeal_id"]
    alone, shared = unique("cmd-"), unique("cmd-")
    desk.give_feedback(feedback(alone, [key]))
    desk.give_feedback(feedback(shared, [key, other_key]))
    assert [f["command_id"] for f in desk.history(other_key)] == [shared]

    desk.report(number, "revoked", now - timedelta(days=31), reason="cleared on appeal")
    wait_until("the purge removing the entry", lambda: desk.entry(key), lambda e: e is None)
    # A stored replica snapshot written while the entry was listed keeps it until its chunks expire, minutes
    # after the workers store a fresh one (blocklist/replica_snapshot.py, docs/privacy.md): not this test's.
    wait_until("no trace of the identifier in Redis", lambda: desk.redis_traces(digits),
               lambda keys: [k for k in keys if not any(part in k for part in (":rs:", ":sent:", ":replica:snapshot:"))]
               == [], timeout=60)
    assert desk.redis_traces(email) == [] and desk.appeal(appeal_id) is None
    assert desk.latest(desk.settings.topic_appeals)[appeal_id.encode()] is None
    kept = desk.latest(desk.settings.topic_feedback)
    assert kept[alone.encode()] is None
    assert orjson.loads(kept[shared.encode()] or b"null")["entries"] == [other_key]
    [left] = desk.history(other_key)
    assert left["command_id"] == shared and left["entries"] == [other_key]
    assert desk.entry(other_key) is not None
    assert desk.worker.sample('sekat_purge_appeals_total{why="entry"') >= 1
    assert desk.worker.sample('sekat_purge_feedback_records_total{written="rewritten"') >= 1
    assert desk.worker.sample('sekat_purge_feedback_records_total{written="tombstone"') >= 1


def linked_to(desk: Desk, key: str, others: list[str]) -> None:
    """Wait until each of ``others`` (phone numbers) is listed and linked to ``key``."""
    for other in others:
        wait_until(f"{other} linked", lambda: desk.entry(f"phone:{other}"),
                   lambda e: e is not None and key in [link.key for link in e.links])


def test_links_to_a_purged_entry_leave_the_entries_linked_to_it(desk: Desk) -> None:
    """A number filed with two others of the same scam, then revoked and purged: the purge unlinks it from the
    entries its links name before its tombstone. Afterwards no entry in Redis names it, nor, once the broker has
    compacted the topic, any record of it; the other two stay listed and linked to each other, also after a
    replay of the topic."""
    number, partner, third = mobile(), mobile(), mobile()
    key, digits = f"phone:{number}", number.lstrip("+")
    now = datetime.now(timezone.utc)
    desk.report(number, "confirmed", now - timedelta(days=40),
                links=[{"kind": "phone", "value": partner}, {"kind": "phone", "value": third}])
    linked_to(desk, key, [partner, third])
    desk.report(partner, "confirmed", now - timedelta(days=2), reason="its own case")
    desk.report(number, "revoked", now - timedelta(days=31), reason="cleared on appeal")

    wait_until("the purge removing the entry", lambda: desk.entry(key), lambda e: e is None)
    wait_until("no trace of the identifier in Redis", lambda: desk.redis_traces(digits),
               lambda keys: [k for k in keys if not any(part in k for part in (":rs:", ":sent:", ":replica:snapshot:"))]
               == [], timeout=60)

    def others_linked() -> None:
        for one, other in ((partner, third), (third, partner)):
            entry = desk.entry(f"phone:{one}")
            assert entry is not None and entry.status is Status.CONFIRMED
            assert [link.key for link in entry.links] == [f"phone:{other}"]
            assert digits not in orjson.dumps(entry.to_json()).decode()
    others_linked()
    assert desk.entry(f"phone:{partner}").report_count == 2  # type: ignore[union-attr]
    latest = desk.latest(desk.settings.topic_reports)
    for other in (partner, third):
        assert digits not in (latest[f"phone:{other}".encode()] or b"").decode()

    def records_left() -> list[Any]:  # a record on another key rolls the active segment (as above)
        desk.report(mobile(), "reported", datetime.now(timezone.utc))
        return desk.topic_records(digits)
    wait_until("compaction of the reports topic", records_left, lambda found: found == [], timeout=120, every=3)
    rebuilt = sekat(desk.env, "blocklist", "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert desk.entry(key) is None
    others_linked()


def trip_and_rearm(desk: Desk, key: str) -> None:
    """The safety brake tripped on entry ``key`` by a worker, and re-armed by an authority: a trip in force again
    after it, and two events of the log naming it."""
    async def go() -> None:
        brakes = BrakeStore.from_url(desk.settings.redis_url, desk.settings.redis_prefix)
        now = datetime.now(timezone.utc)
        try:
            trip = Trip(f"entry:{key}", 9, 5, 60, iso(now - timedelta(days=50)), "worker-1", "confirmed")
            await brakes.trip(trip)
            await brakes.rearm(trip.target, time.time(), 60, {"event": "rearm", "target": trip.target,
                                                               "by": "api:PDRM:k1", "reason": "checked"})
            await brakes.trip(Trip(f"entry:{key}", 7, 5, 60, iso(now), "worker-2", "confirmed"))
        finally:
            await brakes.close()
    asyncio.run(go())


def brake_state(desk: Desk) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    async def go() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        brakes = BrakeStore.from_url(desk.settings.redis_url, desk.settings.redis_prefix)
        try:
            return await brakes.tripped(), await brakes.history(1000)
        finally:
            await brakes.close()
    return asyncio.run(go())


def test_the_safety_brake_keeps_no_trace_of_a_purged_entry(desk: Desk) -> None:
    """A purged entry the brake had tripped on: its trip goes, and its trip and re-arm events stay in the brake's
    log as stubs naming only the kind of entry and why it left, never the identifier."""
    number = mobile()
    key, digits = f"phone:{number}", number.lstrip("+")
    desk.report(number, "confirmed", datetime.now(timezone.utc) - timedelta(days=40))
    wait_until("the entry listed", lambda: desk.entry(key), lambda e: e is not None)
    trip_and_rearm(desk, key)
    assert f"entry:{key}" in brake_state(desk)[0]
    desk.report(number, "revoked", datetime.now(timezone.utc) - timedelta(days=31), reason="cleared on appeal")

    wait_until("the purge removing the entry", lambda: desk.entry(key), lambda e: e is None)
    wait_until("no trace of the identifier in Redis", lambda: desk.redis_traces(digits),
               lambda keys: [k for k in keys if not any(part in k for part in (":rs:", ":sent:", ":replica:snapshot:"))]
               == [], timeout=60)
    tripped, log = brake_state(desk)
    assert f"entry:{key}" not in tripped
    stubs = [e for e in log if e.get("removed") == "purged" and e["target"] == "entry:phone:(removed)"]
    assert sorted(e["event"] for e in stubs) == ["rearm", "trip", "trip"]
    assert [e["trip"]["target"] for e in stubs if e["event"] == "rearm"] == ["entry:phone:(removed)"]
    assert all(digits not in orjson.dumps(e).decode() for e in log)


def test_the_change_stream_is_trimmed_past_a_purge_once_a_slow_replica_has_read_it(desk: Desk) -> None:
    """A replica that reports its position late holds the trim back, and does not cancel it: once every replica
    has read past the removal, a later run trims the purged key's announcement away."""
    number = mobile()
    digits = number.lstrip("+").encode()
    changes, seen = f"{desk.settings.redis_prefix}bl:changes", f"{desk.settings.redis_prefix}replica:seen"
    client = sync_client(desk.settings.redis_url)

    def behind_at(change_id: bytes) -> None:  # a replica following the stream, at ``change_id`` now
        client.hset(seen, "slow-replica", change_id + f" {int(time.time() * 1000)}".encode())

    def announced() -> bool:
        return any(digits in v for _, fields in client.xrange(changes) for v in fields.values())
    try:
        last = client.xrevrange(changes, count=1)
        behind_at(last[0][0] if last else b"0-0")
        desk.report(number, "revoked", datetime.now(timezone.utc) - timedelta(days=31), reason="cleared")
        wait_until("the purge removing the entry", lambda: desk.entry(f"phone:{number}"), lambda e: e is None)
        time.sleep(4)  # several purge runs, each held back by the slow replica
        assert announced(), "trimmed past a replica that has not read the removal"
        [(newest, _)] = client.xrevrange(changes, count=1)
        behind_at(newest)
        wait_until("the purged key's announcement trimmed", announced, lambda found: not found)
    finally:
        client.hdel(seen, "slow-replica")
        client.close()


def an_appeal(decided_days_ago: float | None, outcome: str = "rejected", reappeal_days: int = 0) -> Appeal:
    """An appeal the API filed 60 days ago and, unless ``decided_days_ago`` is None, decided that long ago."""
    now = datetime.now(timezone.utc)
    at = now - timedelta(days=60)
    appeal = filed(unique("ap-"), f"phone:{mobile()}", ("PDRM",), "person",
                   Contact(name="Lim Wei Jie", email=f"{unique('a-')}@mail.example.my"), "not mine", "", "0" * 64,
                   "own-report", at, 86_400, 14 * 86_400)
    appeal = acknowledged(appeal, "PDRM", "k1", at + timedelta(hours=1))
    if decided_days_ago is None:
        return appeal
    return decided(appeal, "PDRM", "k1", outcome, "reviewed", {"PDRM"},  # type: ignore[arg-type]
                   now - timedelta(days=decided_days_ago), reappeal_days)


def test_decided_appeals_are_purged_after_their_retention(desk: Desk) -> None:
    """SEKAT_RETENTION_APPEALS_DAYS=30: an appeal decided 40 days ago goes (Redis, tombstoned on the topic);
    one decided 5 days ago, one still open and one rejected whose identifier may not be appealed again yet stay."""
    old, upheld = an_appeal(40), an_appeal(35, "upheld")
    recent, still_open, waiting = an_appeal(5), an_appeal(None), an_appeal(40, reappeal_days=60)
    for appeal in (old, upheld, recent, still_open, waiting):
        desk.keep_appeal(appeal)
    wait_until("the purge removing the appeals past their retention",
               lambda: (desk.appeal(old.appeal_id), desk.appeal(upheld.appeal_id)), lambda pair: pair == (None, None))
    assert [desk.appeal(a.appeal_id) for a in (recent, still_open, waiting)] == [recent, still_open, waiting]
    latest = desk.latest(desk.settings.topic_appeals)
    assert latest[old.appeal_id.encode()] is None and latest[upheld.appeal_id.encode()] is None
    assert all(latest[a.appeal_id.encode()] is not None for a in (recent, still_open, waiting))
    gone = old.identifier.removeprefix("phone:+")
    assert desk.redis_traces(gone) == [] and desk.redis_traces(old.contact.email) == []
    assert desk.worker.sample('sekat_purge_appeals_total{why="decided"') >= 2


def test_appeals_decided_before_the_decided_index_existed_are_purged_by_age_after_the_backfill(desk: Desk) -> None:
    """An appeal decided 40 days ago and kept the way appeals were before ``{appeals}:decided`` existed (the appeal,
    its identifier's keys, no decided index entry), in a Redis whose appeals were not yet backfilled: the purge
    files it by when it was decided, once, marks that done, and purges it by age like any other."""
    old = an_appeal(40)
    base = f"{desk.settings.redis_prefix}{{appeals}}:"
    client = sync_client(desk.settings.redis_url)
    try:
        wait_until("the worker's purge marking the backfill done", lambda: client.get(base + "backfill:decided"),
                   lambda mark: mark is not None)
        desk.producer.send(desk.settings.topic_appeals, old.to_json(), key=old.appeal_id.encode())
        client.set(base + old.appeal_id, msgspec.json.encode(old))
        client.set(base + f"on:{old.identifier}", old.appeal_id)
        client.sadd(base + f"all:{old.identifier}", old.appeal_id)
        client.delete(base + "backfill:decided")  # as in a Redis that held appeals before the backfill existed
        wait_until("the purge removing the appeal", lambda: desk.appeal(old.appeal_id), lambda a: a is None)
        assert client.get(base + "backfill:decided") is not None
        assert client.zscore(base + "decided", old.appeal_id) is None
    finally:
        client.close()
    assert desk.latest(desk.settings.topic_appeals)[old.appeal_id.encode()] is None
    assert desk.redis_traces(old.contact.email) == []


def test_every_entry_read_names_its_purpose_and_is_audited_without_the_identifier(desk: Desk) -> None:
    number = mobile()
    desk.report(number, "confirmed", datetime.now(timezone.utc))
    wait_until("the entry listed", lambda: desk.entry(f"phone:{number}"), lambda e: e is not None)
    created = sekat(desk.env, "apikey", "create", "--agency", "PDRM", "--scopes", "read")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    key_id = token.split("_")[1]

    refused = desk.http.get("/v1/entries", params={"phone": number}, headers={"X-API-Key": token})
    assert refused.status_code == 422 and refused.json()["detail"]["field"] == "purpose"
    assert "purpose: is required" in refused.json()["detail"]["message"]
    read = desk.http.get("/v1/entries", params={"phone": number, "purpose": "investigation KL/2026/123"},
                         headers={"X-API-Key": token})
    assert read.status_code == 200 and read.json()["key"] == f"phone:{number}"
    unknown = mobile()
    assert desk.http.get("/v1/entries", params={"phone": unknown, "purpose": "tip-off check"},
                         headers={"X-API-Key": token}).status_code == 404

    records = desk.out.wait_for(lambda r: r.topic == desk.settings.topic_audit and r.json["by"] == f"api:PDRM:{key_id}",
                                count=2)
    found = {r.json["subject"]: r.json for r in records}
    mine = found[desk.subject(f"phone:{number}")]
    assert mine["action"] == "read" and mine["purpose"] == "investigation KL/2026/123" and mine["found"] is True
    assert found[desk.subject(f"phone:{unknown}")]["found"] is False
    assert all(number.lstrip("+") not in orjson.dumps(r.json).decode() for r in records)

    # A regulator's export of one number's trail: its read, found by the number's keyed hash.
    exported = sekat(desk.env, "privacy", "audit-export", "--phone", number)
    assert exported.returncode == 0, exported.stderr
    lines = [orjson.loads(line) for line in exported.stdout.splitlines()]
    assert [(r["action"], r["purpose"]) for r in lines] == [("read", "investigation KL/2026/123")]


def test_reads_of_the_brake_and_from_the_command_line_are_audited(desk: Desk) -> None:
    """``GET /v1/brake`` names the entries the brake switched to shadow, and ``sekat blocklist show`` shows an
    entry: both require a purpose, and each identifier they show gets a ``read`` audit record (who, why, its
    keyed hash) before the answer."""
    number = mobile()
    key, digits = f"phone:{number}", number.lstrip("+")
    now = datetime.now(timezone.utc)
    desk.report(number, "confirmed", now)
    wait_until("the entry listed", lambda: desk.entry(key), lambda e: e is not None)

    async def trip() -> None:  # as a worker trips the brake on an entry that drove too many commands
        brakes = BrakeStore.from_url(desk.settings.redis_url, desk.settings.redis_prefix)
        try:
            await brakes.trip(Trip(f"entry:{key}", 9, 5, 60, iso(now), "worker-1", "confirmed"))
        finally:
            await brakes.close()
    asyncio.run(trip())
    created = sekat(desk.env, "apikey", "create", "--agency", "BNM", "--scopes", "read")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    key_id = token.split("_")[1]

    refused = desk.http.get("/v1/brake", headers={"X-API-Key": token})
    assert refused.status_code == 422 and refused.json()["detail"]["field"] == "purpose"
    state = desk.http.get("/v1/brake", params={"purpose": "incident INC-2026-17"}, headers={"X-API-Key": token})
    assert state.status_code == 200 and f"entry:{key}" in [t["target"] for t in state.json()["tripped"]]
    [api_read] = desk.out.wait_for(lambda r: r.topic == desk.settings.topic_audit
                                   and r.json["by"] == f"api:BNM:{key_id}" and r.json["subject"] == desk.subject(key))
    assert (api_read.json["action"], api_read.json["purpose"]) == ("read", "incident INC-2026-17")

    anonymous = {k: v for k, v in desk.env.items() if k != "SEKAT_OPERATOR"}
    unnamed = sekat(anonymous, "blocklist", "show", "--phone", number, "--purpose", "case KL/2026/9")
    assert unnamed.returncode == 1 and "--operator (or SEKAT_OPERATOR) is required" in unnamed.stderr
    no_purpose = sekat(desk.env, "blocklist", "show", "--phone", number)
    assert no_purpose.returncode == 2 and "--purpose" in no_purpose.stderr
    assert digits not in unnamed.stdout + no_purpose.stdout
    shown = sekat(desk.env, "blocklist", "show", "--phone", number, "--purpose", "case KL/2026/9",
                  "--operator", "aisyah.ops")
    assert shown.returncode == 0 and orjson.loads(shown.stdout)["key"] == key, shown.stderr
    [cli_read] = desk.out.wait_for(lambda r: r.topic == desk.settings.topic_audit
                                   and r.json["by"] == "cli:aisyah.ops" and r.json["subject"] == desk.subject(key))
    assert (cli_read.json["purpose"], cli_read.json["found"]) == ("case KL/2026/9", True)
    assert all(digits not in orjson.dumps(r.json).decode() for r in (api_read, cli_read))


def test_an_export_of_the_index_is_audited_entry_by_entry(desk: Desk) -> None:
    """``sekat blocklist export`` requires a purpose and an operator, and every entry it writes has a ``read``
    audit record (who, why, its keyed hash, never the identifier) on the audit topic."""
    number = mobile()
    desk.report(number, "confirmed", datetime.now(timezone.utc))
    wait_until("the entry listed", lambda: desk.entry(f"phone:{number}"), lambda e: e is not None)
    anonymous = {k: v for k, v in desk.env.items() if k != "SEKAT_OPERATOR"}
    unnamed = sekat(anonymous, "blocklist", "export", "--purpose", "quarterly reconciliation Q4")
    assert unnamed.returncode == 1 and "--operator (or SEKAT_OPERATOR) is required" in unnamed.stderr
    no_purpose = sekat(desk.env, "blocklist", "export")
    assert no_purpose.returncode == 2 and "--purpose" in no_purpose.stderr
    assert unnamed.stdout == no_purpose.stdout == ""

    exported = sekat(desk.env, "blocklist", "export", "--purpose", "quarterly reconciliation Q4",
                     "--operator", "hafiz.ops")
    assert exported.returncode == 0, exported.stderr
    keys = [orjson.loads(line)["key"] for line in exported.stdout.splitlines()]
    assert f"phone:{number}" in keys
    records = desk.out.wait_for(lambda r: r.topic == desk.settings.topic_audit and r.json["by"] == "cli:hafiz.ops",
                                count=len(keys))
    assert sorted(r.json["subject"] for r in records) == sorted(desk.subject(k) for k in keys)
    assert {(r.json["action"], r.json["purpose"], r.json["found"]) for r in records} == {
        ("read", "quarterly reconciliation Q4", True)}
    assert all(number.lstrip("+") not in orjson.dumps(r.json).decode() for r in records)


def test_filings_from_the_command_line_name_their_operator(desk: Desk) -> None:
    number = mobile()
    anonymous = {k: v for k, v in desk.env.items() if k != "SEKAT_OPERATOR"}
    refused = sekat(anonymous, "blocklist", "add", "--phone", number, "--source", "PDRM")
    assert refused.returncode == 1 and "--operator (or SEKAT_OPERATOR) is required" in refused.stderr
    filed = sekat(anonymous, "blocklist", "add", "--phone", number, "--source", "PDRM", "--operator", "aisyah.ops")
    assert filed.returncode == 0, filed.stderr
    entry = wait_until("the entry listed", lambda: desk.entry(f"phone:{number}"), lambda e: e is not None)
    assert entry.history[0].filed_by == "cli:aisyah.ops"


def feedback(command_id: str, entries: list[str]) -> dict[str, Any]:
    """A feedback record as ``POST /v1/feedback`` writes it (blocklist/review.py ``feedback_record``)."""
    now = iso(datetime.now(timezone.utc))
    return {"command_id": command_id, "institution": "CELCOM", "outcome": "false_positive", "note": "", "case_ref": "",
            "reason_code": "", "action": "BLOCK_NUMBER", "issued_at": now, "received_at": now, "entries": entries,
            "via": "api", "by": "CELCOM"}


def test_an_erasure_while_events_flow(desk: Desk) -> None:
    """Erasing one number while calls keep coming: the worker keeps deciding, and the number is gone from the
    index, the replica, its rule state, its appeal and institutions' feedback on it and (tombstoned) the
    topics; only an audit stub without it remains."""
    number, listed, partner = mobile(), mobile(), mobile()
    digits = number.lstrip("+")
    now = datetime.now(timezone.utc)
    desk.report(number, "confirmed", now - timedelta(days=2), links=[{"kind": "phone", "value": partner}])
    desk.report(listed, "confirmed", now)
    wait_until("both listed", lambda: (desk.entry(f"phone:{number}"), desk.entry(f"phone:{listed}")),
               lambda pair: None not in pair)
    linked_to(desk, f"phone:{number}", [partner])
    desk.worker.wait_replica()
    blocked = desk.call(number)  # the telco acts on it: rule state and a release to send once it is revoked
    desk.out.wait_for(lambda r: r.topic == desk.settings.topic_block and r.json["event_id"] == blocked)
    trip_and_rearm(desk, f"phone:{number}")
    email = f"{unique('appellant-')}@mail.example.my"
    filed = desk.http.post("/v1/appeals", json={
        "kind": "phone", "value": number, "appellant": "person", "contact": {"name": "Tan Mei Ling", "email": email},
        "grounds": "my own line, never used for calls like these", "evidence_ref": "CELCOM letter 2026/12/88"})
    assert filed.status_code == 202, filed.text
    appeal_id = filed.json()["appeal_id"]
    alone, shared = unique("cmd-"), unique("cmd-")
    desk.producer.send(desk.settings.topic_feedback, feedback(alone, [f"phone:{number}"]), key=alone.encode())
    desk.producer.send(desk.settings.topic_feedback, feedback(shared, [f"phone:{number}", f"phone:{listed}"]),
                       key=shared.encode())

    def call(i: int) -> dict[str, Any]:
        return {"event_id": f"erase-{i}-{unique('')}", "occurred_at": iso(datetime.now(timezone.utc)),
                "call_id": unique("call-"), "operator": "CELCOM", "caller": listed if i % 2 else mobile(),
                "callee": "+60123456780"}
    traffic = Traffic(desk.settings, desk.settings.topic_calls, call, rate=50.0,
                      key=lambda e: e["caller"].encode()).start()
    try:
        listed_still = sekat(desk.env, "privacy", "erase", "--phone", number, "--reason", "PDPA request DPO/7")
        assert listed_still.returncode == 1 and "revoke it first" in listed_still.stderr
        desk.report(number, "revoked", datetime.now(timezone.utc), reason="cleared on appeal")
        wait_until("the entry revoked", lambda: desk.entry(f"phone:{number}"),
                   lambda e: e is not None and e.status.value == "revoked")
        # Refused until the release sweep has sent the telco its UNBLOCK_NUMBER; then it erases.
        erased = wait_until("the erasure accepted", lambda: sekat(desk.env, "privacy", "erase", "--phone", number,
                                                                 "--reason", "PDPA request DPO/7"),
                            lambda done: done.returncode == 0, timeout=60, every=1)
        assert "audit stub" in erased.stdout
        assert desk.entry(f"phone:{number}") is None
        after = desk.call(listed)  # the worker keeps deciding: the listed number's next call is blocked
        desk.out.wait_for(lambda r: r.topic == desk.settings.topic_block and r.json["event_id"] == after,
                          timeout=30)
    finally:
        sent = traffic.stop()
    assert desk.worker.alive() and len(sent) > 10

    [stub] = desk.out.wait_for(lambda r: r.topic == desk.settings.topic_audit and r.json["action"] == "erase"
                               and r.json["subject"] == desk.subject(f"phone:{number}"))
    assert stub.json["by"] == "cli:test-operator" and digits not in orjson.dumps(stub.json).decode()
    desk.worker.wait_replica()
    # The change stream is trimmed once every replica has read past it. A stored replica snapshot of an earlier
    # generation, written while the entry was listed, keeps it until its chunks expire minutes after the workers
    # stored a fresh one (docs/privacy.md): the purge tests before this one make the workers store snapshots.
    wait_until("no trace of the identifier in Redis", lambda: desk.redis_traces(digits),
               lambda keys: [k for k in keys if ":replica:snapshot:" not in k] == [], timeout=90)
    assert desk.redis_traces(email) == []
    # The brake's trip of it is gone; its log keeps the events as stubs without it.
    tripped, log = brake_state(desk)
    assert f"entry:phone:{number}" not in tripped
    assert sorted(e["event"] for e in log if e.get("removed") == "erased") == ["rearm", "trip", "trip"]
    # The number it was linked to stays listed, and neither its entry nor its latest record names the erased one.
    linked = desk.entry(f"phone:{partner}")
    assert linked is not None and linked.status is Status.CONFIRMED and linked.links == ()
    assert digits not in (desk.latest(desk.settings.topic_reports)[f"phone:{partner}".encode()] or b"").decode()
    # The appeal and the feedback that named only it are tombstoned; feedback on a command that acted on
    # another entry too stays for that entry, without the erased one.
    assert desk.latest(desk.settings.topic_appeals)[appeal_id.encode()] is None
    kept = desk.latest(desk.settings.topic_feedback)
    assert kept[alone.encode()] is None
    assert orjson.loads(kept[shared.encode()] or b"null")["entries"] == [f"phone:{listed}"]


async def test_removals_a_replay_counted_afresh_are_not_taken_off_the_count_again(stack: Stack) -> None:
    store = BlocklistStore.from_url(stack.redis.url, unique("rc") + ":")
    now = datetime.now(timezone.utc)
    try:
        await store.put_many([Entry("phone:+60140000001", Status.REVOKED, "NSRC", reported_at=iso(now)),
                              Entry("phone:+60140000002", Status.CONFIRMED, "PDRM")])
        assert await store.forget("phone:+60140000001", now) == (True, None)
        unsettled = await store.settle_forgotten(0)
        assert unsettled == 1 and await store.entry_count() == 2
        assert await store.count_entries() == 1  # a replay counts the index afresh before the purge's next run
        assert await store.settle_forgotten(unsettled) == 0
        assert await store.entry_count() == 1, "the removal the replay counted is not taken off again"
    finally:
        await store.close()
