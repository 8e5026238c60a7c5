"""Local replica of the blocklist: every worker answers "is it listed?" from memory.

The hot path must not make a network round trip per event, and a report must
take effect on every worker within 100 ms. The replica does both:

    snapshot   on start, the index (or the copy of it another worker stored,
               see "Start-up" below) into compact arrays: sorted 64-bit hashes
               of the keys, a status code and an expiry per key — 13 bytes an
               entry, so 10 M entries cost ~130 MB;
    follow     XREAD BLOCK on ``{prefix}bl:changes`` from the id taken *before*
               the snapshot (no gap), re-read the changed keys and apply them:
               in place for keys already in the arrays, into an overlay dict of
               full entries for new keys;
    lookup     per batch: hash the keys, one vectorised ``searchsorted``, overlay
               checks; only the rare active hits are read from Redis, in one
               MGET, for their evidence (source, case ref, reason). If Redis
               does not answer, the replica's own status decides and the
               staleness metric says how old that knowledge is.
    rebuilds   Redis keeps nothing on disk: it can come back empty. While the
               ``index:built`` marker is absent (the index is empty or being
               replayed from ``sekat.reports``), an entry missing from Redis
               proves nothing, so the replica keeps its own copy: it applies
               the changes the replay announces but no deletions, answers hits
               from its own status, and counts as stale. When a new build id
               appears, it re-reads the snapshot (the change stream it
               followed may be gone with the old Redis).

Start-up (the target: a 10 M-entry blocklist ready in <= 30 s, <= 1 GB). Where
the 76 s of the first version went, measured on 2 M entries (Redis
INFO commandstats for its side, process time for ours): two SCAN passes, one per
kind, each visiting every key (~1 µs a key per pass on Redis, 0.4 µs more with
``TYPE``), an MGET per 10,000 keys (~1 µs a key on Redis, ~0.7 µs in redis-py
and hiredis), then the status parse (1.1 µs), the hash (0.1 µs) and numpy —
all back to back, so the costs added up. Two changes:

* reading the index: one SCAN pass over ``{prefix}bl:*`` (entry keys picked by
  name, so no ``TYPE`` filter), the status and expiry read from the value's
  bytes without a copy (0.4 µs; anything unusual takes ``status_and_expiry``'s
  full path), expiries turned into epochs per batch (numpy, not
  ``fromisoformat`` per entry: with the default expiry policy every entry has
  one). At 10 M entries (issue 6, second round) Redis spent ~25 s of CPU in
  SCAN (~1.1 µs a key) and MGET (~1.3-1.6 µs), this process ~15 s, yet the
  read took 33-43 s: with one connection, Redis waited while each reply was
  received and parsed (and while the reading thread waited for the GIL). Now
  the pass is read in two parts at once (``_scan_part``: SCAN's cursor says
  which half of the table it is in), each on its own connection, so one part's
  next command is queued while the other's reply is parsed; batches of 3,000
  keys instead of 10,000, so each MGET finds its keys still in Redis' CPU cache
  from the SCAN just before (one connection, no parsing: MGET 10.8 s of Redis
  time at 1,000 keys a batch against 16.1 s at 10,000, in one session); and the
  hashes are sorted in runs of 1 M while the read waits on Redis, so installing
  merges sorted runs (~0.4 s instead of ~2 s). What is left is Redis' own
  ~2.3-2.7 µs an entry, ~23-27 s of one core at 10 M: the read cannot be
  quicker than that on one server, and is slower whenever that core is shared
  (the first worker's start-up at 10 M stayed at 39-64 s on this shared
  2-core machine, README "Worker start-up"; the 30 s target is met through the
  stored snapshot below, not by the cold read).
* so the fleet pays that once: the worker that reads the index also stores
  what it read in Redis (``blocklist.replica_snapshot``: keys, codes, expiries
  in chunks, with the change-stream id and count it is as of), and a starting
  worker loads that (a few GETs, then ~0.2 µs an entry to rehash) and follows
  the change stream from its id, answering nothing until it has caught up. It
  is used only if following from it misses nothing: same build as the
  ``index:built`` marker, no record after its id trimmed from the stream, at
  most SEKAT_REPLICA_SNAPSHOT_MAX_BEHIND changes behind; otherwise the worker
  reads the index (and stores a fresh copy). A worker that starts while
  another one is storing waits for that copy instead of reading too (on one
  Redis, N reads at once take N times as long each). After a rebuild a
  running worker still reads the index itself: it keeps answering meanwhile,
  and a stored copy would answer without the latest changes until caught up.
  Keys are stored rather than
  hashes so the hot path keeps Python's ``hash()`` (no process-stable hash to
  compute per event key).
* and the running workers keep that copy usable (``keep_stored_snapshot``, the
  third round of issue 6), so the full read is not paid again by the worker
  that starts after a bulk import, a replay into an empty Redis or a long run:
  every REFRESH_CHECK_S (15 s) each running worker looks at the stored copy
  (three small reads); when it is missing, of another build, trimmed past, or
  more than half of SEKAT_REPLICA_SNAPSHOT_MAX_BEHIND changes behind (half, so
  that under a steady flow it is replaced before a starting worker would turn
  it down), one worker (the ``writing`` lock) reads the index in a background
  thread and stores what it read, at most once per REFRESH_INTERVAL_S (5 min)
  across the fleet (a key with that expiry, taken when a refresh starts, so a
  flood of reports, or a Redis refusing the write, does not keep Redis
  re-reading the index). It only stores: this replica's arrays are exact
  already (they follow the stream), and installing a second copy would race
  the follower for nothing. The read is paced for the hot path: one
  connection, 1,000 keys a batch (~2.5 ms of Redis at a time), resting as long
  as it worked (REFRESH_SHARE), unless a starting worker is waiting for it
  (``replica:snapshot:waiting``), and it gives up at the next batch when the
  worker stops. After a rebuild under running workers, each re-reads the index
  (``_on_build``) and one of them stores the new build's copy; after a replay
  into an empty Redis (no re-read: the replica followed the replay) the refresh
  stores it. Measured (``load_tests.replica_bench``, case "after a big change",
  README "Third round"): 250,000 changes made while a worker runs, the stored
  copy usable again 24-32 s after the last one at 2 M entries (183 s at 10 M),
  and the worker started then ready in 0.7-1.4 s (4.9 s at 10 M) instead of
  the 7-12 s (54 s) of a read of the index.

Not chosen: more parts or processes to read faster (one Redis core is the
limit on one server; the two parts only keep it busy, and two cores are shared
with Redis itself); a Lua script that scans, reads and extracts the status on
Redis, returning ~40 bytes an entry instead of the value (measured at 10 M:
43-47 s of Redis CPU against ~25 s, Lua's loop costs more than the bytes it
saves); a compact status field written by the index (a second write per change,
and ~0.5-1 GB of Redis memory at 10 M, for a start-up cost the stored snapshot
removes after the first worker); and a process-stable (vectorised) hash so that
hashes could be stored: it would put a new hash on every event key of the hot
path, while rehashing stored keys costs ~2 s per 10 M at start.

On a Redis Cluster (``redis+cluster://``) the snapshot scans every master and
reads with one MGET per hash slot, the stored snapshot's chunks are single
keys spread by slot, and the change stream is one key on one master
(``blocklist.connection``); nothing else changes.

Hashes are Python's own ``hash()`` of the key string (SipHash, per process):
a false match needs a 64-bit collision (~5e-13 per lookup against 10 M
entries) and is in any case re-checked against Redis when Redis answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import numpy as np
import orjson
import redis
from redis.exceptions import RedisError, ResponseError

from sekat.blocklist import replica_snapshot as stored
from sekat.blocklist.connection import (
    AnyRedis,
    AnySyncRedis,
    async_client,
    mget,
    sync_client,
    sync_mget,
    sync_scan_keys,
)
from sekat.blocklist.store import built_key, status_and_expiry
from sekat.records import Entry, Status

log = logging.getLogger(__name__)

ABSENT, REPORTED, CONFIRMED = 0, 1, 2
_CODES = {Status.REPORTED: REPORTED, Status.CONFIRMED: CONFIRMED, Status.REVOKED: ABSENT}
_STATUS = {REPORTED: Status.REPORTED, CONFIRMED: Status.CONFIRMED}
KINDS = ("phone", "account")
SCAN_COUNT = 3_000
RUN_ENTRIES = 1_000_000  # entries sorted at a time while the index is read (_SortedRuns)
SCAN_PARTS = 2  # parts of the SCAN pass read at once (a power of 2; see _scan_index)
SCAN_PARTS_FROM = 65_536  # keys in the database from which the pass is read in parts
REFRESH_SCAN_COUNT = 1_000  # keys a batch when refreshing the stored snapshot in the background
FOLLOW_BLOCK_MS = 1000
FOLLOW_COUNT = 10_000
MERGE_OVERLAY_AT = 200_000
_T = TypeVar("_T")


def _expiry(entry: Entry) -> int:
    return int(datetime.fromisoformat(entry.expires_at).timestamp()) if entry.expires_at else 0


_STATUS_CODES = {"reported": REPORTED, "confirmed": CONFIRMED, "revoked": ABSENT}


def _code(raw: bytes) -> tuple[int, int]:
    """Status code and expiry (epoch seconds, 0 = never) of an index value; not a Sekat entry: absent.

    The same answer as ``blocklist.store.status_and_expiry``, read without copying: the entry's own
    ``status`` is the first ``"status":"`` in the value and ``expires_at`` the first ``"expires_at":"``
    (``Entry.to_json``); anything unusual (an expiry, a value not written by Sekat) takes the full path.
    """
    i = raw.find(b'"status":"') + 10
    if i >= 10:
        if raw.startswith(b'confirmed"', i):
            code = CONFIRMED
        elif raw.startswith(b'reported"', i):
            code = REPORTED
        elif raw.startswith(b'revoked"', i):
            return ABSENT, 0
        else:
            code = -1
        if code > 0:
            k = raw.find(b'"expires_at":"') + 14
            if k < 14 or raw.startswith(b'"', k):  # no expiry, or an empty one
                return code, 0
    found = status_and_expiry(raw)
    if found is None:
        return ABSENT, 0
    status, expires = found
    return _STATUS_CODES[status], int(datetime.fromisoformat(expires).timestamp()) if expires else 0


_EMPTY = (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.uint8), np.empty(0, dtype=np.uint32))


def _code_and_expiry(raw: bytes) -> tuple[int, bytes] | None:
    """``_code``'s fast path with the expiry left as text (b"" = never); None: take ``_code``'s full path.

    Epochs are worked out per batch (``_epochs``): ``fromisoformat`` per entry cost ~1 µs, and with the
    default expiry policy every listed entry has an expiry.
    """
    i = raw.find(b'"status":"') + 10
    if i < 10:
        return None
    if raw.startswith(b'confirmed"', i):
        code = CONFIRMED
    elif raw.startswith(b'reported"', i):
        code = REPORTED
    elif raw.startswith(b'revoked"', i):
        return ABSENT, b""
    else:
        return None
    k = raw.find(b'"expires_at":"') + 14
    if k < 14:
        return code, b""
    end = raw.find(b'"', k)
    return (code, raw[k:end]) if end >= 0 else None


# Byte positions of iso()'s "YYYY-MM-DDTHH:MM:SS.mmmZ" (sekat.records.iso, every expiry Sekat writes)
_ISO_DIGITS = np.array([0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22])
_ISO_MARKS = {4: b"-", 7: b"-", 10: b"T", 13: b":", 16: b":", 19: b".", 23: b"Z"}


def _epochs(texts: list[bytes]) -> np.ndarray:
    """``int(datetime.fromisoformat(text).timestamp())`` of each expiry text (b"": 0), as uint32.

    Texts in ``iso()``'s UTC form (the 24 bytes Sekat writes) are read in one vectorised pass (numpy's
    datetime64 of their first 19 bytes; the milliseconds are dropped, as ``int()`` drops them); any other
    text takes ``fromisoformat`` itself.
    """
    n = len(texts)
    out = np.zeros(n, dtype=np.uint32)
    if n == 0:
        return out
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=n)
    iso = lengths == 24
    if iso.any():
        rows = np.flatnonzero(iso)
        grid = np.frombuffer(b"".join(texts[i] for i in rows), dtype=np.uint8).reshape(len(rows), 24)
        ok = ((grid[:, _ISO_DIGITS] >= 48) & (grid[:, _ISO_DIGITS] <= 57)).all(axis=1) & (grid[:, 0] == ord("2"))
        for at, mark in _ISO_MARKS.items():
            ok &= grid[:, at] == mark[0]
        seconds = np.ascontiguousarray(grid[ok, :19]).view("S19").ravel()
        out[rows[ok]] = seconds.astype("datetime64[s]").astype(np.int64)
        iso[rows[~ok]] = False
    for i in np.flatnonzero(~iso & (lengths > 0)):
        out[i] = int(datetime.fromisoformat(texts[i].decode()).timestamp())
    return out


def _batch_arrays(keys: list[bytes], values: list[bytes | None], strip: int
                  ) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """One scanned batch: its active entries' keys, and their hashes, codes and expiries as arrays."""
    kept, codes, expiries = _batch_entries(keys, values, strip)
    return kept, np.fromiter(map(hash, kept), dtype=np.int64, count=len(kept)), codes, expiries


