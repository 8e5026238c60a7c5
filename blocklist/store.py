"""The Redis serving index of the blocklist.

Data model (every key under the configured prefix, default ``sekat:``):

    {prefix}bl:{kind}:{value}   string: the entry as JSON (sekat.records.Entry)
    {prefix}bl:changes          stream: one record per change, field ``key``;
                                local replicas follow it to stay fresh

Revoked entries stay in the index with status ``revoked`` so their history is
kept and a lookup can tell "cleared on appeal" from "never listed".

The hot path calls ``lookup_many`` once per batch: one MGET, never one round
trip per event.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timezone

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from sekat.errors import BlocklistUnavailable
from sekat.records import Entry, Status, iso

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
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(self._rkey(entry.key), orjson.dumps(entry.to_json()))
                pipe.xadd(self._changes, {"key": entry.key}, maxlen=CHANGES_MAXLEN, approximate=True)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise BlocklistUnavailable(f"blocklist write failed: {type(exc).__name__}") from exc

    async def report(self, key: str, status: Status, source: str, reason: str = "", case_ref: str = "",
                     report_id: str = "", now: datetime | None = None, expires_at: str = "") -> Entry:
        """File a report on ``key``: merge with what is there (count, sources), newest status wins."""
        now = now or datetime.now(timezone.utc)
        old = await self.get(key)
        sources = tuple(dict.fromkeys((*(old.sources if old else ()), source)))
        entry = Entry(key=key, status=status, source=source, reason=reason, case_ref=case_ref,
                      report_id=report_id, reported_at=iso(now), expires_at=expires_at, sources=sources,
                      report_count=(old.report_count + 1) if old else 1)
        await self.put(entry)
        return entry

    async def revoke(self, key: str, source: str, reason: str, now: datetime | None = None) -> Entry | None:
        """Mark ``key`` revoked (appeal upheld). None if it was never listed."""
        old = await self.get(key)
        if old is None:
            return None
        return await self.report(key, Status.REVOKED, source, reason, old.case_ref, now=now)

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


def _count_status(raw: bytes | None, now: datetime) -> str:
    """The status an entry is counted under; '' for a key deleted meanwhile or not written by Sekat.

    Cheaper than ``Entry.from_json``: only ``status`` and ``expires_at`` are read.
    """
    if raw is None:
        return ""
    try:
        data = orjson.loads(raw)
        status = data["status"]
    except (ValueError, KeyError, TypeError):
        return ""
    if status not in ("reported", "confirmed", "revoked"):
        return ""
    expires = data.get("expires_at") or ""
    if status != "revoked" and expires:
        try:
            if datetime.fromisoformat(expires) <= now:
                return "expired"
        except (ValueError, TypeError):
            pass  # counted under its own status
    return str(status)
