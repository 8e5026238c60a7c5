"""The Redis serving index of the blocklist.

Data model (every key under the configured prefix, default ``sekat:``):

    {prefix}bl:{kind}:{value}   string: the entry as JSON (sekat.records.Entry)
    {prefix}bl:changes          stream: one record per change, field ``key``;
                                local replicas follow it to stay fresh
    {prefix}acted:due           sorted set of entries institutions acted on (``blocklist.acted``):
                                a revoked entry is marked due in the MULTI that writes it

Revoked entries stay in the index with status ``revoked`` so their history is
kept and a lookup can tell "cleared on appeal" from "never listed".

The hot path calls ``lookup_many`` once per batch: one MGET, never one round
trip per event.

Every change to an entry goes through ``put``/``put_many``: the SET of the
entry and the XADD of its key to the change stream in one MULTI. ``apply``
is the one way reports reach the index (the reports agent and
``sekat blocklist rebuild`` both call it): it merges them with
``blocklist.lifecycle.merge``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from datetime import datetime, timezone

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from blocklist.acted import due_key
from blocklist.lifecycle import consolidated, covers, merge
from blocklist.links import propagate
from sekat.errors import BlocklistUnavailable
from sekat.records import Entry, Report, Status

CHANGES_MAXLEN = 1_000_000


class BlocklistStore:
    def __init__(self, client: aioredis.Redis, prefix: str = "sekat:") -> None:
        self._redis = client
        self._prefix = prefix
        self._changes = f"{prefix}bl:changes"

    @classmethod
    def from_url(cls, url: str, prefix: str = "sekat:") -> "BlocklistStore":
        # No connection is made here: redis-py connects on first command.
        client = aioredis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0,
                                         health_check_interval=30)
        return cls(client, prefix)

    @property
    def client(self) -> aioredis.Redis:
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
            raw = await self._redis.mget([self._rkey(k) for k in unique])
        except (RedisError, OSError) as exc:
            raise BlocklistUnavailable(f"blocklist lookup failed: {type(exc).__name__}") from exc
        return {k: Entry.from_json(orjson.loads(v)) for k, v in zip(unique, raw) if v is not None}

    async def get(self, key: str) -> Entry | None:
        return (await self.lookup_many([key])).get(key)

    async def put(self, entry: Entry) -> None:
        """Write one entry and announce the change, atomically."""
        await self.put_many([entry])

    async def put_many(self, entries: Sequence[Entry]) -> None:
        """Write entries and announce each change, all in one MULTI (one round trip)."""
        if not entries:
            return
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                for entry in entries:
                    pipe.set(self._rkey(entry.key), orjson.dumps(entry.to_json()))
                    pipe.xadd(self._changes, {"key": entry.key}, maxlen=CHANGES_MAXLEN, approximate=True)
                revoked = {e.key: 0 for e in entries if e.status is Status.REVOKED}
                if revoked:  # whoever acted on it gets a release at the next sweep
                    pipe.zadd(due_key(self._prefix), revoked, xx=True, lt=True)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise BlocklistUnavailable(f"blocklist write failed: {type(exc).__name__}") from exc

    async def apply(self, reports: Sequence[Report],
                    publish: Callable[[list[Report]], Awaitable[None]] | None = None) -> tuple[list[Entry], list[Report]]:
        """Merge ``reports`` (in order) into the index: one MGET, one MULTI.

        Returns the entries that changed, and the reports to publish: the
        consolidated ones for keys whose incoming record does not carry their
        whole history (so the record compaction keeps still rebuilds the
        entry), and the ones derived for linked identifiers (``blocklist.links``).

        ``publish``, if given, is awaited with those reports *before* the index
        is written: derived reports exist only because an entry changed, so if
        the process died after the write and before they were on the topic, the
        re-delivered batch would change nothing and derive nothing. Published
        first, a crash re-derives the same report ids instead.
        """
        if not reports:
            return [], []
        current: dict[str, Entry | None] = dict(await self.lookup_many(r.key for r in reports))
        start = dict(current)
        before = {k: v.to_json() for k, v in current.items() if v is not None}
        last: dict[str, Report] = {}
        for report in reports:
            current[report.key] = merge(current.get(report.key), report)
            last[report.key] = report
        changed = [e for k, e in current.items() if e is not None and e.to_json() != before.get(k)]
        pending = [consolidated(r, e) for k, r in last.items()
                   if (e := current[k]) is not None and not covers(r, e)]
        pending += [derived for e in changed for derived in propagate(start.get(e.key), e)]
        if publish is not None and pending:
            await publish(pending)
        await self.put_many(changed)
        return changed, pending

    async def wipe(self) -> int:
        """Delete every entry under the prefix (announcing each), keeping the change stream."""
        deleted = 0
        try:
            batch: list[str] = []
            async for rkey in self._redis.scan_iter(match=f"{self._prefix}bl:*", count=1000):
                name = rkey.decode() if isinstance(rkey, bytes) else rkey
                if name == self._changes:
                    continue
                batch.append(name)
                if len(batch) >= 1000:
                    deleted += await self._delete(batch)
                    batch = []
            deleted += await self._delete(batch)
        except (RedisError, OSError) as exc:
            raise BlocklistUnavailable(f"blocklist wipe failed: {type(exc).__name__}") from exc
        return deleted

    async def _delete(self, rkeys: list[str]) -> int:
        if not rkeys:
            return 0
        strip = len(self._prefix) + len("bl:")
        async with self._redis.pipeline(transaction=True) as pipe:
            for rkey in rkeys:
                pipe.delete(rkey)
                pipe.xadd(self._changes, {"key": rkey[strip:]}, maxlen=CHANGES_MAXLEN, approximate=True)
            await pipe.execute()
        return len(rkeys)

    async def scan_entries(self, count: int = 1000) -> "AsyncIterator[list[Entry]]":
        """Every entry in the index, in batches (for export and comparisons)."""
        batch: list[str] = []
        async for rkey in self._redis.scan_iter(match=f"{self._prefix}bl:*", count=count):
            name = rkey.decode() if isinstance(rkey, bytes) else rkey
            if name != self._changes:
                batch.append(name[len(self._prefix) + 3:])
            if len(batch) >= count:
                yield list((await self.lookup_many(batch)).values())
                batch = []
        if batch:
            yield list((await self.lookup_many(batch)).values())

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        await self._redis.aclose()

    async def counts(self, now: datetime | None = None, scan_count: int = 1000) -> dict[tuple[str, str], int]:
        """Entries by (kind, status) for the ``sekat_blocklist_entries`` gauge.

        Status is the entry's own (reported/confirmed/revoked), or ``expired``
        when it is past ``expires_at`` and not revoked. Cost: a full SCAN of the
        entry keys plus one MGET per ``scan_count`` keys, i.e. O(entries) work
        on Redis spread over many short commands, and a JSON parse per entry on
        the caller (load_tests/blocklist_count.py measures both). The worker runs
        it on the Faust leader only, every SEKAT_BLOCKLIST_COUNT_INTERVAL_S, never
        on the hot path; a local replica can answer the same question from memory.
        """
        now = now or datetime.now(timezone.utc)
        counts: dict[tuple[str, str], int] = {}
        head = len(self._rkey("").encode())  # keys are {prefix}bl:{kind}:{value}
        try:
            cursor = 0
            while True:  # one pass over the keyspace for both kinds
                cursor, keys = await self._redis.scan(cursor, match=self._rkey("*"), count=scan_count)
                keyed = [(raw_kind.decode(), k) for k in keys
                         if (raw_kind := k[head:].partition(b":")[0]) in (b"account", b"phone")]
                if keyed:
                    for (kind, _), raw in zip(keyed, await self._redis.mget([k for _, k in keyed])):
                        status = _count_status(raw, now)
                        if status:
                            counts[kind, status] = counts.get((kind, status), 0) + 1
                if cursor == 0:
                    break
        except (RedisError, OSError) as exc:
            raise BlocklistUnavailable(f"blocklist count failed: {type(exc).__name__}") from exc
        return counts


def status_and_expiry(raw: bytes | None) -> tuple[str, str] | None:
    """An index value's own ``status`` and ``expires_at`` ("" = never), or None if it is not a Sekat entry.

    Cheaper than ``Entry.from_json`` (the entry's history can be long), for the passes that read every
    entry: the replica's snapshot and the entry count. ``Entry.to_json`` writes the entry's own
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


def _count_status(raw: bytes | None, now: datetime) -> str:
    """The status an entry is counted under; '' for a key deleted meanwhile or not written by Sekat."""
    found = status_and_expiry(raw)
    if found is None:
        return ""
    status, expires = found
    if status != "revoked" and expires:
        try:
            if datetime.fromisoformat(expires) <= now:
                return "expired"
        except (ValueError, TypeError):
            pass  # counted under its own status
    return status