def _batch_entries(keys: list[bytes], values: list[bytes | None], strip: int
                   ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """One scanned batch: its active entries' keys, with their codes and expiries as arrays."""
    kept: list[str] = []
    codes: list[int] = []
    texts: list[bytes] = []
    odd: list[tuple[int, int]] = []  # (position, epoch) of the entries read by the full parse
    for k, v in zip(keys, values):
        if v is None:
            continue  # deleted between SCAN and MGET
        fast = _code_and_expiry(v)
        if fast is None:  # not as Sekat writes it: the full parse, epoch included
            code, epoch = _code(v)
            if code != ABSENT:
                odd.append((len(kept), epoch))
                kept.append(k[strip:].decode())
                codes.append(code)
                texts.append(b"")
        elif fast[0] != ABSENT:
            kept.append(k[strip:].decode())
            codes.append(fast[0])
            texts.append(fast[1])
    expiries = _epochs(texts)
    for at, epoch in odd:
        expiries[at] = epoch
    return kept, np.array(codes, dtype=np.uint8), expiries


def _stored(step: Callable[..., bool | None], *args: Any) -> bool:
    """One step of storing the snapshot, and whether it went through; a refusal (say Redis at its maxmemory)
    gives up storing, not reading."""
    try:
        return step(*args) is not False
    except ResponseError as exc:
        log.warning("replica snapshot not stored: %s", exc)
        writer = getattr(step, "__self__", None)
        if isinstance(writer, stored.Writer):
            with contextlib.suppress(RedisError, OSError):
                writer.abandon()
        return False


def _prefetched(*sources: Iterator[_T], depth: int = 4) -> Iterator[_T]:
    """The items of ``sources``, each produced by a thread of its own up to ``depth`` items ahead of the
    consumer (several sources: their items interleaved as they come).

    The snapshot's reads wait on Redis (one core) while its parsing and hashing run in Python (the
    other): run back to back, the two costs add up; overlapped, the slower one sets the pace.
    """
    out: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: tuple[bool, Any]) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False  # the consumer has stopped

    def produce(source: Iterator[_T]) -> None:
        try:
            for item in source:
                if not put((True, item)):
                    return
            put((False, None))
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
            put((False, exc))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()  # the consumer stopped early: the source's own threads stop now, not when collected

    producers = [threading.Thread(target=produce, args=(source,), name="replica-snapshot-read", daemon=True)
                 for source in sources]
    for producer in producers:
        producer.start()
    try:
        running = len(producers)
        while running:
            more, item = out.get()
            if not more:
                if item is not None:
                    raise item
                running -= 1
                continue
            yield item
    finally:
        stop.set()
        for producer in producers:
            producer.join()


