"""Rebuild the Redis index from ``sekat.reports``: by hand (``sekat blocklist rebuild``) or on its own.

The replay: take the rebuild lock, delete the ``index:built`` marker (so
guarded writers and the local replicas know the index is incomplete), wipe the
index keys under the prefix if asked (announcing each on the change stream),
then replay every partition of the topic from its first offset to the end
offsets taken at the start, through the same decoder and the same
``BlocklistStore.apply`` the reports agent uses, count the entries of the index
(the entry count the replicas compare with, ``BlocklistStore.count_entries``)
and set the marker to a new build id. Because an entry is a function of the set of reports on its key, and
the agent keeps the last record of each key complete (consolidation), the
rebuilt index equals the one built live, before or after compaction; for the
same reason a replay *without* a wipe onto a partial index also converges.
Records the agent dead-lettered are skipped here too. Consolidations are not
re-published: the topic already holds them. A tombstone (the purge's or an
erasure's, streams/purge.py) removes its key's ended entry in its place, as the
agent does.

``IndexGuard`` is the automatic path, run by every worker (a one-second timer,
and before each batch of the reports agent): when Redis has come back empty
(no marker), one worker takes the lock and replays the topic without a wipe;
the others wait for the marker. It also replays (without a wipe) an index that
lost entries while marked built, when the replica reports one (``lost``: a hit
gone from the build it follows, or more entries held than the index counts). Kafka reads run in a thread so that the
worker's event loop keeps deciding meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timezone

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from sekat.blocklist.store import BlocklistStore
from sekat.decode.reports import decode_report

from sekat.errors import BlocklistUnavailable
from sekat.records import Rejection, Report
from sekat.settings import Settings

log = logging.getLogger(__name__)
BATCH = 2000
LOCK_TTL_MS = 30_000
LOCK_WAIT_S = 0.5


class RebuildBusy(BlocklistUnavailable):
    """Another process holds the rebuild lock."""


@dataclass
class RebuildResult:
    wiped: int = 0
    records: int = 0
    invalid: int = 0
    entries: int = 0
    counted: int = 0  # entries of the index once replayed
    build_id: str = ""
    seconds: float = 0.0


async def rebuild(settings: Settings, store: BlocklistStore, protected: Collection[str] = (), wipe: bool = True,
                  lock_wait_s: float = 60.0) -> RebuildResult:
    """Replay the topic into the index under the rebuild lock; raises ``RebuildBusy`` if it stays taken."""
    token = uuid.uuid4().hex
    deadline = time.monotonic() + lock_wait_s
    while not await store.take_rebuild_lock(token, LOCK_TTL_MS):
        if time.monotonic() > deadline:
            raise RebuildBusy(f"another rebuild holds the lock on {store.prefix}index:rebuilding")
        await asyncio.sleep(LOCK_WAIT_S)
    try:
        return await _replay(settings, store, protected, wipe, token)
    finally:
        try:
            await store.release_rebuild_lock(token)
        except Exception as exc:  # noqa: BLE001 - the lock expires on its own
            log.warning("releasing the rebuild lock failed (%s); it expires in %d s", exc, LOCK_TTL_MS // 1000)


async def _replay(settings: Settings, store: BlocklistStore, protected: Collection[str], wipe: bool,
                  token: str) -> RebuildResult:
    started = time.monotonic()
    result = RebuildResult()
    links: _LinkPublisher | None = None
    consumer = await asyncio.to_thread(
        KafkaConsumer, **settings.kafka_client_config(), group_id=None,  # type: ignore[arg-type]
        enable_auto_commit=False, max_poll_records=BATCH)
    try:
        partitions = await asyncio.to_thread(consumer.partitions_for_topic, settings.topic_reports) or set()
        tps = [TopicPartition(settings.topic_reports, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = await asyncio.to_thread(consumer.end_offsets, tps)
        links = _LinkPublisher(settings)
        await store.mark_built(None)
        if wipe:
            result.wiped = await store.wipe()
        remaining = {tp for tp in tps if ends[tp] > await asyncio.to_thread(consumer.position, tp)}
        keys: set[str] = set()
        while remaining:
            polled = await asyncio.to_thread(consumer.poll, timeout_ms=1000, max_records=BATCH)
            batch: list[Report] = []
            for tp, messages in polled.items():
                for msg in messages:
                    if msg.offset >= ends[tp]:
                        continue
                    result.records += 1
                    if msg.value is None and msg.key:  # a tombstone (streams/purge.py), in its place
                        await store.apply(batch, publish=links.publish, rebuilding=True)
                        batch = []
                        await store.forget(msg.key.decode("utf-8", "replace"), datetime.now(timezone.utc),
                                           rebuilding=True)
                        continue
                    decoded = decode_report(msg.value, msg.key, max(settings.max_event_bytes, 1_048_576),
                                            settings.phone_region, protected)
                    if isinstance(decoded, Rejection):
                        result.invalid += 1
                    else:
                        batch.append(decoded)
                        keys.add(decoded.key)
            for tp in list(remaining):
                if consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
            await store.apply(batch, publish=links.publish, rebuilding=True)
            if not await store.extend_rebuild_lock(token, LOCK_TTL_MS):
                raise RebuildBusy("the rebuild lock expired during the replay; another process took over")
        result.entries = len(keys)
        result.counted = await store.count_entries()
        result.build_id = f"{datetime.now(timezone.utc).isoformat(timespec='milliseconds')}/{token[:12]}"
        await store.mark_built(result.build_id)
        result.seconds = time.monotonic() - started
        return result
    finally:
        await asyncio.to_thread(consumer.close)
        if links is not None:
            await asyncio.to_thread(links.close)


class _LinkPublisher:
    """Publishes the reports a replay derives for linked identifiers (``blocklist.links``).

    A report that reached the topic while the index was not built (Redis empty or restarted) is applied
    only by the replay: without this, its linked identifiers would never get their derived reports (the
    reports agent, applying it later, finds the entry already holding it and derives nothing). Derived
    ids are deterministic, so re-publishing ones already on the topic changes no entry.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer: KafkaProducer | None = None

    async def publish(self, reports: list[Report]) -> None:
        derived = [r for r in reports if r.origin]
        if derived:
            await asyncio.to_thread(self._send, derived)

    def _send(self, reports: list[Report]) -> None:
        if self.producer is None:
            self.producer = KafkaProducer(**self.settings.kafka_client_config(), acks="all")  # type: ignore[arg-type]
        for report in reports:
            self.producer.send(self.settings.topic_reports, key=report.key.encode(),
                               value=orjson.dumps(report.to_json()))
        self.producer.flush()

    def close(self) -> None:
        if self.producer is not None:
            self.producer.close()


