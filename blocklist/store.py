"""The Redis serving index of the blocklist.

Data model (every key under the configured prefix, default ``sekat:``):

    {prefix}bl:{kind}:{value}   string: the entry as JSON (sekat.records.Entry)
    {prefix}bl:changes          stream: one record per write, field ``keys`` (the keys it changed,
                                one a line) and, from ``apply`` on one server, ``states``
                                (each key's status and expiry, one a line); local replicas
                                follow it to stay fresh (``changed_keys``)
    {prefix}index:built         string: the id of the build that filled the index
                                (``streams/rebuild.py``); absent = the index is empty
                                or being rebuilt, so an absent entry proves nothing
    {prefix}index:rebuilding    string: lock held (with an expiry) by the one process
                                replaying ``sekat.reports`` into the index
    {prefix}index:entries       integer: how many entries the writers have added (a key absent
                                before, written now); a replay sets it to the entries it counts
    {prefix}acted:due           sorted set of entries institutions acted on (``sekat.release.acted``; one per
                                hash-tagged group on a cluster): a revoked entry is marked due when written

Redis is a cache of the topic and keeps no data on disk: if it restarts, it
comes back empty and without the ``index:built`` marker. Workers notice and
rebuild it (``streams.rebuild.IndexGuard``); meanwhile a *guarded* store (the
worker's) refuses to apply reports (``IndexNotBuilt``, retried), so the replay
is the only writer, and the local replicas keep deciding on their own copy.

Revoked entries stay in the index with status ``revoked`` so their history is
kept and a lookup can tell "cleared on appeal" from "never listed", until their
retention ends (``blocklist.retention``):

    {prefix}retention:revoked   sorted set: revoked entry key -> when it was revoked (epoch seconds)
    {prefix}retention:expired   sorted set: expiring entry key -> when it expires
    {prefix}index:forgotten     integer: entries ``forget`` removed that the entry count still includes

Each write keeps an entry's mark (in the MULTI on one server, after the SETs on a cluster); the purge
(``streams.purge``) reads the keys ended before their retention and tombstones them on the topic, and
the reports agent ``forget``s each in its place among the key's reports.

The hot path calls ``lookup_many`` once per batch: one MGET, never one round
trip per event.

Every change to an entry goes through ``put``/``put_many``: the SET of the
entry, then the XADD of its key to the change stream. ``apply`` is the one
way reports reach the index (the reports agent and ``sekat blocklist
rebuild`` both call it): it merges them with ``blocklist.lifecycle.merge``,
and applies an unlink (``Report.unlinks``) with ``blocklist.lifecycle.unlinked``,
publishing the entry's consolidated record after it (changed or not), so that
the unlink, which names the identifier it removes, is not its key's last record.

Under Redis Cluster (``redis+cluster://``, see ``blocklist.connection``) the
entries spread over every shard by their own keys, so the hot path's reads
(the replica's evidence MGETs) spread too; the change stream is one key on
one shard, written once per change (reports, not events). An entry and the
stream are then in different slots, so no MULTI can hold both: the SETs go
first, the XADDs after them succeed, and a change is announced only once its
entry is written. The announcement is idempotent (it says "re-read this
key"), and ``apply`` announces every key it touched, changed or not: a batch
retried after a failure between the two steps (or re-consumed after a crash)
announces its keys again, so no replica misses a change. A revoked entry is
marked due for release (``sekat.release.acted``) last, once its entry is written,
so the sweep that picks it up reads it revoked; a retried batch marks its
revoked keys again, changed or not, so an attempt interrupted before the mark
still gets its releases sent. On one server the same commands run in one MULTI.

The entry count (``index:entries``) lets the local replicas notice entries lost from a built index
(``blocklist.replica``): a replica that holds more entries than the count, under the same build, reports
a loss. Only ``forget`` deletes from a built index, and it takes its removals off the count one purge
interval after it announced them (``settle_forgotten``), once the replicas dropped them: the count never
falls below what a replica that follows the stream holds. ``apply`` adds the keys its read
found absent and its write added, in the MULTI of the write (one server), or after the SETs and before
the announcements (cluster: the count is in another slot). A write that fails between the SETs and the
count leaves the count low; the retry finds the keys present and does not add them again, so the
replicas report a loss, and the replay that follows counts the index afresh. That false alarm costs one
replay without a wipe; the other order would leave the count high and hide a real loss. Counted before
announced, a replica that applies a change has already been counted for it.
A guarded store WATCHes the ``index:built`` marker while it reads and writes
(one server), so a rebuild that starts in between (it deletes the marker first)
aborts the write instead of racing the replay; on a cluster the marker is
checked before the write.

Two writers of one entry: ``apply`` WATCHes the entries it read (one server)
or sets each only if it still holds the bytes it read (a compare-and-set
script, cluster), and merges the batch again from the entries as they are when
another writer got there first. Two workers do apply the same identifier's
reports at once when the old owner of its partition was frozen past its Kafka
session (a GC pause, a stopped VM) with a batch read but not written: without
this its write, on waking, would replace the filings the new owner applied since.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from datetime import datetime
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import WatchError

from sekat.blocklist.connection import REDIS_DOWN, INDEX_TIMEOUT_MS, PROBE_TIMEOUT_S, AnyRedis, async_client, mget, scan_keys
from sekat.blocklist.feedback import feedback_keys
from sekat.blocklist.lifecycle import consolidated, covers, known, known_reports, merge, unlinked
from sekat.blocklist.links import propagate, unlinks
from sekat.blocklist.retention import EXPIRED, REVOKED, ending
from sekat.errors import BlocklistUnavailable, IndexNotBuilt
from sekat.records import Entry, Report, Status
from sekat.release.acted import ActedKeys

log = logging.getLogger(__name__)
# About how many changed keys the change stream keeps: an XADD trims to this many over its own record's key count,
# so a batch's records (hundreds of keys each) leave room for as many keys as single-key records do.
CHANGES_MAXLEN = 1_000_000
# Attempts of one write that another writer of the same entries keeps overtaking (see ``_apply_watched``); then
# the caller's retry takes over, with its backoff.
WRITE_RACES = 10
# Compare-and-act on the rebuild lock: only its holder (same token) may extend or release it.
_EXTEND = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
# Set an entry only if it still holds what was read (ARGV[1]: the SHA-1 of those bytes, "" for none).
# Delete an entry only if it still holds what was read (ARGV[1]: the SHA-1 of those bytes).
_CAS_DEL = ("local cur = redis.call('get', KEYS[1]) "
            "if (cur and redis.sha1hex(cur) or '') ~= ARGV[1] then return 0 end "
            "redis.call('del', KEYS[1]) return 1")
_CAS = ("local cur = redis.call('get', KEYS[1]) "
        "if (cur and redis.sha1hex(cur) or '') ~= ARGV[1] then return 0 end "
        "redis.call('set', KEYS[1], ARGV[2]) return 1")


def built_key(prefix: str) -> str:
    """The marker that says the index holds every report on the topic (see the module docstring)."""
    return f"{prefix}index:built"


def retention_key(prefix: str, ended: str) -> str:
    """The sorted set of entries that ended (or will end) ``revoked`` / ``expired``, by when (module docstring)."""
    return f"{prefix}retention:{ended}"


def forgotten_key(prefix: str) -> str:
    """Entries removed by ``forget`` whose removal the entry count does not yet reflect (``settle_forgotten``)."""
    return f"{prefix}index:forgotten"


def entries_key(prefix: str) -> str:
    """The count of entries the writers have added to the index (see the module docstring)."""
    return f"{prefix}index:entries"


class BlocklistStore:
    def __init__(self, client: AnyRedis, prefix: str = "sekat:", guarded: bool = False) -> None:
        self._redis = client
        self._cluster = isinstance(client, aioredis.RedisCluster)
        self._prefix = prefix
        self._changes = f"{prefix}bl:changes"
        self._built = built_key(prefix)
        self._entries = entries_key(prefix)
        self._lock = f"{prefix}index:rebuilding"
        self._acted = ActedKeys(prefix, self._cluster)
        self._retention = {ended: retention_key(prefix, ended) for ended in (REVOKED, EXPIRED)}
        self._forgotten = forgotten_key(prefix)
        self.guarded = guarded

    @classmethod
    def from_url(cls, url: str, prefix: str = "sekat:", guarded: bool = False,
                 timeout_ms: int = INDEX_TIMEOUT_MS) -> "BlocklistStore":
        # No connection is made here: redis-py connects on first command. Not on the screening path (the
        # replica is): the default timeout leaves room for a batch of reports or an import's pipeline.
        client = async_client(url, timeout_ms)
        return cls(client, prefix, guarded)

    @property
    def client(self) -> AnyRedis:
        return self._redis

    @property
    def prefix(self) -> str:
        return self._prefix

    def _rkey(self, key: str) -> str:
        return f"{self._prefix}bl:{key}"

    async def lookup_many(self, keys: Iterable[str]) -> dict[str, Entry]:
        """Entries for those of ``keys`` that are in the index (any status), in one MGET."""
        unique: Sequence[str] = list(dict.fromkeys(keys))
        if not unique:
            return {}
        try:
            raw = await mget(self._redis, [self._rkey(k) for k in unique])
        except REDIS_DOWN as exc:
            raise BlocklistUnavailable(f"blocklist lookup failed: {type(exc).__name__}") from exc
        return {k: Entry.from_json(orjson.loads(v)) for k, v in zip(unique, raw) if v is not None}

    async def present(self, keys: Iterable[str], chunk: int = 1000) -> set[str]:
        """Those of ``keys`` that are in the index: one EXISTS each, pipelined ``chunk`` at a time (nothing is read
        or decoded, however large the entries)."""
        unique = list(dict.fromkeys(keys))
        found: set[str] = set()
        try:
            for i in range(0, len(unique), chunk):
                part = unique[i:i + chunk]
                async with self._redis.pipeline(transaction=False) as pipe:
                    for key in part:
                        pipe.exists(self._rkey(key))
                    found.update(k for k, n in zip(part, await pipe.execute()) if n)
        except REDIS_DOWN as exc:
            raise BlocklistUnavailable(f"blocklist lookup failed: {type(exc).__name__}") from exc
        return found

    async def unlinks(self, gone: Mapping[str, Entry], at: datetime, filed_by: str, reason: str) -> list[Report]:
        """The unlinks (``blocklist.links.unlinks``) that take the entries ``gone`` out of the entries their links
        name, for those of them still in the index."""
        records = unlinks(gone, at, filed_by, reason)
        present = await self.present(r.key for r in records) if records else set()
        return [r for r in records if r.key in present]

    async def get(self, key: str) -> Entry | None:
        return (await self.lookup_many([key])).get(key)

    async def put(self, entry: Entry) -> None:
        """Write one entry and announce the change, atomically."""
        await self.put_many([entry])

    async def put_many(self, entries: Sequence[Entry], announce: Iterable[str] = (),
                       revoked: Iterable[str] = (), added: int | None = None) -> None:
        """Write entries and announce each change (and the keys in ``announce``).

        A revoked entry is marked due for release, and so are the keys in ``revoked`` (revoked entries a retry
        finds already written). ``added`` entries were absent before (the entry count grows by it); None: read
        first which are. One server: one MULTI (one round trip). Redis Cluster: the SETs (spread over the
        shards), then the count and the XADDs once the SETs succeeded, then the marks (up to three round
        trips); see the module docstring.
        """
        keys = list(dict.fromkeys([*(e.key for e in entries), *announce]))
        if not keys:
            return
        try:
            if added is None:
                added = sum(v is None for v in await mget(self._redis, [self._rkey(e.key) for e in entries])) \
                    if entries else 0
            if self._cluster:
                if entries:
                    async with self._redis.pipeline(transaction=False) as pipe:
                        for entry in entries:
                            pipe.set(self._rkey(entry.key), orjson.dumps(entry.to_json()))
                        await pipe.execute()
                    await self._mark_retention(entries)
                if added:
                    await self._redis.incrby(self._entries, added)
                await self._announce(keys)
                due = _due_now(entries, revoked)
                if due:  # whoever acted on it gets a release at the next sweep
                    async with self._redis.pipeline(transaction=False) as pipe:
                        self._acted.queue_due_now(pipe, due)
                        await pipe.execute()
                return
            async with self._redis.pipeline(transaction=True) as pipe:
                self._queue_puts(pipe, entries, keys, revoked, added)
                await pipe.execute()
        except REDIS_DOWN as exc:
            raise BlocklistUnavailable(f"blocklist write failed: {type(exc).__name__}") from exc

    def _queue_puts(self, pipe: Any, entries: Sequence[Entry], announce: Sequence[str],
                    revoked: Iterable[str] = (), added: int = 0,
                    states: dict[str, Entry | None] | None = None) -> None:
        """The writes of one MULTI; ``states``, when it holds every announced key, goes into the announcement."""
        if entries:  # one MSET: in a MULTI each command's reply is parsed on its own
            pipe.mset({self._rkey(entry.key): orjson.dumps(entry.to_json()) for entry in entries})
        self._queue_retention(pipe, entries)
        if added:
            pipe.incrby(self._entries, added)
        if announce:
            self._queue_announce(pipe, announce, states)
        due = _due_now(entries, revoked)
        if due:  # whoever acted on it gets a release at the next sweep
            self._acted.queue_due_now(pipe, due)

    def _queue_retention(self, pipe: Any, entries: Sequence[Entry]) -> None:
        """Keep each entry in the retention set of how it ends, by when (``blocklist.retention``), and out of
        the other; an entry listed without an expiry in neither. One ZADD and one ZREM per set for the lot."""
        marks: dict[str, dict[str, float]] = {how: {} for how in self._retention}
        for entry in entries:
            ended = ending(entry)
            if ended is not None:
                marks[ended[0]][entry.key] = ended[1]
        for how, rkey in self._retention.items():
            if marks[how]:
                pipe.zadd(rkey, marks[how])
            others = [entry.key for entry in entries if entry.key not in marks[how]]
            if others:
                pipe.zrem(rkey, *others)

    async def _mark_retention(self, entries: Sequence[Entry]) -> None:
        """``_queue_retention`` on its own (cluster path: the sets are in other slots than the entries)."""
        if entries:
            async with self._redis.pipeline(transaction=False) as pipe:
                self._queue_retention(pipe, entries)
                await pipe.execute()

    async def remark(self, entries: Sequence[Entry]) -> None:
        """Write the retention marks of ``entries`` again from the entries as they are."""
        try:
            await self._mark_retention(entries)
        except REDIS_DOWN as exc:
            raise BlocklistUnavailable(f"retention mark failed: {type(exc).__name__}") from exc

    async def _announce(self, keys: Sequence[str]) -> None:
        """XADD each key to the change stream (cluster path): one key, so one node, in order, one round trip.

        Not a MULTI: redis-py's cluster MULTI queues each command by starting a thread that runs its own event
        loop while the worker's waits (~1 ms a command, so a batch of a few hundred keys stalls the loop).
        Nothing needs the XADDs atomic: each says "re-read this key", and a batch that fails part-way is
        retried and announces all its keys again.
        """
        async with self._redis.pipeline(transaction=False) as pipe:
            self._queue_announce(pipe, keys)
            await pipe.execute()

    def _queue_announce(self, pipe: Any, keys: Sequence[str], states: dict[str, Entry | None] | None = None) -> None:
        """One change-stream record for ``keys`` (see ``changed_keys``), trimming the stream to about
        CHANGES_MAXLEN keys. With ``states`` (one server: written in the same MULTI as the entries, so the
        stream's order is the order of the writes) each key's status and expiry go with it, and a replica
        applies the record without reading the entries."""
        fields = {"keys": "\n".join(keys)}
        if states is not None and all(states.get(k) is not None for k in keys):
            fields["states"] = "\n".join(_state_line(states[k]) for k in keys)  # type: ignore[arg-type]
        pipe.xadd(self._changes, fields, maxlen=max(1, CHANGES_MAXLEN // len(keys)), approximate=True)

    async def apply(self, reports: Sequence[Report],
                    publish: Callable[[list[Report]], Awaitable[None]] | None = None, *,
                    rebuilding: bool = False) -> tuple[list[Entry], list[Report]]:
        """Merge ``reports`` (in order) into the index: one MGET, one MULTI.

        Returns the entries that changed, and the reports to publish: the
        consolidated ones for keys whose incoming record does not carry their
        whole history (so the record compaction keeps still rebuilds the
        entry), and the ones derived for linked identifiers (``blocklist.links``).
        A guarded store raises ``IndexNotBuilt`` while the index is not marked
        built, unless this is the rebuild itself (``rebuilding``).

        ``publish``, if given, is awaited with those reports *before* the index
        is written: derived reports exist only because an entry changed, so if
        the process died after the write and before they were on the topic, the
        re-delivered batch would change nothing and derive nothing. Published
        first, a crash re-derives the same report ids instead.
        """
        if not reports:
            return [], []
        keys = list(dict.fromkeys(r.key for r in reports))
        guard = self.guarded and not rebuilding
        if self._cluster:
            # No WATCH across slots: the marker is checked first (a rebuild starting in between replays
            # these reports from the topic anyway), then each entry is set only if it is still as read
            # (``_CAS``), then announced (the two steps of put_many).
            if guard and await self.build_id() is None:
                raise IndexNotBuilt("blocklist index is not built: waiting for the rebuild from the topic")
            written_now: dict[str, Entry] = {}
            added = 0
            for _ in range(WRITE_RACES):
                raw = await mget(self._redis, [self._rkey(k) for k in keys])
                current, _, changed, pending = await self._merged(keys, raw, reports, publish)
                read = dict(zip(keys, raw))
                raced = await self._set_if_unchanged(changed, read)
                written_now.update((e.key, e) for e in changed if e.key not in raced)
                added += sum(1 for e in changed if e.key not in raced and read[e.key] is None)
                if not raced:
                    break
                log.warning("blocklist entries changed by another writer between read and write (two owners of a "
                            "reports partition during a rebalance?): merging the batch again")
            else:
                raise BlocklistUnavailable(f"blocklist write lost {WRITE_RACES} races in a row to other writers")
            changed = list(written_now.values())
            await self._mark_retention(changed)
            # Unchanged keys are announced too: a retried or re-consumed batch re-announces what an earlier,
            # interrupted attempt may have written without announcing (two steps on a cluster), and marks its
            # revoked entries due again in case that attempt stopped before the mark.
            written = {k: e for k, e in current.items() if e is not None}
            await self.put_many([], announce=list(written),
                                revoked=[k for k, e in written.items() if e.status is Status.REVOKED], added=added)
        else:
            for _ in range(WRITE_RACES):
                done = await self._apply_watched(keys, reports, guard, publish)
                if done is not None:
                    return done
                log.warning("blocklist entries changed by another writer between read and write (two owners of a "
                            "reports partition during a rebalance?): merging the batch again")
            raise BlocklistUnavailable(f"blocklist write lost {WRITE_RACES} races in a row to other writers")
        return changed, pending

    async def _set_if_unchanged(self, entries: Sequence[Entry], read: dict[str, bytes | None]) -> set[str]:
        """Set each entry only if its key still holds what was read (cluster path); the keys that did not."""
        if not entries:
            return set()
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for entry in entries:
                    was = read.get(entry.key)
                    pipe.eval(_CAS, 1, self._rkey(entry.key), hashlib.sha1(was).hexdigest() if was else "",
                              orjson.dumps(entry.to_json()))
                done = await pipe.execute()
        except REDIS_DOWN as exc:
            raise BlocklistUnavailable(f"blocklist write failed: {type(exc).__name__}") from exc
        return {e.key for e, ok in zip(entries, done) if not ok}

    async def _apply_watched(self, keys: list[str], reports: Sequence[Report], guard: bool,
                             publish: Callable[[list[Report]], Awaitable[None]] | None
                             ) -> tuple[list[Entry], list[Report]] | None:
        """One attempt of ``apply`` on one server: WATCH the entries (and the marker, guarded), read, merge, MULTI.

        None when another writer changed one of the entries since the read: the write is dropped, not applied
        over what that writer wrote, and the caller merges again from the entries as they are now.
        """
        entry_keys = [self._rkey(k) for k in keys]
        watched = [self._built, *entry_keys] if guard else entry_keys
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                await pipe.watch(*watched)  # immediate mode until multi()
                raw = await pipe.mget(watched)
                if guard:
                    if raw[0] is None:
                        raise IndexNotBuilt("blocklist index is not built: waiting for the rebuild from the topic")
                    raw = raw[1:]
                current, start, changed, pending = await self._merged(keys, raw, reports, publish)
                pipe.multi()
                self._queue_puts(pipe, changed, [k for k, e in current.items() if e is not None],
                                 added=sum(1 for e in changed if start.get(e.key) is None), states=current)
                try:
                    await pipe.execute()
                except WatchError:
                    if guard and await self.build_id() is None:
                        raise IndexNotBuilt("blocklist index rebuild started during the write; retrying") from None
                    return None
        except REDIS_DOWN as exc:
            raise BlocklistUnavailable(f"blocklist write failed: {type(exc).__name__}") from exc
        return changed, pending

    async def _merged(self, keys: Sequence[str], raw: Sequence[bytes | None], reports: Sequence[Report],
                      publish: Callable[[list[Report]], Awaitable[None]] | None
                      ) -> tuple[dict[str, Entry | None], dict[str, Entry | None], list[Entry], list[Report]]:
        """``reports`` merged into the entries read (``raw``, per key), the reports to publish published first:
        (current entries, entries as read, the changed ones, the published reports)."""
        current: dict[str, Entry | None] = {k: Entry.from_json(orjson.loads(v))
                                            for k, v in zip(keys, raw) if v is not None}
        start = dict(current)
        changed, last = self._merge(current, reports)
        pending = self._pending(start, current, changed, last)
        if publish is not None and pending:
            await publish(pending)
        return current, start, changed, pending

    @staticmethod
    def _pending(start: dict[str, Entry | None], current: dict[str, Entry | None], changed: list[Entry],
                 last: dict[str, Report | None]) -> list[Report]:
        """Consolidated records (always after an unlink, ``last`` None: its entry's own latest report carrying the
        entry), then the reports derived for linked identifiers."""
        pending = [consolidated(r if r is not None else known_reports(e)[-1], e) for k, r in last.items()
                   if (e := current[k]) is not None and (r is None or not covers(r, e))]
        return pending + [derived for e in changed for derived in propagate(start.get(e.key), e)]

    @staticmethod
    def _merge(current: dict[str, Entry | None], reports: Sequence[Report]
               ) -> tuple[list[Entry], dict[str, Report | None]]:
        """Merge ``reports`` into ``current`` in place; the entries that changed, and each key's last report (None
        when it was an unlink)."""
        before = dict(current)
        last: dict[str, Report | None] = {}
        for report in reports:
            entry = current.get(report.key)
            if report.unlinks:
                if entry is not None:
                    current[report.key] = unlinked(entry, report.unlinks)
                    last[report.key] = None
                continue
            if entry is None or not known(report, entry):
                current[report.key] = merge(entry, report)
            last[report.key] = report
        return [e for k, e in current.items() if e is not None and e != before.get(k)], last

    # -- retention: the purge's due entries, and removing an ended entry (blocklist/retention.py) ------------
    async def retention_due(self, ended: str, before: float, limit: int) -> list[str]:
        """Keys of up to ``limit`` entries that ended ``ended`` (revoked / expired) before ``before``."""
        try:
            raw = await self._redis.zrangebyscore(self._retention[ended], "-inf", before, start=0, num=limit)
        except REDIS_DOWN as exc:
            raise BlocklistUnavailable(f"retention read failed: {type(exc).__name__}") from exc
        return [k.decode() if isinstance(k, bytes) else k for k in raw]

    async def forget(self, key: str, now: datetime, *, rebuilding: bool = False) -> tuple[bool, Entry | None]:
        """Remove ``key``'s entry unless it is active at ``now``: (removed, the entry kept when it is active).

        The entry goes with its retention marks and is announced on the change stream (every replica drops
        it); the entry count takes it off one purge interval later (``settle_forgotten``). An entry another
        writer changes between the read and the delete is read again. Guarded as ``apply`` is.
        """
        rkey = self._rkey(key)
        guard = self.guarded and not rebuilding
        try:
            for _ in range(WRITE_RACES):
                if self._cluster:
                    if guard and await self.build_id() is None:
                        raise IndexNotBuilt("blocklist index is not built: waiting for the rebuild from the topic")
                    raw = await self._redis.get(rkey)
                    entry = Entry.from_json(orjson.loads(raw)) if raw is not None else None
                    if entry is not None and entry.active_at(now):
                        return False, entry
                    if raw is not None and not await self._redis.eval(_CAS_DEL, 1, rkey,
                                                                      hashlib.sha1(raw).hexdigest()):
                        continue
                    async with self._redis.pipeline(transaction=False) as pipe:
                        self._queue_forget(pipe, key, raw is not None)
                        await pipe.execute()
                    await self._announce([key])
                    return raw is not None, None
                async with self._redis.pipeline(transaction=True) as pipe:
                    await pipe.watch(*([self._built, rkey] if guard else [rkey]))
                    built, raw = await pipe.mget([self._built, rkey])
                    if guard and built is None:
                        raise IndexNotBuilt("blocklist index is not built: waiting for the rebuild from the topic")
                    entry = Entry.from_json(orjson.loads(raw)) if raw is not None else None
                    if entry is not None and entry.active_at(now):
                        await pipe.unwatch()
                        return False, entry
                    pipe.multi()
                    pipe.delete(rkey)
                    self._queue_forget(pipe, key, raw is not None)
                    pipe.xadd(self._changes, {"key": key}, maxlen=CHANGES_MAXLEN, approximate=True)
                    try:
                        await pipe.execute()
                    except WatchError:
                        continue
                    return raw is not None, None
        except REDIS_DOWN as exc:
            raise BlocklistUnavailable(f"blocklist purge failed: {type(exc).__name__}") from exc
        raise BlocklistUnavailable(f"blocklist purge lost {WRITE_RACES} races in a row to other writers")

    def _queue_forget(self, pipe: Any, key: str, existed: bool) -> None:
        for rkey in self._retention.values():
            pipe.zrem(rkey, key)
        # Institutions' feedback on the entry's commands and its flags name the identifier: they go with it
        # (blocklist.feedback; one key a command, so it runs on a cluster as it is).
        for fkey in feedback_keys(self._prefix, key):
            pipe.delete(fkey)
        if existed:
            pipe.incr(self._forgotten)

    async def settle_forgotten(self, previous: int) -> int:
        """Take ``previous`` removals off the entry count; the removals not yet taken off.

        The purge calls it every interval with what the last call returned, so a removal leaves the count
        at least one interval after it was announced: by then every replica following the change stream has
        dropped the entry, and none holds more entries than the count (which would read as a lost entry).
        """
        try:
            if previous:
                left = int(await self._redis.decrby(self._forgotten, previous))
                if left < 0:  # a replay counted the index afresh meanwhile (``count_entries``): nothing to take off
                    await self._redis.incrby(self._forgotten, -left)
                else:
                    await self._redis.decrby(self._entries, previous)
            return max(0, int(await self._redis.get(self._forgotten) or 0))
        except REDIS_DOWN as exc:
            raise BlocklistUnavailable(f"blocklist count settle failed: {type(exc).__name__}") from exc

    async def last_change(self) -> tuple[int, int] | None:
        """The id of the change stream's newest record as (ms, seq), or None when the stream is empty."""
        try:
            last = await self._redis.xrevrange(self._changes, count=1)
        except REDIS_DOWN as exc:
            raise BlocklistUnavailable(f"change stream read failed: {type(exc).__name__}") from exc
        if not last:
            return None
        raw = last[0][0]
        ms, _, seq = (raw.decode() if isinstance(raw, bytes) else str(raw)).partition("-")
        return int(ms), int(seq or 0)

    async def trim_changes(self, before: tuple[int, int]) -> int:
        """Drop the change-stream records before id ``before`` (every replica has read them); how many."""
        try:
            return int(await self._redis.xtrim(self._changes, minid=f"{before[0]}-{before[1]}", approximate=False))
        except REDIS_DOWN as exc:
            raise BlocklistUnavailable(f"change stream trim failed: {type(exc).__name__}") from exc

    # -- the index:built marker and the rebuild lock (streams/rebuild.py) -------------------------------
    async def build_id(self) -> str | None:
        """The id of the build that filled the index, or None when it is not (or no longer) built."""
        try:
            raw = await self._redis.get(self._built)
        except REDIS_DOWN as exc:
            raise BlocklistUnavailable(f"blocklist marker read failed: {type(exc).__name__}") from exc
        return raw.decode() if raw is not None else None

    async def mark_built(self, build_id: str | None) -> None:
        """Set the marker (``build_id``) or delete it (None: the index is being rebuilt)."""
        if build_id is None:
            await self._redis.delete(self._built)
        else:
            await self._redis.set(self._built, build_id)

    async def take_rebuild_lock(self, token: str, ttl_ms: int) -> bool:
        return bool(await self._redis.set(self._lock, token, nx=True, px=ttl_ms))

    async def extend_rebuild_lock(self, token: str, ttl_ms: int) -> bool:
        return bool(await self._redis.eval(_EXTEND, 1, self._lock, token, ttl_ms))  # type: ignore[misc]

    async def release_rebuild_lock(self, token: str) -> None:
        await self._redis.eval(_RELEASE, 1, self._lock, token)  # type: ignore[misc]

    async def entry_count(self) -> int:
        """The entries the writers have added (``index:entries``; 0 when absent)."""
        try:
            raw = await self._redis.get(self._entries)
        except REDIS_DOWN as exc:
            raise BlocklistUnavailable(f"blocklist entry count read failed: {type(exc).__name__}") from exc
        return int(raw or 0)

    async def count_entries(self) -> int:
        """Count the entries of the index (a SCAN of every key) and set the entry count to it.

        For a replay, before it marks the index built: the guarded writers wait for the marker meanwhile.
        """
        counted = 0
        try:
            async for rkeys in scan_keys(self._redis, f"{self._prefix}bl:*", 1000):
                counted += sum(1 for k in rkeys if (k.decode() if isinstance(k, bytes) else k) != self._changes)
            await self._redis.set(self._entries, counted)
            await self._redis.delete(self._forgotten)  # counted afresh: no removal is left to take off
        except REDIS_DOWN as exc:
            raise BlocklistUnavailable(f"blocklist entry count failed: {type(exc).__name__}") from exc
        return counted

    async def wipe(self) -> int:
        """Delete every entry under the prefix (announcing each) and the entry count, keeping the change stream."""
        deleted = 0
        try:
            await self._redis.delete(self._entries)
            async for rkeys in scan_keys(self._redis, f"{self._prefix}bl:*", 1000):
                names = [k.decode() if isinstance(k, bytes) else k for k in rkeys]
                deleted += await self._delete([n for n in names if n != self._changes])
        except REDIS_DOWN as exc:
            raise BlocklistUnavailable(f"blocklist wipe failed: {type(exc).__name__}") from exc
        return deleted

    async def _delete(self, rkeys: list[str]) -> int:
        if not rkeys:
            return 0
        strip = len(self._prefix) + len("bl:")
        if self._cluster:  # deletes first, then their announcements (as in put_many)
            async with self._redis.pipeline(transaction=False) as pipe:
                for rkey in rkeys:
                    pipe.delete(rkey)
                await pipe.execute()
            await self._announce([rkey[strip:] for rkey in rkeys])
            return len(rkeys)
        async with self._redis.pipeline(transaction=True) as pipe:
            for rkey in rkeys:
                pipe.delete(rkey)
            self._queue_announce(pipe, [rkey[strip:] for rkey in rkeys])
            await pipe.execute()
        return len(rkeys)

    async def scan_entries(self, count: int = 1000) -> "AsyncIterator[list[Entry]]":
        """Every entry in the index, in batches (for export and comparisons)."""
        async for rkeys in scan_keys(self._redis, f"{self._prefix}bl:*", count):
            names = [k.decode() if isinstance(k, bytes) else k for k in rkeys]
            batch = [n[len(self._prefix) + 3:] for n in names if n != self._changes]
            if batch:
                yield list((await self.lookup_many(batch)).values())

    async def ping(self, within_s: float = PROBE_TIMEOUT_S) -> bool:
        """Whether Redis answers a PING within ``within_s``: a health probe answers in its own time, not the
        store's command timeout (a hung Redis would hold the probe past its caller's patience)."""
        try:
            return bool(await asyncio.wait_for(self._redis.ping(), within_s))
        except (*REDIS_DOWN, TimeoutError):
            return False

    async def close(self) -> None:
        await self._redis.aclose()


