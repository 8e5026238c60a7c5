"""Local replica of the blocklist: every worker answers "is it listed?" from memory.

The hot path must not make a network round trip per event, and a report must take effect on every worker
within 100 ms. The replica does both:

    start      a copy of the index as compact arrays: sorted 64-bit hashes of the keys, a code (status and
               kind; revoked entries are kept, never a hit) and an expiry per key (13 bytes an entry). It is the copy another worker stored in Redis, caught
               up from the change stream before the replica says ready (``blocklist.replica_snapshot``), or,
               when that copy would miss a change, a read of the whole index (``blocklist.index_scan``),
               which stores a fresh copy for the next worker. Meanwhile, once the index is built, the
               replica is ready and each lookup reads the index itself (``_lookup_in_index``): a worker
               screens within a second of its start, whatever the size of the index
    follow     XREAD BLOCK on ``{prefix}bl:changes`` from the id the copy is as of (no gap) and apply the
               changed keys: the status and expiry a record of the reports agent carries, or else the entry
               re-read; in place for keys already in the arrays, into an overlay dict of thin entries
               (status and expiry only, from a record's states or the entry re-read; merged into the
               arrays when it grows large), so that its memory is bounded by its count
    lookup     per batch: hash the keys, one vectorised ``searchsorted``, overlay checks; only the rare
               active hits are read from Redis, in one MGET, for their evidence (source, case ref,
               reason), within SEKAT_REDIS_TIMEOUT_MS. If Redis does not answer, the replica's own status
               decides and the staleness metric says how old that knowledge is; after a timeout it does not
               ask again for a moment (``connection.Unanswered``), so a hung Redis costs a batch at most one
               timeout. Following has a client of its own: its XREAD waits on purpose
    rebuilds   Redis keeps nothing on disk: it can come back empty. While the ``index:built`` marker is
               absent (the index is empty or being replayed from ``sekat.reports``), an entry missing from
               Redis proves nothing, so the replica keeps its own copy: it applies the changes the replay
               announces but no deletions, answers hits from its own status, and counts as stale. When a
               new build id appears, it re-reads the index (the change stream it followed may be gone with
               the old Redis), answering from its current copy meanwhile. A hit gone from the very build
               the replica follows was lost (only the purge deletes from a built index, and only ended
               entries, never a hit): the replica answers it from its own status and calls ``on_lost``,
               and the index guard replays the topic
    losses     the same, for entries no lookup asks about: each follow step reads the index's entry count
               (``index:entries``, kept by the writers) in the MGET it makes anyway; a replica caught up
               with the change stream that holds more entries than the count, under the build it follows,
               calls ``on_lost`` (no key). Lost writes take their counts with them, so only a replica,
               which saw the writes, can tell
    refresh    every REFRESH_CHECK_S each running worker looks at the stored copy; when a starting worker
               could not use it, or soon could not, one worker reads the index in a background thread,
               paced so that Redis and the event loop keep serving the hot path, and stores it
               (``refresh_stored_snapshot``). It only stores: the running replica is exact already
    disk       the stored copy's chunks are also written to a file of the worker's own
               (``blocklist.replica_disk``) whenever the replica loads or stores them, or another worker
               stored newer ones. A worker that starts while Redis does not answer screens from that file
               (``from_disk``; its staleness counts from when the copy was taken) and, once Redis answers,
               follows the change stream from the copy's id, or re-reads the index when that could miss a
               change, screening from the copy meanwhile
    position   every running worker keeps its replica's change-stream id, with the time, in the hash
               ``{prefix}replica:seen`` (``positions``), at most once every POSITION_EVERY_S while following:
               ``sekat blocklist import --wait-applied`` waits for every worker seen lately to pass an id
    counts     entries by kind and status for ``sekat_blocklist_entries``, kept as changes are applied
               (``blocklist.counts``): ``entry_counts`` moves the entries expired since the last call

Hashes are Python's own ``hash()`` of the key string (SipHash, per process): a false match needs a 64-bit
collision (~5e-13 per lookup against 10 M entries) and is in any case re-checked against Redis when Redis
answers. On a Redis Cluster (``redis+cluster://``) nothing here changes: the reads spread over the masters
(``blocklist.connection``) and the change stream is one key on one master. The design and its figures:
docs/replica.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import orjson
from redis.exceptions import RedisError

from sekat.blocklist import index_scan
from sekat.blocklist import replica_snapshot as stored
from sekat.blocklist.connection import (REDIS_DOWN, INDEX_TIMEOUT_MS, SCAN_TIMEOUT_MS, TIMEOUT_MS, AnyRedis, Unanswered,
                                        async_client, mget, sync_client)
from sekat.blocklist.counts import EntryCounts, State, live
from sekat.blocklist.index_scan import ABSENT, CONFIRMED, REPORTED, STATUS_BITS, STATUS_CODES, active, kind_bit
from sekat.blocklist.replica_disk import DiskCopy, DiskMeta
from sekat.blocklist.store import built_key, changed_keys, entries_key, status_and_expiry
from sekat.records import Entry, Status

log = logging.getLogger(__name__)

_STATUS = {REPORTED: Status.REPORTED, CONFIRMED: Status.CONFIRMED}
FOLLOW_BLOCK_MS = 1000
FOLLOW_COUNT = 10_000
MERGE_OVERLAY_AT = 200_000
POSITION_EVERY_S = 1.0
# A position older than this is a worker that stopped (or cannot reach Redis): no longer waited for.
POSITION_FRESH_S = 10.0
START_RETRY_START_S = 0.5  # a replica that cannot be loaded (Redis down) tries again after this, then doubling
START_RETRY_MAX_S = 5.0


def _code(entry: Entry) -> int:
    return STATUS_CODES[entry.status.value] | kind_bit(entry.key)


def _expiry(entry: Entry) -> int:
    if entry.status is Status.REVOKED or not entry.expires_at:
        return 0
    return int(datetime.fromisoformat(entry.expires_at).timestamp())


def _thin(key: str, raw: bytes) -> Entry | None:
    """An index value as the overlay keeps it: its status and expiry only (None: not a Sekat entry, as the read
    of the index takes it). The evidence is read from the index on a hit, as for a key of the arrays, so an
    overlay entry costs the same whatever the length of the entry's history."""
    found = status_and_expiry(raw)
    return Entry(key=key, status=Status(found[0]), source="", expires_at=found[1]) if found else None


