"""The safety brake's shared state in Redis: command counts per target, tripped targets, the audit log.

A *target* is what drives commands: ``entry:{identifier key}`` (one listed or
flagged identifier), ``rule:{rule id}`` or ``source:{reporting agency}``.
Workers add the commands each target drove to a per-window counter; when a
target goes over its limit it is *tripped*: every worker then evaluates it in
shadow (decisions recorded, no commands) until an authority re-arms it through
the agency API. Keys (under the prefix, default ``sekat:``):

    {prefix}brake:n:{window}   hash target -> commands driven in that fixed window (expires after 2 windows)
    {prefix}brake:tripped      hash target -> JSON of the trip (count, limit, window, when, which worker, and
                               for an entry the status it tripped under)
    {prefix}brake:log          list of JSON audit events (trip, rearm, lift), newest first, the last 1000 kept

An entry purged by retention or erased (``forget``) takes its trip with it, and each log event naming it is
kept as a stub without it: its target becomes ``entry:{kind}:(removed)`` and ``removed`` says why (``purged``,
``erased``). Its counts leave with their window (two windows at most).

The rate is a sliding estimate over two fixed windows (``previous * (1 -
elapsed) + current``): one HINCRBY per target of a batch that sent
commands, and one HMGET, in one round trip. Redis failures raise
``BlocklistUnavailable``; the worker counts them and screening goes on.

On a Redis Cluster (``redis+cluster://``) it runs unchanged: every command
names one key and no pipeline here is a transaction, so redis-py's cluster
pipeline sends each command to its key's node, in order per key, and the
answers are the ones one server gives (``tests/integration/test_cluster.py``
compares them). A window's counts are one hash, so one shard takes a batch's
HINCRBYs; the batches that send commands are the rare ones.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis

from sekat.blocklist.connection import REDIS_DOWN, TIMEOUT_MS, async_client
from sekat.errors import BlocklistUnavailable
from sekat.identifiers import mask

DIMENSIONS = ("entry", "rule", "source")
# HGET and HDEL of one trip if it is the one tripped at ARGV[2]; its JSON, or nil
_LIFT_IF = """
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v and cjson.decode(v)['tripped_at'] == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
  return v
end
return false
"""
# Each log event naming ARGV[1] (its target, or its trip's) rewritten with ARGV[2] in its place and ``removed``
# ARGV[3]; how many. One script on the one key, so an event pushed meanwhile does not shift the ones rewritten.
_LOG_WITHOUT = """
local n = 0
for i, v in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  if string.find(v, ARGV[1], 1, true) then
    local e = cjson.decode(v)
    local named = false
    if e['target'] == ARGV[1] then e['target'] = ARGV[2]; named = true end
    local trip = e['trip']
    if type(trip) == 'table' and trip['target'] == ARGV[1] then trip['target'] = ARGV[2]; named = true end
    if named then
      e['removed'] = ARGV[3]
      redis.call('LSET', KEYS[1], i - 1, cjson.encode(e))
      n = n + 1
    end
  end
end
return n
"""
LOG_KEEP = 1000
REMOVED = "(removed)"
_TARGET_RE = re.compile(r"^(entry|rule|source):[A-Za-z0-9_+:.@-]{1,200}$")


def dimension(target: str) -> str:
    return target.partition(":")[0]


def valid_target(target: str) -> bool:
    return bool(_TARGET_RE.match(target))


def removed_target(key: str) -> str:
    """What stands for the entry ``key`` in the brake's log once it is purged or erased: its kind alone."""
    return f"entry:{key.partition(':')[0]}:{REMOVED}"


def names_entry(target: str) -> bool:
    """Whether ``target`` names an identifier (an ``entry:`` target not yet removed)."""
    return target.startswith("entry:") and not target.endswith(f":{REMOVED}")


def masked_target(target: str) -> str:
    """A target for a log line: an identifier's digits masked (``entry:account:CIBBMYKL:******4567``)."""
    kind, _, rest = target.partition(":")
    if kind != "entry":
        return target
    head, _, value = rest.rpartition(":")
    return f"entry:{head}:{mask(value)}"


@dataclass(frozen=True)
class Trip:
    target: str
    count: int
    limit: int
    window_s: int
    at: str  # ISO-8601 UTC
    by: str  # the worker that tripped it
    status: str = ""  # an entry's: reported, confirmed or unlisted when it tripped (its limit depends on it)

    def to_json(self) -> dict[str, Any]:
        out = {"target": self.target, "dimension": dimension(self.target), "count": self.count,
               "limit": self.limit, "window_s": self.window_s, "tripped_at": self.at, "tripped_by": self.by}
        if self.status:
            out["status"] = self.status
        return out