def _state_line(entry: Entry) -> str:
    """An entry's status and expiry for the change stream: ``confirmed 2027-06-01T00:00:00.000Z``."""
    return f"{entry.status.value} {entry.expires_at}" if entry.expires_at else entry.status.value


def changed_keys(fields: dict[bytes, bytes]) -> list[tuple[str, tuple[Status, str] | None]]:
    """The keys one change-stream record announces, each with its (status, expires_at) as written, or None
    where the record does not carry it (the entry is to be read). A record of ``put_many`` on one key
    before ``keys`` existed has the field ``key``."""
    raw = fields.get(b"keys")
    if raw is None:
        return [(fields[b"key"].decode(), None)]
    keys = raw.decode().split("\n")
    lines = fields.get(b"states")
    if lines is None:
        return [(k, None) for k in keys]
    states = []
    for line in lines.decode().split("\n"):
        status, _, expires = line.partition(" ")
        states.append((Status(status), expires))
    return list(zip(keys, states))


def _due_now(entries: Sequence[Entry], revoked: Iterable[str]) -> list[str]:
    """Keys to mark due for release: the revoked entries written, and the already-revoked keys of a retry."""
    return list(dict.fromkeys([*(e.key for e in entries if e.status is Status.REVOKED), *revoked]))


def status_and_expiry(raw: bytes | None) -> tuple[str, str] | None:
    """An index value's own ``status`` and ``expires_at`` ("" = never), or None if it is not a Sekat entry.

    Cheaper than ``Entry.from_json`` (the entry's history can be long), for the pass that reads every
    entry: the replica's read of the index. ``Entry.to_json`` writes the entry's own
    ``status`` before its history, and ``expires_at`` appears only at the top level, so both are found
    in the bytes; anything else is parsed.
    """
    if raw is None:
        return None
    i = raw.find(b'"status":"')
    j = raw.find(b'"', i + 10) if i >= 0 else -1
    status = raw[i + 10:j].decode() if j > 0 else ""
    if status in _STATUSES:
        k = raw.find(b'"expires_at":"')
        return status, raw[k + 14:raw.find(b'"', k + 14)].decode() if k >= 0 else ""
    try:
        data = orjson.loads(raw)
        status, expires = data["status"], data.get("expires_at") or ""
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return (status, str(expires)) if status in _STATUSES else None


_STATUSES = ("reported", "confirmed", "revoked")