def _state(entry: Entry | None) -> State:
    return (_code(entry), _expiry(entry)) if entry is not None else (ABSENT, 0)


def positions_key(prefix: str) -> str:
    """The hash of replica positions: field = worker, value = ``{change id} {epoch ms}``."""
    return f"{prefix}replica:seen"


def positions(raw: dict[bytes, bytes], now_ms: int, fresh_s: float = POSITION_FRESH_S) -> dict[str, tuple[int, int]]:
    """The replica positions (worker -> change-stream id as a pair) reported within ``fresh_s``."""
    out = {}
    for worker, value in raw.items():
        change_id, _, at = value.decode().partition(" ")
        if at.isdigit() and now_ms - int(at) <= fresh_s * 1000:
            out[worker.decode()] = stream_id(change_id)
    return out


def stream_id(text: str) -> tuple[int, int]:
    """A Redis stream id (``ms-seq``) as a pair that orders as the stream does."""
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


class _Stopped(Exception):
    """The replica is closing: a background refresh gives up."""


@dataclass
class ReplicaStats:
    entries: int = 0
    loaded_in_s: float = 0.0
    changes_applied: int = 0
    last_follow_ok: float = field(default_factory=time.time)
    redis_fallbacks: int = 0
    lost_entries: int = 0  # hits found missing from the built index they were read from (see lookup_many)
    counted_losses: int = 0  # follow steps that found more entries held than the index counts (see _compare_count)
    loaded_from: str = ""  # "index" (a read of it), "stored snapshot" or "disk copy"
    snapshot_refreshes: int = 0  # stored snapshots this replica refreshed in the background


