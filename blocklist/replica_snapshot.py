"""The replica's snapshot kept in Redis: a starting worker loads a few blobs instead of reading the whole index.

A read of the whole index costs Redis work on every entry (``blocklist.index_scan``). The worker that does it
stores what it read here; the next worker to start loads that (a few GETs, then a hash per key) and catches up
from the change stream, so a fleet pays the full read once, not once per worker:

    {prefix}replica:snapshot            JSON: which chunks, the change-stream id the snapshot is
                                        as of (``last_id``), the stream's ``entries-added`` then,
                                        the build id, the entry count, when it was written
    {prefix}replica:snapshot:{gen}:{i}  one chunk: up to CHUNK_ENTRIES entries (revoked ones too) as
                                        ``SKR2``, n and the keys' length in bytes (uint32 each),
                                        n codes (uint8: status and kind, index_scan), n expiries (uint32 epoch s), then the
                                        n keys (``kind:value``) joined by newlines (a normalised
                                        identifier has none; checked both ways)
    {prefix}replica:snapshot:writing    lock (with an expiry, renewed while it reads): one writer
                                        at a time; a worker that starts meanwhile waits for its
                                        snapshot instead of reading the index too (on one Redis,
                                        N reads at once take N times as long each)
    {prefix}replica:snapshot:refreshed  a running worker refreshed the snapshot in the background less
                                        than REFRESH_INTERVAL_S ago (an expiry; fleet-wide rate limit)
    {prefix}replica:snapshot:waiting    a starting worker is waiting for the snapshot being written (a
                                        short expiry, renewed while it waits): a background refresh stops
                                        pacing itself and reads at full speed

It stores keys, not hashes: the replica's hashes are Python's per-process ``hash()``, cheap on the hot
path, and the loader recomputes them rather than the hot path paying for a process-stable hash.

A stored snapshot is used only when it is exactly as good as a fresh read followed by the stream:

* its build id is the index's current ``index:built`` marker (absent marker, i.e. a rebuild under way,
  or another build: read the index instead);
* nothing after its ``last_id`` has been trimmed from the change stream: it records the stream's
  ``entries-added`` as of ``last_id`` (one XINFO STREAM gives both, Redis >= 7.0; an older Redis never
  stores or uses a snapshot), and the records removed since (``entries-added`` - ``length``) must not
  exceed it, so following from ``last_id`` misses no change;
* at most ``max_behind`` changes were added since (catching up re-reads each changed key with a full
  parse; past that, a fresh read is about as quick and writes a fresh snapshot);
* every chunk is present and well-formed.

Chunks are written with an expiry and made permanent only once all are written, then the pointer is
switched to them (one SET): a reader sees an old complete snapshot or a new complete one, and a writer
that dies leaves chunks that expire. The previous generation's chunks expire a few minutes after the
switch, so a reader part-way through them finishes (or, if it is slower than that, falls back to a
read of the index). Storing is a favour to the next worker: a Redis that refuses the writes (say at its
maxmemory) stops the storing, never the worker's own read.

Kept fresh by the running workers (``Replica.keep_stored_snapshot``): when the stored snapshot would not
do for a starting worker, or soon would not (missing, another build, trimmed past, or more than half of
``max_behind`` changes behind), one running worker reads the index in the background and stores a fresh
one, at most once per REFRESH_INTERVAL_S across the fleet, so the worker that starts after a bulk import,
a rebuild or a long run loads a stored snapshot instead of reading the whole index.
"""

from __future__ import annotations

import contextlib
import logging
import struct
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import orjson
from redis.exceptions import RedisError, ResponseError

from sekat.blocklist.connection import SCAN_TIMEOUT_MS, AnySyncRedis, sync_client
from sekat.blocklist.readahead import prefetched
from sekat.blocklist.store import built_key

log = logging.getLogger(__name__)