def _scan_part(client: AnySyncRedis, match: str, heads: tuple[bytes, ...], start: int, mask: int,
               count: int | None = None) -> Iterator[tuple[list[bytes], list[bytes | None]]]:
    """One part of a SCAN pass, each batch's entry keys with their values (one server).

    SCAN's cursor walks the hash table's buckets in the order of their bit-reversed index, so a cursor's
    low bits say which part of the pass it is in, whatever the table's size: the part starting at
    ``start`` (the bit reversal of its number) ends when the cursor leaves those low bits (``mask``) or
    the pass wraps to 0. Each batch's MGET follows its SCAN at once, while the entries it reads are still
    in Redis' CPU cache.
    """
    cursor = start
    while True:
        cursor, keys = client.scan(cursor, match=match, count=count or SCAN_COUNT)
        keys = [k for k in keys if k.startswith(heads)]
        if keys:
            yield keys, client.mget(keys)
        if cursor == 0 or cursor & mask != start:
            return


class _SortedRuns:
    """Batches of (hashes, codes, expiries) gathered into runs sorted by hash, RUN_ENTRIES at a time.

    Sorting runs while the index is read uses the time this thread waits for Redis; installing then
    sorts runs already in order (``argsort(kind="stable")`` merges them: ~0.4 s at 10 M entries instead
    of ~2 s for a sort from scratch).
    """

    def __init__(self) -> None:
        self.runs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._count = 0

    def add(self, hashes: np.ndarray, codes: np.ndarray, expiries: np.ndarray) -> None:
        self._pending.append((hashes, codes, expiries))
        self._count += len(hashes)
        if self._count >= RUN_ENTRIES:
            self._sort()

    def _sort(self) -> None:
        if self._pending:
            hashes, codes, expiries = (np.concatenate([p[i] for p in self._pending]) for i in range(3))
            order = np.argsort(hashes)
            self.runs.append((hashes[order], codes[order], expiries[order]))
        self._pending, self._count = [], 0

    def done(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        self._sort()
        return self.runs


class _Stopped(Exception):
    """The replica is closing: a background refresh gives up."""


@dataclass
class Snapshot:
    """The index read into arrays, the change-stream id to follow from, and the build it came from."""

    hashes: np.ndarray
    codes: np.ndarray
    expiries: np.ndarray
    last_id: str
    build: str | None
    seconds: float
    stored: bool = False  # read from the stored snapshot: follow the stream before answering


@dataclass
class ReplicaStats:
    entries: int = 0
    loaded_in_s: float = 0.0
    changes_applied: int = 0
    last_follow_ok: float = field(default_factory=time.time)
    redis_fallbacks: int = 0
    loaded_from: str = ""  # "index" (a read of it) or "stored snapshot"
    snapshot_refreshes: int = 0  # stored snapshots this replica refreshed in the background


class Replica:
    """One worker's in-memory copy of the blocklist index, kept fresh from the change stream."""

    def __init__(self, url: str, prefix: str = "sekat:", on_fresh: Callable[[], None] | None = None, *,
                 stored_snapshot: bool = True, snapshot_max_behind: int = stored.MAX_BEHIND,
                 snapshot_refresh_s: float = stored.REFRESH_INTERVAL_S,
                 snapshot_check_s: float = stored.REFRESH_CHECK_S) -> None:
        self._url = url
        self._store_snapshots = stored_snapshot
        self._snapshot_max_behind = snapshot_max_behind
        self._snapshot_refresh_s = snapshot_refresh_s
        self._snapshot_check_s = snapshot_check_s
        self._stopping = threading.Event()  # set on close: a background refresh gives up at its next batch
        self._active = 0  # entries of the arrays not marked absent
        self._on_fresh = on_fresh
        self._prefix = prefix
        self._changes = f"{prefix}bl:changes"
        self._hashes = np.empty(0, dtype=np.int64)
        self._status = np.empty(0, dtype=np.uint8)
        self._expires = np.empty(0, dtype=np.uint32)
        self._overlay: dict[str, Entry] = {}
        self._last_id = "0-0"
        self._built_key = built_key(prefix)
        self._build: str | None = None  # the build id this replica's copy was read from / followed
        self._seen_build = False  # whether a build id has been seen (None before: a fresh index)
        self.awaiting_rebuild = False  # the marker went away: deciding on this copy until it is back
        self._skipped_deletions = 0
        self._client: AnyRedis | None = None
        self.ready = asyncio.Event()
        self.stats = ReplicaStats()

    # -- snapshot ---------------------------------------------------------------------------------
    def read_snapshot(self) -> "Snapshot":
        """Read the whole index into new arrays (blocking: run it in a thread); nothing is installed yet.

        With stored snapshots on, it also stores what it read (``blocklist.replica_snapshot``) for the
        next worker to start, unless another process is storing one right now.
        """
        started = time.perf_counter()
        client = sync_client(self._url, socket_timeout=30)
        writer: stored.Writer | None = None
        try:
            build = client.get(self._built_key)
            build_id = build.decode() if build else None
            state = stored.stream_state(client, self._changes)  # the last id and the count, at once
            if state is not None:
                last_id = state.last_id
            else:
                last = client.xrevrange(self._changes, count=1)
                last_id = last[0][0].decode() if last else "0-0"
            if self._store_snapshots:
                try:
                    writer = stored.Writer.start(client, self._prefix, state, build_id)
                except ResponseError as exc:
                    log.warning("replica snapshot not stored: %s", exc)
            runs = _SortedRuns()
            for keys, values in self._scan_index(client):
                kept, *arrays = _batch_arrays(keys, values, len(self._prefix) + len("bl:"))
                runs.add(*arrays)
                if writer is not None and not _stored(writer.add, kept, arrays[1], arrays[2]):
                    writer = None
            parts = runs.done()
            if writer is not None:
                _stored(writer.finish)
                writer = None
        except BaseException:
            if writer is not None:
                with contextlib.suppress(RedisError, OSError):
                    writer.abandon()
            raise
        finally:
            client.close()
        hashes, codes, expiries = (np.concatenate([p[i] for p in parts]) if parts else empty
                                   for i, empty in enumerate(_EMPTY))
        return Snapshot(hashes, codes, expiries, last_id, build_id, time.perf_counter() - started)

    def _stored_or_read(self) -> "Snapshot":
        """The stored snapshot if it will do; else the one another process is storing now, once it is
        stored; else a read of the index (blocking: run it in a thread)."""
        if not self._store_snapshots:
            return self.read_snapshot()
        snap = self.read_stored_snapshot()
        if snap is None and self._wait_for_writer():
            snap = self.read_stored_snapshot()
        return snap if snap is not None else self.read_snapshot()

    def _wait_for_writer(self) -> bool:
        """Wait while another process stores a snapshot; whether there was one to wait for."""
        client = sync_client(self._url, socket_timeout=30)
        try:
            if not stored.Writer.busy(client, self._prefix):
                return False
            log.info("another worker is storing the replica snapshot; waiting for it rather than reading the index")
            deadline = time.monotonic() + stored.WAIT_FOR_WRITER_S
            while stored.Writer.busy(client, self._prefix) and time.monotonic() < deadline:
                with contextlib.suppress(ResponseError):  # a writer refreshing in the background: full speed
                    client.set(stored.waiting_key(self._prefix), "1", px=stored.WAITING_TTL_MS)
                time.sleep(0.25)
            return True
        finally:
            client.close()

    def read_stored_snapshot(self) -> "Snapshot | None":
        """The snapshot another worker stored, when following the stream from it misses nothing; else None.

        Blocking (run it in a thread). The caller installs it and catches up from its ``last_id``.
        """
        started = time.perf_counter()
        client = sync_client(self._url, socket_timeout=30)
        try:
            build = client.get(self._built_key)
            meta = stored.usable(client, self._prefix, self._changes, build.decode() if build else None,
                                 self._snapshot_max_behind)
            if meta is None:
                return None
            parts = [stored.decode_chunk(blob) for blob in _prefetched(stored.read_chunks(client, self._prefix, meta))]
        except ValueError as exc:
            log.warning("stored replica snapshot incomplete (%s); reading the index", exc)
            return None
        finally:
            client.close()
        hashes, codes, expiries = (np.concatenate([p[i] for p in parts]) if parts else empty
                                   for i, empty in enumerate(_EMPTY))
        return Snapshot(hashes, codes, expiries, meta.last_id, meta.build, time.perf_counter() - started,
                        stored=True)

    def _scan_index(self, client: AnySyncRedis) -> Iterator[tuple[list[bytes], list[bytes | None]]]:
        """Every entry key of the index with its value, in batches: one SCAN pass, one MGET per batch.

        One pass over ``{prefix}bl:*`` serves both kinds (a SCAN visits the whole keyspace whatever it
        matches); the change stream and anything else that is not an entry key is left out by its name, so
        every MGET reads string keys only. On a cluster: every primary's keys, one MGET per slot.

        On one server the pass is cut in SCAN_PARTS parts read at once, each by a thread with its own
        connection (``_scan_part``): Redis works on one part's next command while this process receives
        and parses another's reply, instead of waiting for it.
        """
        match = f"{self._prefix}bl:*"
        heads = tuple(f"{self._prefix}bl:{kind}:".encode() for kind in KINDS)
        if isinstance(client, redis.RedisCluster):
            def batches() -> Iterator[tuple[list[bytes], list[bytes | None]]]:
                for keys in sync_scan_keys(client, match, SCAN_COUNT):
                    keys = [k for k in keys if k.startswith(heads)]
                    if keys:
                        yield keys, sync_mget(client, keys)
            yield from _prefetched(batches())
            return
        # A table smaller than the parts would let two parts visit one bucket: one part then.
        parts = SCAN_PARTS if client.dbsize() >= SCAN_PARTS_FROM else 1
        bits = parts.bit_length() - 1
        starts = [int(f"{j:0{bits}b}"[::-1], 2) if bits else 0 for j in range(parts)]
        yield from _prefetched(*(_scan_part(client, match, heads, start, parts - 1) for start in starts))

    # -- the stored snapshot, kept fresh for the next worker to start ------------------------------
    async def keep_stored_snapshot(self) -> None:
        """Refresh the stored snapshot in the background whenever it would not do for a starting worker;
        never returns (cancel it to stop: a refresh under way is then abandoned at its next batch)."""
        if not self._store_snapshots:
            return
        await self.ready.wait()
        try:
            while True:
                await asyncio.sleep(self._snapshot_check_s)
                try:
                    await asyncio.to_thread(self.refresh_stored_snapshot)
                except Exception as exc:  # noqa: BLE001 - a favour to the next worker: never stop this one
                    log.warning("refreshing the stored replica snapshot failed (%s: %s); trying again later",
                                type(exc).__name__, exc)
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
        read is paced (busy at most REFRESH_SHARE of its time, in batches of REFRESH_SCAN_COUNT keys, one
        connection) so that Redis and this process's event loop keep serving the hot path, unless a
        starting worker is waiting for this snapshot. After a rebuild this replica re-reads the index
        (``_on_build``), which stores the new build's snapshot: no refresh until it has taken the build in.
        """
        if not self._store_snapshots:
            return False
        client = sync_client(self._url, socket_timeout=30)
        writer: stored.Writer | None = None
        token = uuid.uuid4().hex
        try:
            raw = client.get(self._built_key)
            if raw is None:
                return False  # a rebuild under way, or a fresh index: nothing to store yet
            build = raw.decode()
            if build != self._build:
                return False  # a rebuild this replica has yet to take in: its own re-read will store it
            _, why = stored.unusable(client, self._prefix, self._changes, build, self._snapshot_max_behind // 2)
            state = stored.stream_state(client, self._changes)
            if not why or state is None or stored.Writer.busy(client, self._prefix):
                return False  # nothing to do, a Redis that cannot keep one (< 7.0), or another writer at it
            if not client.set(stored.refreshed_key(self._prefix), token, nx=True,
                              px=max(1, int(self._snapshot_refresh_s * 1000))):
                return False  # refreshed (or tried) lately
            writer = stored.Writer.start(client, self._prefix, state, build, stored.REFRESH_CHUNK_ENTRIES)
            if writer is None:
                return False
            log.info("stored replica snapshot out of date (%s): refreshing it in the background", why)
            started = time.perf_counter()
            strip = len(self._prefix) + len("bl:")
            rest = 1 / stored.REFRESH_SHARE - 1
            mark = looked = time.perf_counter()
            waited_for = False
            for keys, values in self._scan_background(client):
                if self._stopping.is_set():
                    raise _Stopped
                if not _stored(writer.add, *_batch_entries(keys, values, strip)):
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
            if not _stored(done.finish):
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

    def _scan_background(self, client: AnySyncRedis) -> Iterator[tuple[list[bytes], list[bytes | None]]]:
        """``_scan_index`` for a background refresh: one part, smaller batches, no reading ahead."""
        match = f"{self._prefix}bl:*"
        heads = tuple(f"{self._prefix}bl:{kind}:".encode() for kind in KINDS)
        if isinstance(client, redis.RedisCluster):
            for keys in sync_scan_keys(client, match, REFRESH_SCAN_COUNT):
                keys = [k for k in keys if k.startswith(heads)]
                if keys:
                    yield keys, sync_mget(client, keys)
            return
        yield from _scan_part(client, match, heads, 0, 0, REFRESH_SCAN_COUNT)

    def _install_snapshot(self, snap: "Snapshot") -> None:
        self._overlay = {}
        self._install(snap.hashes, snap.codes, snap.expiries)
        self._last_id = snap.last_id
        self._build = snap.build
        self._seen_build = self._seen_build or snap.build is not None
        self.awaiting_rebuild = self._seen_build and snap.build is None
        self.stats.loaded_in_s = snap.seconds
        self.stats.loaded_from = "stored snapshot" if snap.stored else "index"
        self.stats.last_follow_ok = time.time()
        log.info("blocklist replica loaded from the %s: %d active entries in %.1fs", self.stats.loaded_from,
                 self.stats.entries, self.stats.loaded_in_s)

    def _install(self, hashes: np.ndarray, codes: np.ndarray, expiries: np.ndarray) -> None:
        order = np.argsort(hashes, kind="stable")
        hashes = hashes[order]
        repeated = hashes[1:] == hashes[:-1]
        if repeated.any():
            # A key read twice: SCAN may return a key more than once (a table resized during the pass, or
            # the batch that ends one part of it running into the next part). The read seen first is kept;
            # a change between the two reads is replayed from the change stream anyway.
            order = order[np.concatenate(([True], ~repeated))]
            hashes = hashes[np.concatenate(([True], ~repeated))]
        self._hashes, self._status, self._expires = hashes, codes[order], expiries[order]
        self._active = int(np.count_nonzero(self._status))
        self.stats.entries = self._active + len(self._overlay)

    async def start(self) -> None:
        """Load the replica and set ``ready``: from the stored snapshot and the changes since, or by a read."""
        snap = await asyncio.to_thread(self._stored_or_read)
        self._install_snapshot(snap)
        self._client = async_client(self._url, socket_timeout=FOLLOW_BLOCK_MS / 1000 + 5,
                                    socket_connect_timeout=2.0)
        if snap.stored:
            # Not ready until every change since the stored snapshot is applied: a stored snapshot can be
            # minutes old, and an answer from it alone could miss a listing made since.
            behind = time.perf_counter()
            applied = self.stats.changes_applied
            while await self._follow_once(block=None) == FOLLOW_COUNT:
                pass
            self.stats.loaded_in_s += time.perf_counter() - behind
            log.info("blocklist replica caught up from the stored snapshot: %d changes, ready in %.1fs",
                     self.stats.changes_applied - applied, self.stats.loaded_in_s)
        self.ready.set()

    # -- follow -----------------------------------------------------------------------------------
    async def follow(self) -> None:
        """Apply changes as they are announced; never returns (cancel it to stop)."""
        await self.ready.wait()
        backoff = 0.05
        while True:
            try:
                await self._follow_once(block=FOLLOW_BLOCK_MS)
                backoff = 0.05
                if len(self._overlay) > MERGE_OVERLAY_AT:
                    await asyncio.to_thread(self._merge_overlay)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("blocklist change stream unavailable (%s); deciding on the replica", type(exc).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    async def _follow_once(self, block: int | None) -> int:
        """Read and apply the next change-stream records (waiting up to ``block`` ms); how many there were."""
        assert self._client is not None
        reply = await self._client.xread({self._changes: self._last_id}, count=FOLLOW_COUNT, block=block)
        records = reply[0][1] if reply else []
        keys = list(dict.fromkeys(fields[b"key"].decode() for _, fields in records))
        # The marker travels with the changed entries: one round trip says both what changed and
        # whether an absent entry means "deleted" or "not replayed yet".
        values = await mget(self._client, [self._built_key, *(f"{self._prefix}bl:{k}" for k in keys)])
        build = values[0].decode() if values[0] is not None else None
        skipped = 0
        for key, raw in zip(keys, values[1:]):
            if raw is None and build is None:
                skipped += 1  # wiped or not replayed yet: keep this replica's copy
                continue
            self.apply(key, Entry.from_json(orjson.loads(raw)) if raw else None)
        if records:
            self._last_id = records[-1][0].decode()
        await self._on_build(build, skipped)
        if not self.awaiting_rebuild:
            self.stats.last_follow_ok = time.time()
            if self._on_fresh is not None:
                self._on_fresh()
        if len(self._overlay) > MERGE_OVERLAY_AT and not self.ready.is_set():
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
        # A new build: the old Redis (and the change stream followed) may be gone; start again from a
        # snapshot of the rebuilt index. Lookups keep using the current copy until the new one is installed.
        # (A read, not a stored snapshot: lookups go on while it is installed, and one installed from a
        # stored snapshot would answer without the changes since it until caught up.)
        snap = await asyncio.to_thread(self.read_snapshot)
        self._install_snapshot(snap)
        log.info("blocklist index rebuilt (build %s): replica re-read %d entries", snap.build, self.stats.entries)

    def apply(self, key: str, entry: Entry | None) -> None:
        """One changed key: update in place when the arrays hold it, else keep it in the overlay."""
        self.stats.changes_applied += 1
        i = self._index(hash(key))
        if i >= 0:
            self._active -= int(self._status[i] != ABSENT)
            if entry is None:
                self._status[i] = ABSENT
            else:
                self._status[i] = _CODES[entry.status]
                self._expires[i] = _expiry(entry)
            self._active += int(self._status[i] != ABSENT)
        if entry is not None and entry.status is not Status.REVOKED:
            self._overlay[key] = entry
        else:
            self._overlay.pop(key, None)
        self.stats.entries = self._active + len(self._overlay)

    def _merge_overlay(self) -> None:
        overlay = dict(self._overlay)
        keep = self._status != ABSENT
        hashes = np.concatenate([self._hashes[keep], np.array([hash(k) for k in overlay], dtype=np.int64)])
        codes = np.concatenate([self._status[keep], np.array([_CODES[e.status] for e in overlay.values()],
                                                             dtype=np.uint8)])
        exp = np.concatenate([self._expires[keep], np.array([_expiry(e) for e in overlay.values()], dtype=np.uint32)])
        # Keys merged now are dropped from the overlay; newer changes to them are already in place.
        for k in overlay:
            self._overlay.pop(k, None)
        self._install(hashes, codes, exp)

    def _index(self, h: int) -> int:
        i = int(np.searchsorted(self._hashes, h))
        return i if i < len(self._hashes) and self._hashes[i] == h else -1

    # -- lookup -----------------------------------------------------------------------------------
    def candidates(self, keys: Iterable[str], now: float) -> dict[str, Entry]:
        """Keys that are active on the blocklist, as entries (overlay: full; arrays: status only)."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, Entry] = {}
        if len(self._hashes) and keys:
            hs = np.fromiter((hash(k) for k in keys), dtype=np.int64, count=len(keys))
            idx = np.searchsorted(self._hashes, hs)
            np.minimum(idx, len(self._hashes) - 1, out=idx)
            hit = (self._hashes[idx] == hs) & (self._status[idx] != ABSENT)
            for j in np.flatnonzero(hit):
                i = idx[j]
                exp = int(self._expires[i])
                if exp and exp <= now:
                    continue
                found[keys[j]] = Entry(key=keys[j], status=_STATUS[int(self._status[i])], source="",
                                       reason="", expires_at="")
        if self._overlay:
            for k in keys:
                entry = self._overlay.get(k)
                if entry is not None:
                    found[k] = entry
        return found

    async def lookup_many(self, keys: Iterable[str]) -> dict[str, Entry]:
        """Same answer as ``BlocklistStore.lookup_many`` for deciding, without a round trip for misses."""
        if not self.ready.is_set():
            await self.ready.wait()
        hits = self.candidates(keys, time.time())
        thin = [k for k, e in hits.items() if not e.source]
        if thin and self._client is not None:
            try:
                values = await mget(self._client, [self._built_key, *(f"{self._prefix}bl:{k}" for k in thin)])
            except (RedisError, OSError):
                self.stats.redis_fallbacks += 1
                self._own_answer(hits, thin, "blocklist index unreachable")
            else:
                built = values[0] is not None or not self._seen_build
                for k, raw in zip(thin, values[1:]):
                    if raw is not None:
                        hits[k] = Entry.from_json(orjson.loads(raw))
                    elif built:
                        hits.pop(k)  # gone from a complete index: no longer listed
                    else:
                        self.stats.redis_fallbacks += 1
                        self._own_answer(hits, [k], "blocklist index being rebuilt")
        return hits

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
        """Seconds since the change stream last answered over a built index (0 while healthy and blocking)."""
        return max(0.0, time.time() - self.stats.last_follow_ok - FOLLOW_BLOCK_MS / 1000)

    async def close(self) -> None:
        self._stopping.set()
        if self._client is not None:
            await self._client.aclose()
