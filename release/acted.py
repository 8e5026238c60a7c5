"""Who acted on which blocklist entry, and when to look at it again: what release commands need.

Data model (under the configured prefix), on one server:

    {prefix}acted:{kind}:{value}   set: ``ACTION|INSTITUTION`` still to release — ``RELEASE_ACCOUNT|<bank BIC>``
                                   for a bank that froze an account or held a transfer because of the entry,
                                   ``UNBLOCK_NUMBER|<operator>`` for a telco that blocked or labelled its calls,
                                   ``RELEASE_ACCOUNT|<bank BIC>|<account>|<hold_until epoch s>`` for a lien
                                   (HOLD_AMOUNT) on that account, released when the entry ends or at hold_until
    {prefix}acted:due              sorted set: entry key -> when to check it next (epoch seconds; +inf: never
                                   expires, checked again only when it is revoked)

On a Redis Cluster the same keys are sharded into ``GROUPS`` (16) hash-tagged groups, an entry's group chosen
by its key's own slot (``blocklist.connection.spread_tags`` / ``slot_group``):

    {prefix}acted:{<tag>}:{kind}:{value}   the set, in its group's slot
    {prefix}acted:{<tag>}:due              the group's sorted set; the sweep reads all 16 and merges them

Why groups: every operation below relates an entry's set to the due set atomically (a Lua script), and a
cluster runs a script only over keys of one slot. An entry's set and *the* due set cannot share a slot for
every entry, and splitting the steps instead (SADDs, then the ZADD; SREM, then the ZREM) opens races a
single server does not have (a member added between a forget's SCARD and its ZREM is never released; a crash
between the SADD and the ZADD leaves an action no sweep looks at). A due set per group keeps every step one
atomic script call on the group's slot, with the guarantees below word for word, and spreads the state and
its writes over every master (one hash tag for all of it would put it on one). The cost falls on the sweep
(every SEKAT_RELEASE_INTERVAL_S on the leader, not the hot path): it reads 16 sorted sets in one pipeline
instead of one. A batch's record is one script call per group it touches, one after the other (see
``ActedStore.record``). One server keeps one group under the names above, without hash tags: one call per
batch.

``record`` is a script rather than a MULTI: the same one round trip and the same atomicity on one server,
and on a cluster redis-py's asyncio client queues each command of a MULTI through a thread that runs its
own event loop while the caller's waits, which the worker's loop cannot afford.

Writers:
- the screening shell, once per batch after its commands are acknowledged
  (``record``: SADD + ``ZADD NX now`` in one script call per group: a newly acted-on key is
  checked at the next sweep, which moves it to its entry's expiry or its earliest lien's end; for a lien
  ``ZADD LT now``, so a key already scheduled later is checked again and its new lien's end is seen);
- the index, when it writes a revoked entry (``BlocklistStore.put_many``:
  ``ZADD XX LT 0``: due now, if anyone acted on it; in the entry's MULTI on one
  server, after the entry and its announcement on a cluster — see ``blocklist.store``);
- the release sweep (``release/sweep.py``): ``reschedule`` only if the score
  is still the one it read (compare-and-set, so a revocation marked meanwhile
  is never overwritten), and ``forget`` removes exactly the members it released
  (one added meanwhile stays, and is released at the next sweep).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import redis.asyncio as aioredis
from sekat.blocklist.connection import REDIS_DOWN, TIMEOUT_MS, AnyRedis, async_client, slot_group, spread_tags

from sekat.errors import BlocklistUnavailable

GROUPS = 16  # hash-tagged groups on a Redis Cluster; part of the key layout, so changing it strands the old keys

# KEYS[1] = due zset, KEYS[2..] = the acted set of each act (one slot); ARGV[1] = now, then per act: entry key, member
_RECORD = """
for i = 2, #KEYS do
  local member = ARGV[2 * i - 1]
  redis.call('SADD', KEYS[i], member)
  local _, bars = string.gsub(member, '|', '|')
  redis.call('ZADD', KEYS[1], bars >= 3 and 'LT' or 'NX', ARGV[1], ARGV[2 * i - 2])