CHUNK_ENTRIES = 500_000
# A background refresh writes smaller chunks: encoding one holds the GIL, time the running worker's event loop
# waits (docs/replica.md); a loader gets 10 times as many GETs, still few.
REFRESH_CHUNK_ENTRIES = 50_000
MAGIC = b"SKR2"  # SKR1 chunks lack revoked entries and the kind bit: not whole for this version, so re-read
_HEAD = struct.Struct("<4sII")
PENDING_TTL_S = 3600  # chunks of a snapshot being written (a writer that dies leaves nothing for long)
RETIRE_TTL_S = 300  # the previous generation's chunks, once the pointer has moved on
LOCK_TTL_MS = 30_000  # renewed while the writer reads: a writer that dies holds nobody up for long
WAIT_FOR_WRITER_S = 600.0  # the longest a starting worker waits for another one's snapshot
MAX_BEHIND = 200_000
REFRESH_INTERVAL_S = 300.0  # at most one background refresh this often, fleet-wide (a read of the index)
REFRESH_CHECK_S = 15.0  # how often each running worker looks at the stored snapshot (three small reads)
REFRESH_SHARE = 0.5  # a background refresh rests between batches: busy at most this share of its time
WAITING_TTL_MS = 5_000  # a starting worker's "waiting for the snapshot" flag, renewed while it waits

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]  # key hashes (int64), codes (uint8), expiries (uint32)


@dataclass
class Snapshot:
    """A copy of the index for a replica to install: the entries as arrays (key hashes of this process,
    codes (``index_scan``), expiries in epoch seconds, 0 = never; not sorted yet), the change-stream id it is as of
    and the build it came from."""

    hashes: np.ndarray
    codes: np.ndarray
    expiries: np.ndarray
    last_id: str
    build: str | None
    seconds: float  # how long it took to get
    stored: bool = False  # loaded from the stored snapshot: follow the stream before answering

    @classmethod
    def of(cls, parts: Sequence[Arrays], last_id: str, build: str | None, seconds: float,
           stored: bool = False) -> "Snapshot":
        """A snapshot of ``parts`` (arrays each) joined."""
        empty = (np.empty(0, np.int64), np.empty(0, np.uint8), np.empty(0, np.uint32))
        hashes, codes, expiries = (np.concatenate([p[i] for p in parts]) if parts else empty[i] for i in range(3))
        return cls(hashes, codes, expiries, last_id, build, seconds, stored)


class CopyWriter(Protocol):
    """One copy of a snapshot being written elsewhere, chunk by chunk (``replica_disk.DiskWriter``)."""

    def add(self, blob: bytes) -> None: ...

    def finish(self, meta: Meta) -> bool: ...

    def abandon(self) -> None: ...


class Copies(Protocol):
    """Where the chunks loaded or stored are copied too: the worker's disk copy (``replica_disk.DiskCopy``)."""

    def writer(self, gen: str | None = None) -> CopyWriter | None: ...


def refreshed_key(prefix: str) -> str:
    return f"{prefix}replica:snapshot:refreshed"


def writing_key(prefix: str) -> str:
    return f"{prefix}replica:snapshot:writing"


def waiting_key(prefix: str) -> str:
    return f"{prefix}replica:snapshot:waiting"


def meta_key(prefix: str) -> str:
    return f"{prefix}replica:snapshot"


def chunk_key(prefix: str, gen: str, i: int) -> str:
    return f"{prefix}replica:snapshot:{gen}:{i}"


def encode_chunk(keys: list[str], codes: np.ndarray, expiries: np.ndarray) -> bytes:
    return encode_text_chunk("\n".join(keys).encode(), len(keys), codes, expiries)


def encode_text_chunk(text: bytes, n: int, codes: np.ndarray, expiries: np.ndarray) -> bytes:
    """A chunk of ``n`` entries whose keys are ``text`` (joined by newlines)."""
    if n != len(codes) or n != len(expiries) or text.count(b"\n") != max(n - 1, 0):
        raise ValueError("a key holds a newline (or the arrays disagree): not storable")
    return b"".join((_HEAD.pack(MAGIC, n, len(text)), codes.astype(np.uint8).tobytes(),
                     expiries.astype("<u4").tobytes(), text))


