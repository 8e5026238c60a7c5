"""Reading the whole Redis index into arrays: how a worker gets its replica when no stored snapshot will do.

``read_index`` notes the build marker and the change stream's last id (the replica follows the stream from
there, so nothing changed during the read is missed), reads every entry key of the index with its value, and
returns the entries (revoked ones too) as arrays of key hashes, codes (status and kind) and expiries (a
``Snapshot``). With storing on, it also stores what it reads (``blocklist.replica_snapshot``) so that the next workers to start load that
instead. The read is bounded by Redis' own work (SCAN and MGET visit every entry), so it keeps Redis busy and
does this process's share while Redis works:

    one pass     one SCAN pass over ``{prefix}bl:*`` serves both kinds; entry keys are picked by name (no
                 ``TYPE`` filter), so the change stream stays out and every MGET reads string keys only
    parts        on one server the pass is cut in SCAN_PARTS parts read at once, each by a thread with its
                 own connection (``_scan_part``): Redis has one part's next command queued while this process
                 parses another's reply
    batches      each SCAN reply of ~SCAN_COUNT keys is read by an MGET sent at once, which finds its keys
                 still in Redis' CPU cache from the SCAN just before
    parsing      a batch is read in bulk (``batch_columns``): the status and expiry found in the values'
                 bytes (``bytes.find``, in C), compared and turned into epochs with numpy for the whole
                 batch; keys cut and hashed without decoding; a value not as Sekat writes it takes the
                 entry-by-entry path (``batch_entries``, ``status_code``), which reads it alike
    sorting      hashes are sorted in runs while the read waits on Redis (``_SortedRuns``), so installing
                 merges sorted runs

On a Redis Cluster the pass covers every primary, with one MGET per hash slot. A running worker refreshing
the stored snapshot reads through ``scan_index_lightly`` instead (one connection, smaller batches, nothing
read ahead) so that the hot path keeps its share of Redis. The figures behind these choices: docs/replica.md.
"""

from __future__ import annotations

import contextlib
import logging
import operator
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
import redis
from redis.exceptions import RedisError, ResponseError

from sekat.blocklist import replica_snapshot as stored
from sekat.blocklist.connection import SCAN_TIMEOUT_MS, AnySyncRedis, sync_client, sync_mget, sync_scan_keys
from sekat.blocklist.readahead import prefetched
from sekat.blocklist.store import built_key, status_and_expiry

log = logging.getLogger(__name__)

# The replica's codes (uint8): a status in the low two bits, the kind in the next three (``KIND_CODES``: 0 for a
# phone number, ACCOUNT, WALLET, PROXY, then the SMS channel's kinds); a code below 8 reads the same as before
# the other kinds had their own.
# Revoked entries are kept (never a hit) so that the entry counts (``blocklist.counts``) include them.
ABSENT, REPORTED, CONFIRMED, REVOKED = 0, 1, 2, 3
STATUS_BITS = 3
ACCOUNT, WALLET, PROXY = 4, 8, 12
STATUS_CODES = {"reported": REPORTED, "confirmed": CONFIRMED, "revoked": REVOKED}
KINDS = ("phone", "account", "wallet", "proxy", "sender", "url", "domain")
KIND_CODES = {kind: i << 2 for i, kind in enumerate(KINDS)}  # at most 8 kinds: codes stay below 32
assert (KIND_CODES["account"], KIND_CODES["wallet"], KIND_CODES["proxy"]) == (ACCOUNT, WALLET, PROXY)
_KIND_HEADS = tuple((f"{kind}:".encode(), code) for kind, code in KIND_CODES.items() if code)
SCAN_COUNT = 3_000
SCAN_PARTS = 2  # parts of the SCAN pass read at once (a power of 2; see scan_index)
SCAN_PARTS_FROM = 65_536  # keys in the database from which the pass is read in parts
REFRESH_SCAN_COUNT = 1_000  # keys a batch when a running worker refreshes the stored snapshot
RUN_ENTRIES = 1_000_000  # entries sorted at a time while the index is read (_SortedRuns)