end
return 0
"""

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

# KEYS[1] = due zset, KEYS[2] = acted set of the key (one slot); ARGV[1] = entry key, ARGV[2..] = released members
_FORGET = """
if #ARGV > 1 then redis.call('SREM', KEYS[2], unpack(ARGV, 2)) end
if redis.call('SCARD', KEYS[2]) == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 1
end
return 0
"""


class ActedKeys:
    """The key names of the acted state: one group on one server, ``GROUPS`` hash-tagged groups on a cluster."""

    def __init__(self, prefix: str, cluster: bool) -> None:
        self._base = f"{prefix}acted:"
        self._groups = tuple(f"{self._base}{{{tag}}}:" for tag in spread_tags(GROUPS)) if cluster else (self._base,)

    def _group(self, key: str) -> str:
        return self._groups[slot_group(key, GROUPS)] if len(self._groups) > 1 else self._base

    def due(self, key: str) -> str:
        """The sorted set ``key`` is scheduled in."""
        return f"{self._group(key)}due"

    def acted(self, key: str) -> str:
        """The set of who acted on ``key``."""
        return f"{self._group(key)}{key}"

    def dues(self) -> list[str]:
        return [f"{group}due" for group in self._groups]

    def by_due(self, keys: Iterable[str]) -> dict[str, list[str]]:
        """``keys`` grouped by their sorted set."""
        groups: dict[str, list[str]] = {}
        for key in keys:
            groups.setdefault(self.due(key), []).append(key)
        return groups

    def queue_due_now(self, pipe: Any, keys: Iterable[str]) -> None:
        """Queue the revocation mark: ``ZADD XX LT 0`` (due now, only if someone acted on it), one per group."""
        for due, group in self.by_due(keys).items():
            pipe.zadd(due, dict.fromkeys(group, 0), xx=True, lt=True)


class ActedStore:
    def __init__(self, client: AnyRedis, prefix: str = "sekat:") -> None:
        self._redis = client
        self.keys = ActedKeys(prefix, isinstance(client, aioredis.RedisCluster))
        self._record = client.register_script(_RECORD)
        self._reschedule = client.register_script(_RESCHEDULE)
        self._forget = client.register_script(_FORGET)

    @classmethod
    def from_url(cls, url: str, prefix: str = "sekat:", timeout_ms: int = TIMEOUT_MS) -> "ActedStore":
        return cls(async_client(url, timeout_ms), prefix)

    async def record(self, acts: Iterable[tuple[str, str]], now: float) -> None:
        """Remember ``(entry key, ACTION|INSTITUTION)`` pairs; one script call per group (one server: one per batch)."""
        unique = list(dict.fromkeys(acts))
        if not unique:
            return
        groups: dict[str, list[tuple[str, str]]] = {}
        for key, member in unique:
            groups.setdefault(self.keys.due(key), []).append((key, member))
        try:
            # One after the other: redis-py's async cluster client, asked for several new connections to one
            # node at once, can hand a connection out before it is connected ('NoneType' object has no
            # attribute 'writelines'). A batch touches a few groups at most.
            for due, group in groups.items():
                await self._record(keys=[due, *(self.keys.acted(k) for k, _ in group)],
                                   args=[repr(now), *(part for act in group for part in act)])
        except REDIS_DOWN as exc:
            raise BlocklistUnavailable(f"recording who acted failed: {type(exc).__name__}") from exc

    async def due(self, now: float, limit: int = 500) -> list[tuple[str, float]]:
        """Entry keys due for a check at ``now`` (oldest first), with the score read."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for due in self.keys.dues():
                pipe.zrangebyscore(due, "-inf", now, start=0, num=limit, withscores=True)
            replies = await pipe.execute()
        rows = [(k.decode() if isinstance(k, bytes) else k, float(s)) for reply in replies for k, s in reply]
        if len(replies) > 1:  # merged as one sorted set would order them: by score, then by member
            rows = sorted(rows, key=lambda row: (row[1], row[0].encode()))[:limit]
        return rows

    async def members(self, keys: Sequence[str]) -> dict[str, list[str]]:
        if not keys:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.smembers(self.keys.acted(key))
            replies = await pipe.execute()
        return {key: sorted(m.decode() if isinstance(m, bytes) else m for m in reply)
                for key, reply in zip(keys, replies)}

    async def reschedule(self, moves: Sequence[tuple[str, float, float]]) -> int:
        """Move each key from the score read to a new one, unless the score changed meanwhile."""
        if not moves:
            return 0
        groups: dict[str, list[object]] = {}
        for key, seen, new in moves:
            groups.setdefault(self.keys.due(key), []).extend(
                [key, repr(seen), "+inf" if new == float("inf") else repr(new)])
        moved = 0
        for due, args in groups.items():  # one after the other, as in ``record``
            moved += int(await self._reschedule(keys=[due], args=args))
        return moved

    async def forget(self, key: str, released: Sequence[str]) -> bool:
        """Drop the released members of ``key``; True if nothing is left (the key leaves the due set)."""
        return bool(await self._forget(keys=[self.keys.due(key), self.keys.acted(key)], args=[key, *released]))

    async def close(self) -> None:
        await self._redis.aclose()
