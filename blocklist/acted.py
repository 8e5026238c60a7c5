"""Who acted on which blocklist entry, and when to look at it again: what release commands need.

Data model (under the configured prefix):

    {prefix}acted:{kind}:{value}   set: ``ACTION|INSTITUTION`` still to release — ``RELEASE_ACCOUNT|<bank BIC>``
                                   for a bank that froze an account or held a transfer because of the entry,
                                   ``UNBLOCK_NUMBER|<operator>`` for a telco that blocked or labelled its calls
    {prefix}acted:due              sorted set: entry key -> when to check it next (epoch seconds; +inf: never
                                   expires, checked again only when it is revoked)

Writers:
- the screening shell, once per batch after its commands are acknowledged
  (``record``: one MULTI of SADD + ``ZADD NX now``: a newly acted-on key is
  checked at the next sweep, which moves it to its entry's expiry);
- the index, in the MULTI that writes a revoked entry (``BlocklistStore.put_many``:
  ``ZADD XX LT 0``: due now, if anyone acted on it);
- the release sweep (``streams/release.py``): ``reschedule`` only if the score
  is still the one it read (compare-and-set, so a revocation marked meanwhile
  is never overwritten), and ``forget`` removes exactly the members it released
  (one added meanwhile stays, and is released at the next sweep).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import redis.asyncio as aioredis
from blocklist.connection import async_client
from redis.exceptions import RedisError

from sekat.errors import BlocklistUnavailable

# KEYS[1] = due zset; ARGV = key, expected score, new score (triples)
_RESCHEDULE = """
local n = 0
for i = 1, #ARGV, 3 do
  local current = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if current and tonumber(current) == tonumber(ARGV[i + 1]) then
    redis.call('ZADD', KEYS[1], ARGV[i + 2], ARGV[i])
    n = n + 1
  end
end
return n
"""

# KEYS[1] = due zset, KEYS[2] = acted set of the key; ARGV[1] = entry key, ARGV[2..] = released members
_FORGET = """
if #ARGV > 1 then redis.call('SREM', KEYS[2], unpack(ARGV, 2)) end
if redis.call('SCARD', KEYS[2]) == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 1
end
return 0
"""


def due_key(prefix: str) -> str:
    return f"{prefix}acted:due"


class ActedStore:
    def __init__(self, client: aioredis.Redis, prefix: str = "sekat:") -> None:
        self._redis = client
        self._prefix = prefix
        self._due = due_key(prefix)
        self._reschedule = client.register_script(_RESCHEDULE)
        self._forget = client.register_script(_FORGET)

    @classmethod
    def from_url(cls, url: str, prefix: str = "sekat:") -> "ActedStore":
        return cls(async_client(url, socket_timeout=2.0, socket_connect_timeout=2.0), prefix)

    def _set(self, key: str) -> str:
        return f"{self._prefix}acted:{key}"

    async def record(self, acts: Iterable[tuple[str, str]], now: float) -> None:
        """Remember ``(entry key, ACTION|INSTITUTION)`` pairs; one MULTI for the whole batch."""
        unique = list(dict.fromkeys(acts))
        if not unique:
            return
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                for key, member in unique:
                    pipe.sadd(self._set(key), member)
                pipe.zadd(self._due, {key: now for key, _ in unique}, nx=True)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise BlocklistUnavailable(f"recording who acted failed: {type(exc).__name__}") from exc

    async def due(self, now: float, limit: int = 500) -> list[tuple[str, float]]:
        """Entry keys due for a check at ``now`` (oldest first), with the score read."""
        rows = await self._redis.zrangebyscore(self._due, "-inf", now, start=0, num=limit, withscores=True)
        return [(k.decode() if isinstance(k, bytes) else k, float(s)) for k, s in rows]

    async def members(self, keys: Sequence[str]) -> dict[str, list[str]]:
        if not keys:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.smembers(self._set(key))
            replies = await pipe.execute()
        return {key: sorted(m.decode() if isinstance(m, bytes) else m for m in reply)
                for key, reply in zip(keys, replies)}

    async def reschedule(self, moves: Sequence[tuple[str, float, float]]) -> int:
        """Move each key from the score read to a new one, unless the score changed meanwhile."""
        if not moves:
            return 0
        args: list[object] = []
        for key, seen, new in moves:
            args += [key, repr(seen), "+inf" if new == float("inf") else repr(new)]
        return int(await self._reschedule(keys=[self._due], args=args))

    async def forget(self, key: str, released: Sequence[str]) -> bool:
        """Drop the released members of ``key``; True if nothing is left (the key leaves the due set)."""
        return bool(await self._forget(keys=[self._due, self._set(key)], args=[key, *released]))

    async def close(self) -> None:
        await self._redis.aclose()