Batch = tuple[list[bytes], list[bytes | None]]  # entry keys as scanned, and their values (None: deleted since)


def active(codes: np.ndarray) -> np.ndarray:
    """Which of ``codes`` are entries a lookup finds: reported or confirmed (of either kind)."""
    status = codes & STATUS_BITS
    return (status == REPORTED) | (status == CONFIRMED)


def kind_bit(key: str) -> int:
    """The kind part of a key's code (``kind:value``): ``KIND_CODES`` of its kind, 0 for a phone number."""
    return KIND_CODES.get(key.partition(":")[0], 0)


def _kind_bits(key: bytes, strip: int) -> int:
    """``kind_bit`` of a scanned key, ``strip`` bytes of prefix before its kind."""
    for head, code in _KIND_HEADS:
        if key.startswith(head, strip):
            return code
    return 0


def status_code(raw: bytes) -> tuple[int, int]:
    """Status code and expiry (epoch seconds, 0 = never; always 0 when revoked) of an index value, without its
    kind; not a Sekat entry: absent.

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
            return REVOKED, 0
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
    if status == "revoked":
        return REVOKED, 0
    return STATUS_CODES[status], int(datetime.fromisoformat(expires).timestamp()) if expires else 0


def _status_code_fast(raw: bytes) -> tuple[int, bytes] | None:
    """``status_code``'s fast path with the expiry left as text (b"" = never); None: take the full path.

    The texts of a batch become epochs together (``epochs``), not one ``fromisoformat`` per entry.
    """
    i = raw.find(b'"status":"') + 10
    if i < 10:
        return None
    if raw.startswith(b'confirmed"', i):
        code = CONFIRMED
    elif raw.startswith(b'reported"', i):
        code = REPORTED
    elif raw.startswith(b'revoked"', i):
        return REVOKED, b""
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


def _iso_seconds(grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of 24 bytes in ``iso()``'s UTC form: which are (a mask), and their epochs (uint32, 0 where not)."""
    ok = ((grid[:, _ISO_DIGITS] >= 48) & (grid[:, _ISO_DIGITS] <= 57)).all(axis=1) & (grid[:, 0] == ord("2"))
    for at, mark in _ISO_MARKS.items():
        ok &= grid[:, at] == mark[0]
    out = np.zeros(len(grid), dtype=np.uint32)
    seconds = np.ascontiguousarray(grid[ok, :19]).view("S19").ravel()
    out[ok] = seconds.astype("datetime64[s]").astype(np.int64)
    return ok, out


def epochs(texts: list[bytes]) -> np.ndarray:
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
        ok, seconds = _iso_seconds(grid)
        out[rows[ok]] = seconds[ok]
        iso[rows[~ok]] = False
    for i in np.flatnonzero(~iso & (lengths > 0)):
        out[i] = int(datetime.fromisoformat(texts[i].decode()).timestamp())
    return out