def decode_chunk(blob: bytes) -> Arrays:
    """A chunk as (hashes, codes, expiries) of this process; ValueError when it is not a whole chunk."""
    if len(blob) < _HEAD.size:
        raise ValueError("short chunk")
    magic, n, text = _HEAD.unpack_from(blob)
    keys_at = _HEAD.size + 5 * n
    if magic != MAGIC or len(blob) != keys_at + text:
        raise ValueError("not a whole replica snapshot chunk")
    codes = np.frombuffer(blob, dtype=np.uint8, count=n, offset=_HEAD.size).copy()
    expiries = np.frombuffer(blob, dtype="<u4", count=n, offset=_HEAD.size + n).astype(np.uint32)
    keys = blob[keys_at:].decode().split("\n") if n else []
    if len(keys) != n:
        raise ValueError(f"chunk says {n} entries, holds {len(keys)} keys")
    return np.fromiter(map(hash, keys), dtype=np.int64, count=n), codes, expiries


@dataclass
class Meta:
    gen: str
    chunks: int
    entries: int
    last_id: str
    added: int
    build: str
    written_at: float


def _id(stream_id: str | bytes) -> tuple[int, int]:
    text = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


@dataclass(frozen=True)
class StreamState:
    added: int  # records ever added (XINFO STREAM entries-added, Redis >= 7.0)
    length: int  # records still in it
    last_id: str  # the last id it generated: following from it misses nothing before it


def stream_state(client: AnySyncRedis, stream: str) -> StreamState | None:
    """The change stream's counters; None on a Redis that does not keep them (before 7.0)."""
    try:
        info = client.xinfo_stream(stream)
    except ResponseError as exc:
        if "no such key" in str(exc).lower():
            return StreamState(0, 0, "0-0")
        raise
    if "entries-added" not in info:
        return None
    last = info["last-generated-id"]
    return StreamState(int(info["entries-added"]), int(info["length"]),
                       last.decode() if isinstance(last, bytes) else str(last))


def unusable(client: AnySyncRedis, prefix: str, stream: str, build: str | None, max_behind: int
             ) -> tuple[Meta | None, str]:
    """The stored snapshot's description, and why following the stream from it could miss a change ("": it
    could not; the description is None when there is no readable snapshot)."""
    raw = client.get(meta_key(prefix))
    if raw is None:
        return None, "none is stored"
    if build is None:
        return None, "the index is not built"
    try:
        meta = Meta(**orjson.loads(raw))
    except (ValueError, TypeError) as exc:
        return None, f"it is unreadable ({exc})"
    return meta, gap(meta.build, meta.added, meta.last_id, build, stream_state(client, stream), max_behind)


def gap(taken_build: str, taken_added: int, taken_id: str, build: str, state: StreamState | None,
        max_behind: int) -> str:
    """Why following the change stream from a copy taken at (build, entries-added, id) could miss a change,
    given the index's build and the stream's state now ("": it could not)."""
    if taken_build != build:
        return f"it is of build {taken_build}, the index of {build}"
    if state is None:
        return "this Redis does not count stream records (needs Redis >= 7.0)"
    if state.added < taken_added or _id(state.last_id) < _id(taken_id):
        return "the change stream is not the one it was taken from"
    if state.added - state.length > taken_added:
        # trimming removes the oldest records: more removed than had been added when the snapshot was
        # taken means a record it needs is gone (XDEL'd records count too: erring on the safe side)
        return "the change stream has been trimmed past it"
    if state.added - taken_added > max_behind:
        return f"{state.added - taken_added} changes behind (limit {max_behind})"
    return ""


def usable(client: AnySyncRedis, prefix: str, stream: str, build: str | None, max_behind: int) -> Meta | None:
    """The stored snapshot's description when following the stream from it misses nothing, else None."""
    meta, why = unusable(client, prefix, stream, build, max_behind)
    if why:
        if meta is not None or "unreadable" in why:
            log.info("stored replica snapshot not used: %s; reading the index", why)
        return None
    return meta


def read_chunks(client: AnySyncRedis, prefix: str, meta: Meta) -> Iterator[bytes]:
    """The chunks' bytes in order; ValueError when one is gone."""
    for i in range(meta.chunks):
        blob = client.get(chunk_key(prefix, meta.gen, i))
        if blob is None:
            raise ValueError(f"chunk {i} of {meta.chunks} is gone")
        yield blob