class IndexGuard:
    """Keeps the index built: if the marker is gone, rebuild from the topic (one worker) or wait for it."""

    def __init__(self, settings: Settings, store: BlocklistStore, protected: Collection[str],
                 on_replay: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.store = store
        self.protected = protected
        self.rebuilds = 0
        self._busy = asyncio.Lock()
        self._lost: tuple[str | None, str] | None = None  # (key or None, build id): the index lost entries
        self.on_replay = on_replay  # on_replay(cause) after each replay it made (the metric)

    def lost(self, key: str | None, build: str) -> None:
        """The replica found ``key`` gone from build ``build`` while it is still marked built, or (``key`` None)
        holds more entries than the index counts: replay at the next ``ensure`` (the one-second timer)."""
        self._lost = (key, build)

    async def ensure(self) -> None:
        """Return once the index is marked built, and replayed if it lost an entry. Raises
        ``BlocklistUnavailable`` while Redis is down."""
        async with self._busy:
            if self._lost is not None:
                key, build = self._lost
                self._lost = None  # a failed replay is asked for again by the next lookup that finds it gone
                await self._replay_lost(key, build)
            while await self.store.build_id() is None:
                try:
                    result = await rebuild(self.settings, self.store, self.protected, wipe=False, lock_wait_s=0)
                except RebuildBusy:
                    await asyncio.sleep(LOCK_WAIT_S)  # another worker is replaying: wait for its marker
                    continue
                self._replayed("not_built")
                log.warning("blocklist index was not built (Redis empty or restarted): rebuilt from %s, "
                            "%d records into %d entries in %.1fs", self.settings.topic_reports, result.records,
                            result.entries, result.seconds)

    def _replayed(self, cause: str) -> None:
        self.rebuilds += 1
        if self.on_replay is not None:
            self.on_replay(cause)

    async def _replay_lost(self, key: str | None, build: str) -> None:
        """Replay the topic into an index that lost ``key`` (None: entries the index does not count), unless it
        was rebuilt or the key is back since."""
        if await self.store.build_id() != build or (key is not None and await self.store.get(key) is not None):
            return
        try:
            result = await rebuild(self.settings, self.store, self.protected, wipe=False, lock_wait_s=0)
        except RebuildBusy:
            return  # another worker is replaying: ``ensure`` waits for its marker
        self._replayed("lost_entry" if key is not None else "lost_count")
        log.warning("blocklist index lost entries while marked built (%s; a failover that dropped writes?): "
                    "rebuilt from %s, %d records into %d entries (%d in the index) in %.1fs",
                    "a hit gone" if key is not None else "fewer counted than a replica holds",
                    self.settings.topic_reports, result.records, result.entries, result.counted, result.seconds)