def batch_entries(keys: list[bytes], values: list[bytes | None], strip: int
                  ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """One scanned batch: its entries' keys (``strip`` bytes of prefix cut), their codes (kind included) and
    expiries; revoked entries included, values that are not Sekat entries left out."""
    kept: list[str] = []
    codes: list[int] = []
    texts: list[bytes] = []
    odd: list[tuple[int, int]] = []  # (position, epoch) of the entries read by the full parse
    for k, v in zip(keys, values):
        if v is None:
            continue  # deleted between SCAN and MGET
        fast = _status_code_fast(v)
        account = _kind_bits(k, strip)
        if fast is None:  # not as Sekat writes it: the full parse, epoch included
            code, epoch = status_code(v)
            if code != ABSENT:
                odd.append((len(kept), epoch))
                kept.append(k[strip:].decode())
                codes.append(code | account)
                texts.append(b"")
        else:
            kept.append(k[strip:].decode())
            codes.append(fast[0] | account)
            texts.append(fast[1])
    expiries = epochs(texts)
    for at, epoch in odd:
        expiries[at] = epoch
    return kept, np.array(codes, dtype=np.uint8), expiries


def batch_arrays(keys: list[bytes], values: list[bytes | None], strip: int
                 ) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """``batch_entries`` with the keys' hashes (this process's ``hash()``) as an array too."""
    kept, codes, expiries = batch_entries(keys, values, strip)
    return kept, np.fromiter(map(hash, kept), dtype=np.int64, count=len(kept)), codes, expiries


@dataclass
class Columns:
    """One scanned batch as the replica and the stored snapshot take it: the entries' keys (prefix cut) joined
    by newlines, their hashes (this process's ``hash()`` of each key), codes and expiries, in one order."""

    text: bytes
    hashes: np.ndarray
    codes: np.ndarray
    expiries: np.ndarray

    def __len__(self) -> int:
        return len(self.hashes)


_STATUS_FIND = operator.methodcaller("find", b'"status":"')
_WORDS = tuple((code, np.frombuffer(word, dtype=np.uint8))
               for code, word in ((CONFIRMED, b'confirmed"'), (REPORTED, b'reported"'), (REVOKED, b'revoked"')))
_EXPIRES_FIND = operator.methodcaller("find", b'"expires_at":"')
_QUOTE = ord('"')
# A kind by the first two bytes of its name (unique across KINDS), and its head ("kind:") to check the key by.
_KIND_HEAD = {kind.encode()[0] << 8 | kind.encode()[1]: (code, np.frombuffer(f"{kind}:".encode(), dtype=np.uint8))
              for kind, code in KIND_CODES.items() if code}
assert len({kind[:2] for kind in KINDS}) == len(KINDS)
# CPython hashes an ASCII str and its bytes alike: keys are hashed without decoding them when that holds.
_BYTES_HASH_AS_STR = hash("phone:+60123456789") == hash(b"phone:+60123456789")


_PAD = 32  # bytes after a batch's joined values or keys, so that any window of up to 32 bytes from them is whole


def _gather(blob: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """``width`` (<= _PAD) bytes of ``blob`` (padded) from each of ``starts`` (rows; past its end: padding)."""
    return sliding_window_view(blob, width)[np.minimum(starts, len(blob) - width)]


def _stripped(keys: list[bytes], strip: int) -> list[bytes]:
    """The keys with their first ``strip`` bytes cut: split from one joined text when they share those bytes
    and hold no newline (no Python loop), else one by one."""
    joined = b"\n".join(keys)
    common = keys[0][:strip]
    if len(common) == strip and joined.count(b"\n") == len(keys) - 1 \
            and joined.count(b"\n" + common) == len(keys) - 1:
        return joined[strip:].replace(b"\n" + common, b"\n").split(b"\n")
    return [k[strip:] for k in keys]


def _hashes(parts: list[bytes], text: bytes) -> np.ndarray:
    """``hash()`` of each key as a str (``parts``: the keys as bytes, ``text``: them joined)."""
    if _BYTES_HASH_AS_STR and text.isascii():
        return np.fromiter(map(hash, parts), dtype=np.int64, count=len(parts))
    return np.fromiter((hash(p.decode()) for p in parts), dtype=np.int64, count=len(parts))


def batch_columns(keys: list[bytes], values: list[bytes | None], strip: int) -> Columns:
    """``batch_arrays`` of a batch, read in bulk: the same entries (their order aside), each with the same code
    and expiry.

    ``status_code``'s fast path over the batch's values joined: the first ``"status":"`` and the first
    ``"expires_at":"`` of each value found by ``bytes.find`` (in C, no Python loop), the status word and the
    expiry (none, empty, or ``iso()``'s 24 bytes) compared and converted with numpy for all rows at once.
    Any other value goes through ``batch_entries``, so both read every value alike.
    """
    if None in values:  # deleted between SCAN and MGET
        keys = [k for k, v in zip(keys, values) if v is not None]
        values = [v for v in values if v is not None]
    present: list[bytes] = values  # type: ignore[assignment]
    n = len(keys)
    if n == 0:
        return Columns(b"", np.empty(0, np.int64), np.empty(0, np.uint8), np.empty(0, np.uint32))
    vlen = np.fromiter(map(len, present), dtype=np.int64, count=n)
    vstart = np.cumsum(vlen) - vlen
    vblob = np.frombuffer(b"".join((*present, bytes(_PAD))), dtype=np.uint8)
    at = np.fromiter(map(_STATUS_FIND, present), dtype=np.int64, count=n) + 10  # the status word
    word = _gather(vblob, vstart + at, 10)
    codes = np.zeros(n, dtype=np.uint8)
    for code, pattern in _WORDS:
        is_word = (at >= 10) & (codes == 0) & (vlen >= at + len(pattern)) & (word[:, :len(pattern)] == pattern).all(1)
        codes[is_word] = code
    fast = codes != 0
    # the expiry: none (no "expires_at"), empty, or iso()'s 24 bytes and its closing quote
    expiries = np.zeros(n, dtype=np.uint32)
    listed = fast & (codes != REVOKED)
    if listed.any():
        found = np.fromiter(map(_EXPIRES_FIND, present), dtype=np.int64, count=n)
        has = listed & (found >= 0)
        room = vlen - found - 14  # bytes of the value from the expiry text on
        text = _gather(vblob, vstart + found + 14, 25)
        empty = has & (room >= 1) & (text[:, 0] == _QUOTE)
        timed = has & ~empty & (room >= 25) & (text[:, 24] == _QUOTE)
        ok, seconds = _iso_seconds(text[:, :24])
        timed &= ok
        expiries[timed] = seconds[timed]
        fast &= ~has | empty | timed
    # kinds: the first two bytes of the key name it; its whole head ("kind:") must be there
    parts = _stripped(keys, strip)
    klen = np.fromiter(map(len, parts), dtype=np.int64, count=n)
    kstart = np.cumsum(klen) - klen
    kblob = np.frombuffer(b"".join((*parts, bytes(_PAD))), dtype=np.uint8)
    pair = _gather(kblob, kstart, 2).astype(np.int64)
    pair = pair[:, 0] << 8 | pair[:, 1]
    kinds = np.zeros(n, dtype=np.uint8)
    for two, (code, head) in _KIND_HEAD.items():
        these = (pair == two) & (klen >= len(head))
        if these.any():
            these[these] = (_gather(kblob, kstart[these], len(head)) == head).all(axis=1)
            kinds[these] = code
    codes |= kinds
    if fast.all():
        text_out = b"\n".join(parts)
        return Columns(text_out, _hashes(parts, text_out), codes, expiries)
    chosen = np.flatnonzero(fast)
    slow = np.flatnonzero(~fast)
    odd, odd_codes, odd_expiries = batch_entries([keys[i] for i in slow], [present[i] for i in slow], strip)
    kept = [parts[i] for i in chosen] + [k.encode() for k in odd]
    text_out = b"\n".join(kept)
    return Columns(text_out, _hashes(kept, text_out), np.concatenate([codes[chosen], odd_codes]),
                   np.concatenate([expiries[chosen], odd_expiries]))


def _scan_part(client: AnySyncRedis, match: str, heads: tuple[bytes, ...], start: int, mask: int,
               count: int) -> Iterator[Batch]:
    """One part of a SCAN pass, each batch's entry keys with their values (one server).

    SCAN's cursor walks the hash table's buckets in the order of their bit-reversed index, so a cursor's
    low bits say which part of the pass it is in, whatever the table's size: the part starting at
    ``start`` (the bit reversal of its number) ends when the cursor leaves those low bits (``mask``) or
    the pass wraps to 0. Each batch's MGET follows its SCAN at once, while the entries it reads are still
    in Redis' CPU cache.
    """
    cursor = start
    while True:
        cursor, keys = client.scan(cursor, match=match, count=count)
        keys = [k for k in keys if k.startswith(heads)]
        if keys:
            yield keys, client.mget(keys)
        if cursor == 0 or cursor & mask != start:
            return


def _cluster_batches(client: redis.RedisCluster, match: str, heads: tuple[bytes, ...], count: int
                     ) -> Iterator[Batch]:
    """Every primary's entry keys with their values, one MGET per hash slot."""
    for keys in sync_scan_keys(client, match, count):
        keys = [k for k in keys if k.startswith(heads)]
        if keys:
            yield keys, sync_mget(client, keys)


def _pattern(prefix: str) -> tuple[str, tuple[bytes, ...]]:
    """The SCAN pattern of the index, and the heads of its entry keys (one per kind)."""
    return f"{prefix}bl:*", tuple(f"{prefix}bl:{kind}:".encode() for kind in KINDS)


def scan_index(client: AnySyncRedis, prefix: str) -> Iterator[Batch]:
    """Every entry key of the index with its value, in batches: one SCAN pass, one MGET per batch, read ahead
    of the caller (on one server, in SCAN_PARTS parts at once, see the module docstring)."""
    match, heads = _pattern(prefix)
    if isinstance(client, redis.RedisCluster):
        yield from prefetched(_cluster_batches(client, match, heads, SCAN_COUNT))
        return
    # A table smaller than the parts would let two parts visit one bucket: one part then.
    parts = SCAN_PARTS if client.dbsize() >= SCAN_PARTS_FROM else 1
    bits = parts.bit_length() - 1
    starts = [int(f"{j:0{bits}b}"[::-1], 2) if bits else 0 for j in range(parts)]
    yield from prefetched(*(_scan_part(client, match, heads, start, parts - 1, SCAN_COUNT) for start in starts))


def scan_index_lightly(client: AnySyncRedis, prefix: str) -> Iterator[Batch]:
    """``scan_index`` for a background refresh: one connection, REFRESH_SCAN_COUNT keys a batch, each batch
    read only when the caller asks for it (the caller paces itself between batches)."""
    match, heads = _pattern(prefix)
    if isinstance(client, redis.RedisCluster):
        yield from _cluster_batches(client, match, heads, REFRESH_SCAN_COUNT)
        return
    yield from _scan_part(client, match, heads, 0, 0, REFRESH_SCAN_COUNT)


class _SortedRuns:
    """Batches of (hashes, codes, expiries) gathered into runs sorted by hash, RUN_ENTRIES at a time.

    Sorting runs while the index is read uses the time the reading thread waits for Redis; installing then
    sorts runs already in order (``argsort(kind="stable")`` merges them).
    """

    def __init__(self) -> None:
        self.runs: list[stored.Arrays] = []
        self._pending: list[stored.Arrays] = []
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

    def done(self) -> list[stored.Arrays]:
        self._sort()
        return self.runs


def read_index(url: str, prefix: str, store: bool = True, disk: stored.Copies | None = None) -> stored.Snapshot:
    """The whole index read into a new snapshot (blocking: run it in a thread); nothing is installed yet.

    With ``store``, what it reads is stored too for the next worker to start, unless another process is
    storing one now, and written to ``disk`` once stored; a Redis that refuses those writes stops the
    storing, not the read.
    """
    started = time.perf_counter()
    client = sync_client(url, SCAN_TIMEOUT_MS)
    changes = f"{prefix}bl:changes"
    writer: stored.Writer | None = None
    try:
        raw = client.get(built_key(prefix))
        build = raw.decode() if raw else None
        state = stored.stream_state(client, changes)  # the last id and the count, at once
        if state is not None:
            last_id = state.last_id
        else:
            last = client.xrevrange(changes, count=1)
            last_id = last[0][0].decode() if last else "0-0"
        if store:
            try:
                writer = stored.Writer.start(client, prefix, state, build, disk=disk)
            except ResponseError as exc:
                log.warning("replica snapshot not stored: %s", exc)
        runs = _SortedRuns()
        strip = len(prefix) + len("bl:")
        for keys, values in scan_index(client, prefix):
            got = batch_columns(keys, values, strip)
            runs.add(got.hashes, got.codes, got.expiries)
            if writer is not None and not writer.add_text(got.text, len(got), got.codes, got.expiries):
                writer = None
        parts = runs.done()
        if writer is not None:
            writer.finish()
            writer = None
    except BaseException:
        if writer is not None:
            with contextlib.suppress(RedisError, OSError):
                writer.abandon()
        raise
    finally:
        client.close()
    return stored.Snapshot.of(parts, last_id, build, time.perf_counter() - started)