class Writer:
    """Writes one snapshot while the index is read: chunk by chunk, then the pointer (see the module doc)."""

    def __init__(self, client: AnySyncRedis, prefix: str, last_id: str, added: int, build: str,
                 chunk_entries: int = CHUNK_ENTRIES, disk: Copies | None = None) -> None:
        self._client = client
        # the same chunks go to this worker's disk copy, made current once the stored snapshot is
        self._disk: CopyWriter | None = disk.writer() if disk is not None else None
        self._chunk_entries = chunk_entries
        self._prefix = prefix
        self._gen = uuid.uuid4().hex[:12]
        self._token = self._gen
        self._last_id, self._added, self._build = last_id, added, build
        self._texts: list[bytes] = []  # each batch's keys joined by newlines
        self._codes: list[np.ndarray] = []
        self._expiries: list[np.ndarray] = []
        self._pending = 0
        self._chunks = 0
        self._entries = 0
        self._renewed = time.monotonic()

    @classmethod
    def start(cls, client: AnySyncRedis, prefix: str, state: StreamState | None, build: str | None,
              chunk_entries: int = CHUNK_ENTRIES, disk: Copies | None = None) -> "Writer | None":
        """A writer when this process may write (a built index, a Redis >= 7.0, nobody else writing).

        ``state`` is the change stream's, read before the index is: the snapshot is as of its last id. With
        ``disk``, the chunks are written to that disk copy too.
        """
        if build is None or state is None:
            return None
        writer = cls(client, prefix, state.last_id, state.added, build, chunk_entries, disk)
        if not client.set(writing_key(prefix), writer._token, nx=True, px=LOCK_TTL_MS):
            writer._drop_disk()
            return None
        return writer

    def add(self, keys: list[str], codes: np.ndarray, expiries: np.ndarray) -> bool:
        """Take one batch of entries (a chunk is written whenever enough are pending); whether storing goes
        on (False: Redis refused a write, and what was written is dropped)."""
        return self.add_text("\n".join(keys).encode(), len(keys), codes, expiries)

    def add_text(self, text: bytes, n: int, codes: np.ndarray, expiries: np.ndarray) -> bool:
        """``add`` of ``n`` entries whose keys are ``text`` (joined by newlines, as ``index_scan.Columns``)."""
        try:
            if time.monotonic() - self._renewed > LOCK_TTL_MS / 3000:
                if self._client.get(writing_key(self._prefix)) == self._token.encode():
                    self._client.pexpire(writing_key(self._prefix), LOCK_TTL_MS)
                self._renewed = time.monotonic()
            if n:
                self._texts.append(text)
                self._codes.append(codes)
                self._expiries.append(expiries)
            self._pending += n
            if self._pending >= self._chunk_entries:
                self._flush()
        except ResponseError as exc:
            return self._refused(exc)
        return True

    def _flush(self) -> None:
        if not self._pending and self._chunks:
            return
        blob = encode_text_chunk(b"\n".join(self._texts), self._pending,
                                 np.concatenate(self._codes) if self._codes else np.empty(0, np.uint8),
                                 np.concatenate(self._expiries) if self._expiries else np.empty(0, np.uint32))
        self._client.set(chunk_key(self._prefix, self._gen, self._chunks), blob, ex=PENDING_TTL_S)
        if self._disk is not None:
            self._disk.add(blob)
        self._chunks += 1
        self._entries += self._pending
        self._texts, self._codes, self._expiries, self._pending = [], [], [], 0

    def finish(self) -> bool:
        """Make the chunks permanent and point readers at them; retire the previous generation.

        Whether it was stored (not when the index was rebuilt during the read, nor when Redis refused a write)."""
        try:
            self._flush()
            if self._client.get(built_key(self._prefix)) != self._build.encode():
                # a rebuild started (or ended) during the read: what was read may mix two indexes
                log.info("index rebuilt while it was read: replica snapshot not stored")
                self.abandon()
                return False
            for i in range(self._chunks):
                self._client.persist(chunk_key(self._prefix, self._gen, i))
            old = self._client.get(meta_key(self._prefix))
            meta = Meta(self._gen, self._chunks, self._entries, self._last_id, self._added, self._build, time.time())
            self._client.set(meta_key(self._prefix), orjson.dumps(meta.__dict__))
            if self._disk is not None:
                self._disk.finish(meta)
                self._disk = None
            if old is not None:
                try:
                    previous = Meta(**orjson.loads(old))
                    for i in range(previous.chunks):
                        self._client.expire(chunk_key(self._prefix, previous.gen, i), RETIRE_TTL_S)
                except (ValueError, TypeError):
                    pass
            log.info("stored the replica snapshot: %d entries in %d chunks", self._entries, self._chunks)
            return True
        except ResponseError as exc:
            return self._refused(exc)
        finally:
            self._drop_disk()
            self._unlock()

    def abandon(self) -> None:
        """Drop what was written (the read failed): the chunks go, the pointer stays where it was."""
        self._drop_disk()
        try:
            for i in range(self._chunks):
                self._client.delete(chunk_key(self._prefix, self._gen, i))
        finally:
            self._unlock()

    def _refused(self, exc: ResponseError) -> bool:
        """Redis refused a write (say at its maxmemory): give up storing, drop what was written."""
        log.warning("replica snapshot not stored: %s", exc)
        with contextlib.suppress(RedisError, OSError):
            self.abandon()
        return False

    def _drop_disk(self) -> None:
        if self._disk is not None:
            self._disk.abandon()
            self._disk = None

    @staticmethod
    def busy(client: AnySyncRedis, prefix: str) -> bool:
        """Whether another process is storing a snapshot now."""
        return bool(client.exists(writing_key(prefix)))

    def _unlock(self) -> None:
        if self._client.get(writing_key(self._prefix)) == self._token.encode():
            self._client.delete(writing_key(self._prefix))