class BrakeStore:
    def __init__(self, client: aioredis.Redis, prefix: str = "sekat:") -> None:
        self._redis = client
        self._p = f"{prefix}brake:"

    @classmethod
    def from_url(cls, url: str, prefix: str = "sekat:", timeout_ms: int = TIMEOUT_MS) -> "BrakeStore":
        return cls(async_client(url, timeout_ms), prefix)

    async def close(self) -> None:
        await self._redis.aclose()

    async def _run(self, build: Any) -> list[Any]:
        try:
            pipe = self._redis.pipeline(transaction=False)
            build(pipe)
            return list(await pipe.execute())
        except REDIS_DOWN as exc:
            raise BlocklistUnavailable(f"safety brake state: {type(exc).__name__}") from exc

    async def add(self, counts: Mapping[str, int], now_s: float, window_s: int) -> dict[str, float]:
        """Add a batch's commands per target; returns each target's sliding count over the last window."""
        if not counts:
            return {}
        index = int(now_s // window_s)
        current, previous = f"{self._p}n:{index}", f"{self._p}n:{index - 1}"
        targets = list(counts)

        def build(pipe: Any) -> None:
            for t in targets:
                pipe.hincrby(current, t, counts[t])
            pipe.expire(current, 2 * window_s + 5)
            pipe.hmget(previous, targets)

        replies = await self._run(build)
        before = replies[-1]
        weight = 1.0 - (now_s - index * window_s) / window_s
        return {t: int(replies[i]) + weight * int(before[i] or 0) for i, t in enumerate(targets)}

    async def trip(self, trip: Trip) -> bool:
        """Record ``trip`` unless another worker already did; True if this call tripped it."""
        body = orjson.dumps(trip.to_json())

        def build(pipe: Any) -> None:
            pipe.hsetnx(f"{self._p}tripped", trip.target, body)

        [created] = await self._run(build)
        if created:
            await self.log({"event": "trip", **trip.to_json()})
        return bool(created)

    async def tripped(self) -> dict[str, dict[str, Any]]:
        [raw] = await self._run(lambda pipe: pipe.hgetall(f"{self._p}tripped"))
        out: dict[str, dict[str, Any]] = {}
        for k, v in raw.items():
            try:
                out[k.decode() if isinstance(k, bytes) else str(k)] = orjson.loads(v)
            except orjson.JSONDecodeError:
                continue
        return out

    async def trip_of(self, target: str) -> dict[str, Any] | None:
        """The trip in force on ``target``, or None if the brake is not engaged on it."""
        [raw] = await self._run(lambda pipe: pipe.hget(f"{self._p}tripped", target))
        if raw is None:
            return None
        trip: dict[str, Any] = orjson.loads(raw)
        return trip

    async def rearm(self, target: str, now_s: float, window_s: int, event: dict[str, Any],
                    tripped_at: str = "") -> dict[str, Any] | None:
        """Lift the brake on ``target`` and forget its recent counts; returns the trip it lifted, or None.

        With ``tripped_at``, only the trip of that time is lifted (one script on the one key, so a trip set
        again meanwhile stays).
        """
        index = int(now_s // window_s)
        found: Any = None
        if tripped_at:
            try:
                found = await self._redis.eval(_LIFT_IF, 1, f"{self._p}tripped", target, tripped_at)  # type: ignore[misc]
            except REDIS_DOWN as exc:
                raise BlocklistUnavailable(f"safety brake state: {type(exc).__name__}") from exc

        def build(pipe: Any) -> None:
            if not tripped_at:
                pipe.hget(f"{self._p}tripped", target)
                pipe.hdel(f"{self._p}tripped", target)
            for i in (index, index - 1):
                pipe.hdel(f"{self._p}n:{i}", target)

        replies = await self._run(build)
        if not tripped_at:
            found = replies[0]
        if found is None:
            return None
        trip: dict[str, Any] = orjson.loads(found)
        await self.log({**event, "trip": trip})
        return trip

    async def log(self, event: Mapping[str, Any]) -> None:
        body = orjson.dumps(dict(event))

        def build(pipe: Any) -> None:
            pipe.lpush(f"{self._p}log", body)
            pipe.ltrim(f"{self._p}log", 0, LOG_KEEP - 1)

        await self._run(build)

    async def forget(self, key: str, why: str) -> tuple[bool, int]:
        """The entry ``key`` purged or erased (``why``): its trip removed, each log event naming it kept without
        it (``removed_target``); (whether it was tripped, how many log events were rewritten)."""
        target = f"entry:{key}"
        [tripped] = await self._run(lambda pipe: pipe.hdel(f"{self._p}tripped", target))
        try:
            rewritten = await self._redis.eval(_LOG_WITHOUT, 1, f"{self._p}log", target,  # type: ignore[misc]
                                               removed_target(key), why)
        except REDIS_DOWN as exc:
            raise BlocklistUnavailable(f"safety brake state: {type(exc).__name__}") from exc
        return bool(tripped), int(rewritten)

    async def history(self, limit: int = 50) -> list[dict[str, Any]]:
        [raw] = await self._run(lambda pipe: pipe.lrange(f"{self._p}log", 0, limit - 1))
        return [orjson.loads(r) for r in raw]
