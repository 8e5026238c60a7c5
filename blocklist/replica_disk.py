"""The replica's copy on local disk: a worker started while Redis does not answer screens from it.

The stored snapshot (``blocklist.replica_snapshot``) lives in Redis, so a worker that starts while Redis is
down cannot load it. Each worker therefore keeps the same chunks in a file of its own, written whenever the
replica loads them from Redis, stores them there, or sees that another worker stored a newer one:

    {directory}/{prefix}replica.skd     ``SKRD`` and the format version (uint32), then each chunk as its
                                        length (uint32) and its bytes (the stored snapshot's ``SKR2``
                                        chunks as they are), then the description (JSON: change-stream
                                        id, ``entries-added``, build, when the snapshot was taken, entry
                                        count, generation), its length (uint32), and a CRC-32 of
                                        everything before it (uint32)

Written to a temporary file in the same directory (mode 0600: it holds personal identifiers), flushed to
disk, then renamed over the old one: a reader sees the old file or the new one, never half of one. A file
that is short, of another format version, fails its checksum, is not owned by this user, is writable by
others, or is older than ``max_age_s`` is refused with a log line naming why; nothing raises out of here
for a bad file. Writing is a favour to the next start: a full disk or an unwritable directory logs and stops
the writing, never the worker.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import struct
import tempfile
import time
import zlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

import orjson

from sekat.blocklist import replica_snapshot as stored

log = logging.getLogger(__name__)

MAGIC = b"SKRD"
VERSION = 2  # 2: SKR2 chunks (revoked entries, kind bits)
MAX_AGE_S = 86_400  # a copy older than this is not screened from: it may miss a day of reports and revocations
FILE_MODE = 0o600
DIR_MODE = 0o700
_HEAD = struct.Struct("<4sI")
_U32 = struct.Struct("<I")
_TAIL = struct.Struct("<II")  # description length, CRC-32


class Refused(ValueError):
    """A file that is not a whole, current disk copy of this format (the message says why)."""


@dataclass(frozen=True)
class DiskMeta:
    """What a disk copy is: the stored snapshot it copies, and when that snapshot was taken."""

    gen: str  # the stored snapshot's generation (its chunk keys in Redis)
    last_id: str  # the change-stream id it is as of: following from there misses nothing before it
    added: int  # the stream's entries-added as of last_id (says whether it was trimmed past since)
    build: str  # the index build it was read from
    as_of: float  # epoch seconds: when the snapshot was stored (what it may miss is younger than that)
    entries: int

    @classmethod
    def of(cls, meta: stored.Meta) -> DiskMeta:
        return cls(meta.gen, meta.last_id, meta.added, meta.build, meta.written_at, meta.entries)


def file_name(prefix: str) -> str:
    """The file of one Redis prefix's index (two deployments may share a data directory)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", prefix) + "replica.skd"


def encode(meta: DiskMeta, chunks: Iterable[bytes]) -> bytes:
    """A whole disk copy as bytes (the writer streams the same layout)."""
    body = bytearray(_HEAD.pack(MAGIC, VERSION))
    for blob in chunks:
        body += _U32.pack(len(blob)) + blob
    described = orjson.dumps(asdict(meta))
    body += described
    body += _TAIL.pack(len(described), zlib.crc32(body + _U32.pack(len(described))))
    return bytes(body)


def decode(data: bytes) -> tuple[DiskMeta, list[bytes]]:
    """The description and the chunks of a disk copy; Refused when it is not a whole one of this version."""
    if len(data) < _HEAD.size + _TAIL.size:
        raise Refused(f"it is too short ({len(data)} bytes)")
    magic, version = _HEAD.unpack_from(data)
    if magic != MAGIC:
        raise Refused("it is not a replica disk copy")
    if version != VERSION:
        raise Refused(f"it is of format version {version}, this worker reads {VERSION}")
    described, crc = _TAIL.unpack_from(data, len(data) - _TAIL.size)
    if zlib.crc32(memoryview(data)[:len(data) - 4]) != crc:
        raise Refused("its checksum does not match (truncated or damaged)")
    end = len(data) - _TAIL.size - described
    if end < _HEAD.size:
        raise Refused("its description overruns it")
    try:
        meta = DiskMeta(**orjson.loads(data[end:end + described]))
    except (ValueError, TypeError) as exc:
        raise Refused(f"its description is unreadable ({exc})") from None
    chunks: list[bytes] = []
    at = _HEAD.size
    while at < end:
        if at + _U32.size > end:
            raise Refused("a chunk's length is cut off")
        (n,) = _U32.unpack_from(data, at)
        at += _U32.size
        if at + n > end:
            raise Refused("a chunk overruns the file")
        chunks.append(data[at:at + n])
        at += n
    return meta, chunks