class Replica:
    """One worker's in-memory copy of the blocklist index, kept fresh from the change stream."""

    def __init__(self, url: str, prefix: str = "sekat:", on_fresh: Callable[..., None] | None = None, *,
                 stored_snapshot: bool = True, snapshot_max_behind: int = stored.MAX_BEHIND,
                 snapshot_refresh_s: float = stored.REFRESH_INTERVAL_S,
                 snapshot_check_s: float = stored.REFRESH_CHECK_S, timeout_ms: int = TIMEOUT_MS,
                 on_lost: Callable[[str, str], None] | None = None, disk: DiskCopy | None = None) -> None:
        self._url = url
        # The disk copy rides on the stored snapshot's chunks: none without them.
        self._disk = disk if stored_snapshot else None
        self._on_lost = on_lost  # (key or None, build id): the index lost an entry this replica holds
        self._timeout_ms = timeout_ms
        self._store_snapshots = stored_snapshot
        self._snapshot_max_behind = snapshot_max_behind
        self._snapshot_refresh_s = snapshot_refresh_s
        self._snapshot_check_s = snapshot_check_s
        self._stopping = threading.Event()  # set on close: a background refresh gives up at its next batch
        self._active = 0  # entries of the arrays a lookup finds (reported or confirmed)
        self._extra = 0  # overlay entries the arrays do not hold (the overlay also keeps changed array keys)
        self._on_fresh = on_fresh  # on_fresh(): the change stream answered; on_fresh(t): fresh as of epoch t
        self._prefix = prefix
        self._changes = f"{prefix}bl:changes"
        self._hashes = np.empty(0, dtype=np.int64)
        self._status = np.empty(0, dtype=np.uint8)
        self._expires = np.empty(0, dtype=np.uint32)
        self._overlay: dict[str, Entry] = {}
        self._revoked: dict[str, int] = {}  # revoked keys the arrays do not hold, with their code (for the counts)
        self._counts = EntryCounts(self._status, self._expires, self._locate)
        self._counting = threading.Lock()  # an install (in a thread) swaps the counts; a tick reads them
        self._last_id = "0-0"
        self._positions = positions_key(prefix)
        self._name = f"{socket.gethostname()}:{os.getpid()}"
        self._position_at = 0.0
        self._built_key = built_key(prefix)
        self._entries_key = entries_key(prefix)
        self._counted_loss: tuple[str, int, int] | None = None  # (build, count, held) last reported
        self._build: str | None = None  # the build id this replica's copy was read from / followed
        self._seen_build = False  # whether a build id has been seen (None before: a fresh index)
        self.awaiting_rebuild = False  # the marker went away: deciding on this copy until it is back
        self._skipped_deletions = 0
        self._client: AnyRedis | None = None  # the hot path's evidence reads: SEKAT_REDIS_TIMEOUT_MS
        self._follow_client: AnyRedis | None = None  # XREAD BLOCK and the changed keys' reads
        self._unanswered = Unanswered()
        self.ready = asyncio.Event()  # lookups may be answered (from the replica, the disk copy or the index itself)
        self._own_copy = asyncio.Event()  # lookups may be answered from this replica's own copy
        self._from_index = False  # loading: lookups read the index itself (_lookup_in_index)
        self.started = asyncio.Event()  # loaded from Redis and caught up: following the change stream
        self.from_disk = False  # screening from the disk copy while Redis does not answer
        self.stats = ReplicaStats()

    # -- start ------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Load the replica: from the stored snapshot and the changes since, or by a read. ``ready`` is set as
        soon as the index answers and is built: until the replica is loaded, lookups read the index itself.

        Until Redis answers, tried again with backoff (up to START_RETRY_MAX_S apart): a worker started while
        Redis is down screens once it is back, without a restart. Meanwhile it screens from its disk copy when
        it has one young enough (``_screen_from_disk``), and once Redis answers takes up the change stream
        from there (``_leave_disk``). ``started`` is set once the replica follows Redis.
        """
        delay = START_RETRY_START_S
        on_disk: DiskMeta | None = None
        try_disk = self._disk is not None
        while True:
            try:
                if try_disk:  # a hung Redis: the disk copy after one screening timeout, not the read's 30 s
                    await asyncio.to_thread(self._ping)
                if on_disk is not None:
                    await self._leave_disk(on_disk)
                    return
                if not self.ready.is_set() and await asyncio.to_thread(self._index_built):
                    self._screen_from_index()
                snap = await asyncio.to_thread(self._stored_or_read)
                break
            except REDIS_DOWN as exc:
                if try_disk:
                    try_disk = False
                    on_disk = await self._screen_from_disk()
                log.warning("blocklist replica could not be loaded (%s: %s); trying again in %.1fs%s",
                            type(exc).__name__, exc, delay, "; screening from its disk copy" if on_disk else "")
                await asyncio.sleep(delay)
                delay = min(delay * 2, START_RETRY_MAX_S)
        self._install_snapshot(snap)
        self._connect()
        # Not answering from the copy until every change since it is applied: a stored snapshot can be minutes
        # old, a read of the index takes as long as it takes, and an answer from either alone could miss a
        # listing made since (the index itself answers meanwhile).
        behind = time.perf_counter()
        applied = self.stats.changes_applied
        while await self._follow_once(block=None) == FOLLOW_COUNT:
            pass
        self.stats.loaded_in_s += time.perf_counter() - behind
        log.info("blocklist replica caught up from the %s: %d changes, loaded in %.1fs", self.stats.loaded_from,
                 self.stats.changes_applied - applied, self.stats.loaded_in_s)
        self._answer_from_copy()
        self.ready.set()
        self.started.set()

    def _index_built(self) -> bool:
        """Whether the index is built (its ``index:built`` marker is there), asked within the screening path's
        timeout; raises when Redis does not answer (blocking)."""
        client = sync_client(self._url, self._timeout_ms)
        try:
            return client.exists(self._built_key) > 0
        finally:
            client.close()

    def _screen_from_index(self) -> None:
        """Set ``ready`` while the replica loads: lookups read the built index itself (``_lookup_in_index``)."""
        self._connect()
        self._from_index = True
        self.ready.set()
        log.info("blocklist replica loading; screening from the index itself meanwhile (one MGET a batch)")

    def _answer_from_copy(self) -> None:
        """Lookups answered from this replica's own copy from now on (loaded, or the disk copy installed)."""
        self._from_index = False
        self._own_copy.set()

    @property
    def loading(self) -> bool:
        """Screening from the index itself while the replica loads."""
        return self._from_index

    def _connect(self) -> None:
        if self._client is None:
            self._client = async_client(self._url, self._timeout_ms)
            self._follow_client = async_client(self._url, INDEX_TIMEOUT_MS, blocking_ms=FOLLOW_BLOCK_MS)

    def _ping(self) -> None:
        """Raise unless Redis answers within the screening path's timeout (blocking)."""
        client = sync_client(self._url, self._timeout_ms)
        try:
            client.ping()
        finally:
            client.close()

    async def _screen_from_disk(self) -> DiskMeta | None:
        """Install the disk copy and set ``ready`` (Redis does not answer); its description, or None when there
        is none young enough. Staleness counts from when the copy was taken: what it may miss is younger."""
        assert self._disk is not None
        found = await asyncio.to_thread(self._disk.load)
        if found is None:
            return None
        meta, snap = found
        self._install_snapshot(snap, "disk copy")
        self._answer_from_copy()
        self.stats.last_follow_ok = meta.as_of
        if self._on_fresh is not None:
            self._on_fresh(meta.as_of)
        self._connect()
        self.from_disk = True
        self.ready.set()
        log.warning("Redis does not answer: screening from the blocklist replica's disk copy (%d entries, "
                    "%.0f s old, build %s) until it does", self.stats.entries, time.time() - meta.as_of, meta.build)
        return meta

    async def _leave_disk(self, meta: DiskMeta) -> None:
        """Redis answers again: follow the change stream from the disk copy's id when that misses nothing
        (``replica_snapshot.gap``), else re-read the index, screening from the disk copy meanwhile."""
        why = await asyncio.to_thread(self._disk_gap, meta)
        if why:
            log.info("blocklist replica's disk copy not followed (%s): re-reading the index, screening from the "
                     "disk copy meanwhile", why)
            snap = await asyncio.to_thread(index_scan.read_index, self._url, self._prefix, True, self._disk)
            self._install_snapshot(snap)
        else:
            applied = self.stats.changes_applied
            while await self._follow_once(block=None) == FOLLOW_COUNT:
                pass
            log.info("blocklist replica caught up from its disk copy: %d changes", self.stats.changes_applied - applied)
        self.from_disk = False
        self.started.set()

    def _disk_gap(self, meta: DiskMeta) -> str:
        """Why following the change stream from the disk copy could miss a change ("": it could not; an index
        not built, i.e. Redis came back empty or is being replayed into, is followed as any running replica
        follows it, keeping its copy until the new build appears). Blocking."""
        client = sync_client(self._url, INDEX_TIMEOUT_MS)
        try:
            raw = client.get(self._built_key)
            if raw is None:
                return ""
            return stored.gap(meta.build, meta.added, meta.last_id, raw.decode(),
                              stored.stream_state(client, self._changes), self._snapshot_max_behind)
        finally:
            client.close()

    def _stored_or_read(self) -> stored.Snapshot:
        """The stored snapshot if it will do; else the one another process is storing now, once it is
        stored; else a read of the index (blocking: run it in a thread)."""
        if not self._store_snapshots:
            return index_scan.read_index(self._url, self._prefix, store=False)
        snap = stored.load(self._url, self._prefix, self._snapshot_max_behind, self._disk)
        if snap is None and stored.wait_for_writer(self._url, self._prefix):
            snap = stored.load(self._url, self._prefix, self._snapshot_max_behind, self._disk)
        return snap if snap is not None else index_scan.read_index(self._url, self._prefix, disk=self._disk)

    def _install_snapshot(self, snap: stored.Snapshot, source: str = "") -> None:
        self._overlay = {}
        self._revoked = {}
        self._extra = 0
        self._install(snap.hashes, snap.codes, snap.expiries)
        self._last_id = snap.last_id
        self._build = snap.build
        self._seen_build = self._seen_build or snap.build is not None
        self.awaiting_rebuild = self._seen_build and snap.build is None
        self.stats.loaded_in_s = snap.seconds
        self.stats.loaded_from = source or ("stored snapshot" if snap.stored else "index")
        self.stats.last_follow_ok = time.time()
        log.info("blocklist replica loaded from the %s: %d active entries in %.1fs", self.stats.loaded_from,
                 self.stats.entries, self.stats.loaded_in_s)

    def _install(self, hashes: np.ndarray, codes: np.ndarray, expiries: np.ndarray, in_order: bool = False) -> None:
        """Make these arrays the replica's copy: sorted by hash, each key once (``in_order``: they are)."""
        if not in_order:
            order = np.argsort(hashes, kind="stable")
            hashes = hashes[order]
            repeated = hashes[1:] == hashes[:-1]
            if repeated.any():
                # A key read twice: SCAN may return a key more than once (a table resized during the pass, or
                # the batch that ends one part of it running into the next part). The read seen first is kept;
                # a change between the two reads is replayed from the change stream anyway.
                order = order[np.concatenate(([True], ~repeated))]
                hashes = hashes[np.concatenate(([True], ~repeated))]
            codes, expiries = codes[order], expiries[order]
        counts = EntryCounts(codes, expiries, self._locate, self._counts.watermark)  # recounted: O(entries)
        with self._counting:
            self._hashes, self._status, self._expires = hashes, codes, expiries
            self._counts = counts
        self._active = int(np.count_nonzero(active(self._status)))
        self.stats.entries = self._active + self._extra

    # -- the stored snapshot, kept fresh for the next worker to start ------------------------------
    async def keep_stored_snapshot(self, observe: Callable[[float], None] | None = None) -> None:
        """Refresh the stored snapshot in the background whenever it would not do for a starting worker;
        never returns (cancel it to stop: a refresh under way is then abandoned at its next batch).
        ``observe`` is given each check's runtime in seconds (a refresh included)."""
        if not self._store_snapshots:
            return
        await self.started.wait()
        try:
            while True:
                await asyncio.sleep(self._snapshot_check_s)
                started = time.perf_counter()
                try:
                    await asyncio.to_thread(self.refresh_stored_snapshot)
                    await asyncio.to_thread(self.copy_stored_to_disk)
                except Exception as exc:  # noqa: BLE001 - a favour to the next worker: never stop this one
                    log.warning("refreshing the stored replica snapshot failed (%s: %s); trying again later",
                                type(exc).__name__, exc)
                if observe is not None:
                    observe(time.perf_counter() - started)
        finally:
            self._stopping.set()

    def refresh_stored_snapshot(self) -> bool:
        """Read the index and store it, when the stored snapshot would not, or soon would not, do for a
        starting worker and no process refreshed it in the last ``snapshot_refresh_s``; whether it stored one.

        Blocking (run it in a thread). This replica's own arrays are left alone: it only reads and stores
        (the running replica is already exact, following the stream). "Soon": more than half of
        ``snapshot_max_behind`` changes behind, so that under a steady flow of changes the next worker
        still finds one it can use. One refresher at a time (the snapshot's writing lock) and one refresh
        per ``snapshot_refresh_s`` across the fleet (``replica:snapshot:refreshed``, taken when a refresh
        starts, whatever its outcome): a flood of reports does not keep Redis re-reading the index. The
        read (``index_scan.scan_index_lightly``) rests between batches, busy at most REFRESH_SHARE of its
        time, so that Redis and this process's event loop keep serving the hot path, unless a starting
        worker is waiting for this snapshot. After a rebuild this replica re-reads the index (``_on_build``),
        which stores the new build's snapshot: no refresh until it has taken the build in.
        """
        if not self._store_snapshots:
            return False
        client = sync_client(self._url, SCAN_TIMEOUT_MS)
        writer: stored.Writer | None = None
        token = uuid.uuid4().hex
        try:
            raw = client.get(self._built_key)
            if raw is None:
                return False  # a rebuild under way, or a fresh index: nothing to store yet
            build = raw.decode()
            if build != self._build:
                return False  # a rebuild this replica has yet to take in: its own re-read will store it
            meta, why = stored.unusable(client, self._prefix, self._changes, build, self._snapshot_max_behind // 2)
            if not why and meta is not None and self._disk is not None \
                    and time.time() - meta.written_at > self._disk.max_age_s / 2:
                # the disk copies are taken from it: one older than their max age could not be screened from
                why = f"it is {(time.time() - meta.written_at) / 3600:.1f} h old (disk copies: half their max age)"
            state = stored.stream_state(client, self._changes)
            if not why or state is None or stored.Writer.busy(client, self._prefix):
                return False  # nothing to do, a Redis that cannot keep one (< 7.0), or another writer at it
            if not client.set(stored.refreshed_key(self._prefix), token, nx=True,
                              px=max(1, int(self._snapshot_refresh_s * 1000))):
                return False  # refreshed (or tried) lately
            writer = stored.Writer.start(client, self._prefix, state, build, stored.REFRESH_CHUNK_ENTRIES, self._disk)
            if writer is None:
                return False
            log.info("stored replica snapshot out of date (%s): refreshing it in the background", why)
            started = time.perf_counter()
            strip = len(self._prefix) + len("bl:")
            rest = 1 / stored.REFRESH_SHARE - 1
            mark = looked = time.perf_counter()
            waited_for = False
            for keys, values in index_scan.scan_index_lightly(client, self._prefix):
                if self._stopping.is_set():
                    raise _Stopped
                got = index_scan.batch_columns(keys, values, strip)
                if not writer.add_text(got.text, len(got), got.codes, got.expiries):
                    writer = None
                    return False
                now = time.perf_counter()
                if now - looked >= 1.0:
                    waited_for = bool(client.exists(stored.waiting_key(self._prefix)))
                    looked = now
                if not waited_for:
                    self._stopping.wait((now - mark) * rest)
                mark = time.perf_counter()
            done, writer = writer, None
            if not done.finish():
                return False
            self.stats.snapshot_refreshes += 1
            log.info("stored replica snapshot refreshed in the background in %.1fs", time.perf_counter() - started)
            return True
        except _Stopped:
            if client.get(stored.refreshed_key(self._prefix)) == token.encode():
                client.delete(stored.refreshed_key(self._prefix))  # not done: another worker may do it soon
            return False
        finally:
            if writer is not None:
                with contextlib.suppress(RedisError, OSError):
                    writer.abandon()
            client.close()

    def copy_stored_to_disk(self) -> bool:
        """Write the stored snapshot to this worker's disk copy when the copy is of another one (another worker
        stored a newer one); whether it wrote one. Blocking (run it in a thread)."""
        if self._disk is None:
            return False
        client = sync_client(self._url, SCAN_TIMEOUT_MS)
        writer = None
        try:
            raw = client.get(stored.meta_key(self._prefix))
            if raw is None:
                return False
            try:
                meta = stored.Meta(**orjson.loads(raw))
            except (ValueError, TypeError):
                return False
            if meta.build != self._build or self._disk.current_gen() == meta.gen:
                return False
            writer = self._disk.writer(meta.gen)
            if writer is None:
                return False
            for blob in stored.read_chunks(client, self._prefix, meta):
                if self._stopping.is_set():
                    return False
                writer.add(blob)
            done, writer = writer, None
            return done.finish(meta)
        except ValueError:
            return False  # replaced while it was read: the next check copies the new one
        finally:
            if writer is not None:
                writer.abandon()
            client.close()

    # -- follow -----------------------------------------------------------------------------------
    async def follow(self) -> None:
        """Apply changes as they are announced; never returns (cancel it to stop)."""
        await self.ready.wait()
        backoff = 0.05
        while True:
            try:
                await self._follow_once(block=FOLLOW_BLOCK_MS)
                backoff = 0.05
                await self._report_position()
                if self._merge_due():
                    await asyncio.to_thread(self._merge_overlay)
            except asyncio.CancelledError:
                raise
            except REDIS_DOWN as exc:
                log.warning("blocklist change stream unavailable (%s); deciding on the replica", type(exc).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    async def _report_position(self) -> None:
        """This replica's change-stream id into ``{prefix}replica:seen``, at most once every POSITION_EVERY_S."""
        now = time.time()
        if now - self._position_at < POSITION_EVERY_S or self._follow_client is None:
            return
        await self._follow_client.hset(self._positions, self._name, f"{self._last_id} {int(now * 1000)}")
        self._position_at = now

    async def _follow_once(self, block: int | None) -> int:
        """Read and apply the next change-stream records (waiting up to ``block`` ms); how many there were."""
        assert self._follow_client is not None
        reply = await self._follow_client.xread({self._changes: self._last_id}, count=FOLLOW_COUNT, block=block)
        records = reply[0][1] if reply else []
        # A record written with its entries in one MULTI carries their states: applied as they are, in the
        # stream's order. Other keys are read, after them: what Redis holds now is at least as new.
        stated: dict[str, tuple[Status, str]] = {}
        unstated: dict[str, None] = {}
        for _, fields in records:
            for key, state in changed_keys(fields):
                if state is None:
                    unstated[key] = None
                else:
                    stated[key] = state
        keys = [k for k in unstated]
        # The marker travels with the changed entries: one round trip says both what changed and
        # whether an absent entry means "deleted" or "not replayed yet"; and the entry count with them.
        values = await mget(self._follow_client, [self._built_key, self._entries_key,
                                                  *(f"{self._prefix}bl:{k}" for k in keys)])
        build = values[0].decode() if values[0] is not None else None
        for key, (status, expires) in stated.items():
            if key not in unstated:
                self.apply(key, Entry(key=key, status=status, source="", expires_at=expires))
        skipped = 0
        for key, raw in zip(keys, values[2:]):
            if raw is None and build is None:
                skipped += 1  # wiped or not replayed yet: keep this replica's copy
                continue
            self.apply(key, _thin(key, raw) if raw else None)
        if records:
            self._last_id = records[-1][0].decode()
        await self._on_build(build, skipped)
        if len(records) < FOLLOW_COUNT:  # caught up with the stream as of the XREAD
            self._compare_count(build, int(values[1] or 0))
        if not self.awaiting_rebuild:
            self.stats.last_follow_ok = time.time()
            if self._on_fresh is not None:
                self._on_fresh()
        if self._merge_due() and not self.started.is_set():
            await asyncio.to_thread(self._merge_overlay)  # catching up: follow() is not running yet
        return len(records)

    async def _on_build(self, build: str | None, skipped: int) -> None:
        """Track the ``index:built`` marker: note a rebuild starting, re-read the snapshot when one ends."""
        if build is None:
            if self._seen_build and not self.awaiting_rebuild:
                log.warning("blocklist index is not built (Redis empty or being rebuilt); deciding on the replica")
            self.awaiting_rebuild = self._seen_build
            self._skipped_deletions = self._skipped_deletions + skipped
            return
        if build == self._build:
            return
        rebuilt = self._seen_build or self._skipped_deletions > 0
        self._seen_build = True
        self._skipped_deletions = 0
        if not rebuilt:  # the first build of a fresh index: the stream followed so far is the index's own
            self._build = build
            return
        # A new build: the old Redis (and the change stream followed) may be gone; start again from a read
        # of the rebuilt index. Lookups keep using the current copy until the new one is installed. (A read,
        # not a stored snapshot: one installed from a stored snapshot would answer without the changes since
        # it until caught up.)
        snap = await asyncio.to_thread(index_scan.read_index, self._url, self._prefix, self._store_snapshots,
                                       self._disk)
        self._install_snapshot(snap)
        log.info("blocklist index rebuilt (build %s): replica re-read %d entries", snap.build, self.stats.entries)

    def _compare_count(self, build: str | None, counted: int) -> None:
        """Report a loss when this replica holds more entries than the index counts, under the build it follows.

        The count read after the XREAD includes every write this replica has applied (a write is counted in
        its MULTI, or before it is announced on a cluster), so while nothing is lost the replica holds at most
        the count. A write whose count failed (the cluster's two steps) makes a false alarm, which the replay
        clears by counting the index afresh.
        """
        if self._on_lost is None or build is None or build != self._build or self.awaiting_rebuild:
            return
        with self._counting:
            held = sum(self._counts.by_kind_status().values())
        if held <= counted:
            self._counted_loss = None
            return
        self.stats.counted_losses += 1
        if self._counted_loss != (build, counted, held):
            self._counted_loss = (build, counted, held)
            log.warning("blocklist index counts %d entries but this replica holds %d under the same build (%s): "
                        "entries lost (a failover that dropped writes?); deciding on the replica", counted, held,
                        build)
        self._on_lost(None, build)

    def apply(self, key: str, entry: Entry | None) -> None:
        """One changed key: update in place when the arrays hold it, else keep it in the overlay (a revoked
        one among the revoked keys, for the counts); the counts move it from its old bucket to its new one."""
        self.stats.changes_applied += 1
        new = _state(entry)
        i = self._index(hash(key))
        if i >= 0:
            old: State = (int(self._status[i]), int(self._expires[i]))
            self._active += int(live(new[0])) - int(live(old[0]))
            self._status[i], self._expires[i] = new
        else:
            old = self._outside(key)
            self._extra += int(live(new[0])) - int(key in self._overlay)
            if entry is not None and entry.status is Status.REVOKED:
                self._revoked[key] = new[0]
            else:
                self._revoked.pop(key, None)
        if entry is not None and entry.status is not Status.REVOKED:
            self._overlay[key] = entry
        else:
            self._overlay.pop(key, None)
        self._counts.change(key, old, new)
        self.stats.entries = self._active + self._extra

    def _outside(self, key: str) -> State:
        """The state of a key the arrays do not hold: in the overlay, among the revoked keys, or absent."""
        entry = self._overlay.get(key)
        if entry is not None:
            return _state(entry)
        code = self._revoked.get(key)
        return (code, 0) if code is not None else (ABSENT, 0)

    def _locate(self, key: str) -> tuple[int, int, int]:
        """A key's row in the arrays (-1: not there), code and expiry (for the counts' expiry checks)."""
        i = self._index(hash(key))
        if i >= 0:
            return i, int(self._status[i]), int(self._expires[i])
        return (-1, *self._outside(key))

    def _merge_due(self) -> bool:
        """Whether the overlay (or the counts' heap of later expiries) has grown enough to merge into arrays."""
        return len(self._overlay) + len(self._revoked) > MERGE_OVERLAY_AT or self._counts.pending > MERGE_OVERLAY_AT

    def _merge_overlay(self) -> None:
        """Move the overlay's keys the arrays do not hold into them (the others were updated in place).

        The new keys are inserted where they sort (``np.insert``: one new array of each column); the arrays
        are not sorted again, so a merge at 10 M entries holds the old arrays and the new ones, not the copies
        and the order a sort makes. Rows of deleted keys are dropped on the way.
        """
        overlay = dict(self._overlay)
        revoked = dict(self._revoked)
        new_hashes = np.array([hash(k) for k in overlay] + [hash(k) for k in revoked], dtype=np.int64)
        new_codes = np.array([_code(e) for e in overlay.values()] + list(revoked.values()), dtype=np.uint8)
        new_expiries = np.array([_expiry(e) for e in overlay.values()] + [0] * len(revoked), dtype=np.uint32)
        if len(self._hashes):
            at = np.minimum(np.searchsorted(self._hashes, new_hashes), len(self._hashes) - 1)
            held = self._hashes[at] == new_hashes
            new_hashes, new_codes, new_expiries = new_hashes[~held], new_codes[~held], new_expiries[~held]
        order = np.argsort(new_hashes)
        new_hashes, new_codes, new_expiries = new_hashes[order], new_codes[order], new_expiries[order]
        hashes, codes, expiries = self._hashes, self._status, self._expires
        gone = codes == ABSENT
        if gone.any():
            keep = ~gone
            hashes, codes, expiries = hashes[keep], codes[keep], expiries[keep]
        at = np.searchsorted(hashes, new_hashes)
        self._extra = 0
        self._install(np.insert(hashes, at, new_hashes), np.insert(codes, at, new_codes),
                      np.insert(expiries, at, new_expiries), in_order=True)
        # Keys merged now are dropped from the overlay once the arrays hold them (an expiry check of the counts
        # meanwhile finds them in one or the other); no change is applied while a merge runs.
        for k in overlay:
            self._overlay.pop(k, None)
        for k in revoked:
            self._revoked.pop(k, None)

    def entry_counts(self, now: float) -> dict[tuple[str, str], int] | None:
        """Entries by (kind, status) of this replica's copy at ``now`` (epoch seconds), the
        ``sekat_blocklist_entries`` gauge (``blocklist.counts``); None until the replica is loaded."""
        if not self.ready.is_set() or self._from_index:
            return None
        with self._counting:
            return self._counts.advance(now)

    def _index(self, h: int) -> int:
        i = int(np.searchsorted(self._hashes, h))
        return i if i < len(self._hashes) and self._hashes[i] == h else -1

    # -- lookup -----------------------------------------------------------------------------------
    def candidates(self, keys: Iterable[str], now: float) -> dict[str, Entry]:
        """Keys that are active on the blocklist, as thin entries (status only; ``lookup_many`` reads the rest)."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, Entry] = {}
        if len(self._hashes) and keys:
            hs = np.fromiter((hash(k) for k in keys), dtype=np.int64, count=len(keys))
            idx = np.searchsorted(self._hashes, hs)
            np.minimum(idx, len(self._hashes) - 1, out=idx)
            hit = (self._hashes[idx] == hs) & active(self._status[idx])
            for j in np.flatnonzero(hit):
                i = idx[j]
                exp = int(self._expires[i])
                if exp and exp <= now:
                    continue
                found[keys[j]] = Entry(key=keys[j], status=_STATUS[int(self._status[i]) & STATUS_BITS], source="",
                                       reason="", expires_at="")
        if self._overlay:
            for k in keys:
                entry = self._overlay.get(k)
                if entry is not None and (not (exp := _expiry(entry)) or exp > now):
                    found[k] = entry  # thin: read from Redis as above
        return found

    async def lookup_many(self, keys: Iterable[str]) -> dict[str, Entry]:
        """Same answer as ``BlocklistStore.lookup_many`` for deciding, without a round trip for misses."""
        if not self.ready.is_set():
            await self.ready.wait()
        if self._from_index:
            keys = list(keys)
            found = await self._lookup_in_index(keys)
            if found is not None:
                return found
            await self._own_copy.wait()  # the index cannot answer: this replica will, once loaded
        hits = self.candidates(keys, time.time())
        thin = [k for k, e in hits.items() if not e.source]
        if thin and self._client is not None and self._unanswered.quiet:
            self.stats.redis_fallbacks += 1
            self._own_answer(hits, thin, "blocklist index not answering")
        elif thin and self._client is not None:
            try:
                values = await mget(self._client, [self._built_key, *(f"{self._prefix}bl:{k}" for k in thin)])
            except REDIS_DOWN as exc:
                self._unanswered.failed(exc)
                self.stats.redis_fallbacks += 1
                self._own_answer(hits, thin, "blocklist index unreachable")
            else:
                build = values[0].decode() if values[0] is not None else None
                built = build is not None or not self._seen_build
                for k, raw in zip(thin, values[1:]):
                    if raw is not None:
                        hits[k] = Entry.from_json(orjson.loads(raw))
                    elif build is not None and build == self._build:
                        self._lost(hits, k, build)
                    elif built:
                        hits.pop(k)  # gone from a complete index: no longer listed
                    else:
                        self.stats.redis_fallbacks += 1
                        self._own_answer(hits, [k], "blocklist index being rebuilt")
        return hits

    async def _lookup_in_index(self, keys: list[str]) -> dict[str, Entry] | None:
        """The active entries of ``keys`` read from the index itself, as ``lookup_many`` answers once loaded;
        None when the index cannot answer: Redis does not (within SEKAT_REDIS_TIMEOUT_MS), or the index is no
        longer built (a rebuild started: an absent entry proves nothing)."""
        assert self._client is not None
        unique = list(dict.fromkeys(keys))
        try:
            values = await mget(self._client, [self._built_key, *(f"{self._prefix}bl:{k}" for k in unique)])
        except REDIS_DOWN as exc:
            log.warning("blocklist index not answering while the replica loads (%s); screening waits for the "
                        "replica", type(exc).__name__)
            return None
        if values[0] is None:
            return None
        now = time.time()
        found: dict[str, Entry] = {}
        for key, raw in zip(unique, values[1:]):
            if raw is not None:
                entry = Entry.from_json(orjson.loads(raw))
                if entry.status in (Status.REPORTED, Status.CONFIRMED) and (not (exp := _expiry(entry)) or exp > now):
                    found[key] = entry
        return found

    def _lost(self, hits: dict[str, Entry], key: str, build: str) -> None:
        """A hit gone from the very build this replica follows: the index lost it; decide on it, have it rebuilt.

        Nothing deletes an entry from a built index (a wipe drops the marker first, and a change the replica
        has not applied yet is an update, not a deletion), so this is a loss: a failover that dropped recent
        writes, a key deleted by hand. The replica keeps its own answer; ``on_lost`` (the index guard)
        replays ``sekat.reports`` into the index, after which the replica re-reads it as after any rebuild.
        """
        self.stats.lost_entries += 1
        self._own_answer(hits, [key], "blocklist index lost this entry; rebuilding it")
        log.warning("blocklist index lost an entry this replica holds (build %s); deciding on the replica", build)
        if self._on_lost is not None:
            self._on_lost(key, build)

    @staticmethod
    def _own_answer(hits: dict[str, Entry], keys: Iterable[str], why: str) -> None:
        """Decide on what the replica knows; say so in the evidence."""
        for k in keys:
            hits[k] = Entry(key=k, status=hits[k].status, source="replica", reason=f"(details unavailable: {why})")

    @property
    def change_id(self) -> str:
        """The id of the last change-stream record this replica has applied ("0-0": none yet)."""
        return self._last_id

    def staleness(self) -> float:
        """Seconds since the change stream last answered over a built index (0 while healthy and blocking, and
        while loading: answers come from the index itself)."""
        if self._from_index:
            return 0.0
        return max(0.0, time.time() - self.stats.last_follow_ok - FOLLOW_BLOCK_MS / 1000)

    async def close(self) -> None:
        self._stopping.set()
        for client in (self._client, self._follow_client):
            if client is not None:
                await client.aclose()
