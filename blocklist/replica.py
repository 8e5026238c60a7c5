"""Local replica of the blocklist: every worker answers "is it listed?" from memory.

The hot path must not make a network round trip per event, and a report must
take effect on every worker within 100 ms. The replica does both:

    snapshot   on start, SCAN the index (in a thread, sync client) into compact
               arrays: sorted 64-bit hashes of the keys, a status code and an
               expiry per key — 13 bytes an entry, so 10 M entries cost ~130 MB;
    follow     XREAD BLOCK on ``{prefix}bl:changes`` from the id taken *before*
               the snapshot (no gap), re-read the changed keys and apply them:
               in place for keys already in the arrays, into an overlay dict of
               full entries for new keys;
    lookup     per batch: hash the keys, one vectorised ``searchsorted``, overlay
               checks; only the rare active hits are read from Redis, in one
               MGET, for their evidence (source, case ref, reason). If Redis
               does not answer, the replica's own status decides and the
               staleness metric says how old that knowledge is.

On a Redis Cluster (``redis+cluster://``) the snapshot scans every master and
reads with one MGET per hash slot, and the change stream is one key on one
master (``blocklist.connection``); nothing else changes.

Hashes are Python's own ``hash()`` of the key string (SipHash, per process):
a false match needs a 64-bit collision (~5e-13 per lookup against 10 M
entries) and is in any case re-checked against Redis when Redis answers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import orjson
from redis.exceptions import RedisError

from blocklist.connection import AnyRedis, async_client, mget, sync_client, sync_mget, sync_scan_keys
from blocklist.store import status_and_expiry
from sekat.records import Entry, Status

log = logging.getLogger(__name__)

ABSENT, REPORTED, CONFIRMED = 0, 1, 2
_CODES = {Status.REPORTED: REPORTED, Status.CONFIRMED: CONFIRMED, Status.REVOKED: ABSENT}
_STATUS = {REPORTED: Status.REPORTED, CONFIRMED: Status.CONFIRMED}
KINDS = ("phone", "account")
SCAN_COUNT = 10_000
FOLLOW_BLOCK_MS = 1000
MERGE_OVERLAY_AT = 200_000


def _expiry(entry: Entry) -> int:
    return int(datetime.fromisoformat(entry.expires_at).timestamp()) if entry.expires_at else 0


_STATUS_CODES = {"reported": REPORTED, "confirmed": CONFIRMED, "revoked": ABSENT}


def _code(raw: bytes) -> tuple[int, int]:
    """Status code and expiry (epoch seconds, 0 = never) of an index value; not a Sekat entry: absent."""
    found = status_and_expiry(raw)
    if found is None:
        return ABSENT, 0
    status, expires = found
    return _STATUS_CODES[status], int(datetime.fromisoformat(expires).timestamp()) if expires else 0


@dataclass
class ReplicaStats:
    entries: int = 0
    loaded_in_s: float = 0.0
    changes_applied: int = 0
    last_follow_ok: float = field(default_factory=time.time)
    redis_fallbacks: int = 0


class Replica:
    """One worker's in-memory copy of the blocklist index, kept fresh from the change stream."""

    def __init__(self, url: str, prefix: str = "sekat:", on_fresh: Callable[[], None] | None = None) -> None:
        self._url = url
        self._on_fresh = on_fresh
        self._prefix = prefix
        self._changes = f"{prefix}bl:changes"
        self._hashes = np.empty(0, dtype=np.int64)
        self._status = np.empty(0, dtype=np.uint8)
        self._expires = np.empty(0, dtype=np.uint32)
        self._overlay: dict[str, Entry] = {}
        self._last_id = "0-0"
        self._client: AnyRedis | None = None
        self.ready = asyncio.Event()
        self.stats = ReplicaStats()

    # -- snapshot ---------------------------------------------------------------------------------
    def load_snapshot(self) -> None:
        """Read the whole index (blocking: run it in a thread). Records where to follow from."""
        started = time.perf_counter()
        client = sync_client(self._url, socket_timeout=30)
        try:
            last = client.xrevrange(self._changes, count=1)
            self._last_id = last[0][0].decode() if last else "0-0"
            hashes: list[int] = []
            codes: list[int] = []
            expiries: list[int] = []
            strip = len(self._prefix) + len("bl:")
            for kind in KINDS:
                # on a cluster: every primary's keys, read with one MGET per slot
                for keys in sync_scan_keys(client, f"{self._prefix}bl:{kind}:*", SCAN_COUNT, "string"):
                    for k, v in zip(keys, sync_mget(client, keys)):
                        if v is None:
                            continue
                        code, exp = _code(v)
                        if code == ABSENT:
                            continue
                        hashes.append(hash(k[strip:].decode()))
                        codes.append(code)
                        expiries.append(exp)
        finally:
            client.close()
        self._install(np.array(hashes, dtype=np.int64), np.array(codes, dtype=np.uint8),
                      np.array(expiries, dtype=np.uint32))
        self._overlay = {}
        self.stats.loaded_in_s = time.perf_counter() - started
        self.stats.last_follow_ok = time.time()
        log.info("blocklist replica loaded: %d active entries in %.1fs", self.stats.entries, self.stats.loaded_in_s)

    def _install(self, hashes: np.ndarray, codes: np.ndarray, expiries: np.ndarray) -> None:
        order = np.argsort(hashes, kind="stable")
        self._hashes, self._status, self._expires = hashes[order], codes[order], expiries[order]
        self.stats.entries = int(len(self._hashes)) + len(self._overlay)

    async def start(self) -> None:
        await asyncio.to_thread(self.load_snapshot)
        self._client = async_client(self._url, socket_timeout=FOLLOW_BLOCK_MS / 1000 + 5,
                                    socket_connect_timeout=2.0)
        self.ready.set()

    # -- follow -----------------------------------------------------------------------------------
    async def follow(self) -> None:
        """Apply changes as they are announced; never returns (cancel it to stop)."""
        await self.ready.wait()
        assert self._client is not None
        backoff = 0.05
        while True:
            try:
                reply = await self._client.xread({self._changes: self._last_id}, count=10_000,
                                                 block=FOLLOW_BLOCK_MS)
                self.stats.last_follow_ok = time.time()
                if self._on_fresh is not None:
                    self._on_fresh()
                backoff = 0.05
                if not reply:
                    continue
                _, records = reply[0]
                keys = list(dict.fromkeys(fields[b"key"].decode() for _, fields in records))
                values = await mget(self._client, [f"{self._prefix}bl:{k}" for k in keys])
                for key, raw in zip(keys, values):
                    self.apply(key, Entry.from_json(orjson.loads(raw)) if raw else None)
                self._last_id = records[-1][0].decode()
                if len(self._overlay) > MERGE_OVERLAY_AT:
                    await asyncio.to_thread(self._merge_overlay)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                log.warning("blocklist change stream unavailable (%s); deciding on the replica", type(exc).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    def apply(self, key: str, entry: Entry | None) -> None:
        """One changed key: update in place when the arrays hold it, else keep it in the overlay."""
        self.stats.changes_applied += 1
        i = self._index(hash(key))
        if i >= 0:
            if entry is None:
                self._status[i] = ABSENT
            else:
                self._status[i] = _CODES[entry.status]
                self._expires[i] = _expiry(entry)
        if entry is not None and entry.status is not Status.REVOKED:
            self._overlay[key] = entry
        else:
            self._overlay.pop(key, None)
        self.stats.entries = int(np.count_nonzero(self._status)) + len(self._overlay)

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
                values = await mget(self._client, [f"{self._prefix}bl:{k}" for k in thin])
            except (RedisError, OSError):
                self.stats.redis_fallbacks += 1
                for k in thin:  # decide on what the replica knows; say so in the evidence
                    e = hits[k]
                    hits[k] = Entry(key=k, status=e.status, source="replica",
                                    reason="(details unavailable: blocklist index unreachable)")
            else:
                for k, raw in zip(thin, values):
                    if raw is None:
                        hits.pop(k)
                    else:
                        hits[k] = Entry.from_json(orjson.loads(raw))
        return hits

    @property
    def change_id(self) -> str:
        """The id of the last change-stream record this replica has applied ("0-0": none yet)."""
        return self._last_id

    def staleness(self) -> float:
        """Seconds since the change stream last answered (0 while it is healthy and blocking)."""
        return max(0.0, time.time() - self.stats.last_follow_ok - FOLLOW_BLOCK_MS / 1000)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