def wait_for_writer(url: str, prefix: str) -> bool:
    """Wait while another process stores a snapshot (blocking); whether there was one to wait for.

    While it waits it says so (``waiting_key``): a writer refreshing in the background then reads at full speed.
    """
    client = sync_client(url, SCAN_TIMEOUT_MS)
    try:
        if not Writer.busy(client, prefix):
            return False
        log.info("another worker is storing the replica snapshot; waiting for it rather than reading the index")
        deadline = time.monotonic() + WAIT_FOR_WRITER_S
        while Writer.busy(client, prefix) and time.monotonic() < deadline:
            with contextlib.suppress(ResponseError):
                client.set(waiting_key(prefix), "1", px=WAITING_TTL_MS)
            time.sleep(0.25)
        return True
    finally:
        client.close()


def load(url: str, prefix: str, max_behind: int, disk: Copies | None = None) -> Snapshot | None:
    """The stored snapshot, when following the change stream from it misses nothing; else None.

    Blocking (run it in a thread). The caller installs it and catches up from its ``last_id``. With ``disk``,
    the chunks are written to that disk copy too (unless it holds this snapshot already).
    """
    started = time.perf_counter()
    client = sync_client(url, SCAN_TIMEOUT_MS)
    writer: CopyWriter | None = None
    try:
        build = client.get(built_key(prefix))
        meta = usable(client, prefix, f"{prefix}bl:changes", build.decode() if build else None, max_behind)
        if meta is None:
            return None
        writer = disk.writer(meta.gen) if disk is not None else None
        parts = []
        for blob in prefetched(read_chunks(client, prefix, meta)):
            parts.append(decode_chunk(blob))
            if writer is not None:
                writer.add(blob)
    except ValueError as exc:
        log.warning("stored replica snapshot incomplete (%s); reading the index", exc)
        if writer is not None:
            writer.abandon()
        return None
    except BaseException:
        if writer is not None:
            writer.abandon()
        raise
    finally:
        client.close()
    if writer is not None:
        writer.finish(meta)
    return Snapshot.of(parts, meta.last_id, meta.build, time.perf_counter() - started, stored=True)