class DiskWriter:
    """One disk copy being written, chunk by chunk, into a temporary file renamed into place by ``finish``.

    Any OSError (a full disk, a directory that cannot be written) is logged once and ends the writing; the
    temporary file is removed. Nothing raises to the caller.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._tmp: Path | None = None
        self._file: IO[bytes] | None = None
        self._crc = 0
        try:
            path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=path.parent, prefix=".replica-", suffix=".tmp")  # mode 0600
            self._tmp = Path(name)
            self._file = os.fdopen(fd, "wb")
            self._write(_HEAD.pack(MAGIC, VERSION))
        except OSError as exc:
            self._failed(exc)

    def _write(self, data: bytes) -> None:
        assert self._file is not None
        self._file.write(data)
        self._crc = zlib.crc32(data, self._crc)

    def add(self, blob: bytes) -> None:
        """One stored-snapshot chunk, as it is."""
        if self._file is None:
            return
        try:
            self._write(_U32.pack(len(blob)))
            self._write(blob)
        except OSError as exc:
            self._failed(exc)

    def finish(self, meta: stored.Meta) -> bool:
        """Describe (as the stored snapshot ``meta``), flush and rename into place; whether it was written."""
        if self._file is None:
            return False
        copied = DiskMeta.of(meta)
        try:
            described = orjson.dumps(asdict(copied))
            self._write(described)
            self._write(_U32.pack(len(described)))
            self._file.write(_U32.pack(self._crc))
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
            assert self._tmp is not None
            os.replace(self._tmp, self._path)
            self._tmp = None
            with contextlib.suppress(OSError):  # the rename itself, on file systems that need it
                fd = os.open(self._path.parent, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        except OSError as exc:
            self._failed(exc)
            return False
        log.info("wrote the replica's disk copy: %d entries (build %s) to %s", copied.entries, copied.build,
                 self._path)
        return True

    def abandon(self) -> None:
        """Drop what was written; the previous copy stays."""
        self._close()

    def _failed(self, exc: OSError) -> None:
        log.warning("replica disk copy not written to %s: %s", self._path, exc)
        self._close()

    def _close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                self._tmp.unlink()
            self._tmp = None


class DiskCopy:
    """Where one worker keeps its disk copy, and how old a copy it will still screen from."""

    def __init__(self, directory: Path | str, prefix: str, max_age_s: float = MAX_AGE_S) -> None:
        self.path = Path(directory) / file_name(prefix)
        self.max_age_s = max_age_s

    def current_gen(self) -> str | None:
        """The generation of the copy on disk, read from its description only (None: none, or unreadable)."""
        try:
            with open(self.path, "rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                if size < _HEAD.size + _TAIL.size:
                    return None
                fh.seek(size - _TAIL.size)
                described, _ = _TAIL.unpack(fh.read(_TAIL.size))
                if described > size - _HEAD.size - _TAIL.size:
                    return None
                fh.seek(size - _TAIL.size - described)
                return str(orjson.loads(fh.read(described))["gen"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def writer(self, gen: str | None = None) -> DiskWriter | None:
        """A writer for a new copy; None when the copy on disk is already of generation ``gen``."""
        if gen is not None and self.current_gen() == gen:
            return None
        return DiskWriter(self.path)

    def write(self, meta: stored.Meta, chunks: Iterable[bytes]) -> bool:
        """Write a whole copy (unless the one on disk is of the same generation); whether one was written."""
        writer = self.writer(meta.gen)
        if writer is None:
            return False
        for blob in chunks:
            writer.add(blob)
        return writer.finish(meta)

    def read(self, now: float | None = None) -> tuple[DiskMeta, list[bytes]] | None:
        """The copy's description and chunks when it may be screened from; None (with a log line) otherwise."""
        now = time.time() if now is None else now
        try:
            with open(self.path, "rb") as fh:
                st = os.fstat(fh.fileno())
                if st.st_uid != os.getuid():
                    raise Refused(f"it is owned by uid {st.st_uid}, not this worker's user")
                if st.st_mode & 0o022:
                    raise Refused(f"others may write it (mode {st.st_mode & 0o777:o})")
                data = fh.read()
            meta, chunks = decode(data)
        except FileNotFoundError:
            log.info("no replica disk copy at %s", self.path)
            return None
        except (OSError, Refused) as exc:
            log.warning("replica disk copy at %s not used: %s", self.path, exc)
            return None
        age = now - meta.as_of
        if age > self.max_age_s:
            log.warning("replica disk copy at %s not used: it is %.1f h old (SEKAT_REPLICA_DISK_MAX_AGE_S: %.1f h)",
                        self.path, age / 3600, self.max_age_s / 3600)
            return None
        return meta, chunks

    def load(self, now: float | None = None) -> tuple[DiskMeta, stored.Snapshot] | None:
        """The copy as a snapshot of this process's hashes (blocking); None (with a log line) when refused."""
        started = time.perf_counter()
        found = self.read(now)
        if found is None:
            return None
        meta, chunks = found
        try:
            parts = [stored.decode_chunk(blob) for blob in chunks]
        except ValueError as exc:
            log.warning("replica disk copy at %s not used: %s", self.path, exc)
            return None
        return meta, stored.Snapshot.of(parts, meta.last_id, meta.build, time.perf_counter() - started)
