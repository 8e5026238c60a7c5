"""Redis connections: the one place a Redis client is made, for one server or a Redis Cluster.

``SEKAT_REDIS_URL`` chooses, and every Redis user (the index, the replica, rule state, API keys, the
API's rate limiter, the CLI, the benchmarks) gets its client here:

    redis://host:port/db, rediss://..., unix://...       one server (redis-py's ``Redis``)
    redis+cluster://[user:password@]host:port[,host:port...]
    rediss+cluster://...                                  Redis Cluster (redis-py's ``RedisCluster``): the
                                                          addresses are seeds, the client learns every shard
                                                          and follows slot moves and failovers itself

Under Redis Cluster a command with several keys must name keys of one hash slot. The helpers below keep
the callers' code one shape for both: ``mget`` splits a multi-key read by slot (one pipelined MGET per
slot, replies put back in order), ``scan_keys`` scans every primary, and ``SlotPipeline`` queues a batch of
commands whose multi-key ones (MGET, the rule-state window script) are split per slot and whose replies
come back as if they had been one command. On one server all of them are the plain single command.
State that must stay atomic across several keys (a Lua script or a MULTI over them) is sharded instead into
hash-tagged groups: ``spread_tags`` names groups whose slots are spread evenly over the slot space, and
``slot_group`` says which group a key belongs to (``sekat.release.acted`` is the user).

Every client is made with the same options (``client_options``): a socket timeout (``SEKAT_REDIS_TIMEOUT_MS``,
500 ms by default, for the hot path's reads and writes), the same timeout to connect, and no retries inside
redis-py. A Redis that hangs instead of refusing (stopped, or behind a network black hole) then costs a caller
one timeout, not redis-py's default of four attempts; the callers retry on their own terms. A caller that
waits on Redis on purpose (XREAD BLOCK) adds its wait to the timeout; reads and writes of whole batches of
the index (the replica's start-up read, imports, rebuilds) give a longer timeout of their own. After a
timeout, a hot-path user stops asking for a moment (``Unanswered``), so that a hung Redis costs a batch at
most about one timeout, not one per command.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from functools import lru_cache
from typing import Any
from urllib.parse import unquote, urlparse

import time

import hiredis
import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.cluster import ClusterNode
from redis.crc import key_slot
from redis.exceptions import RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeout
from redis.retry import Retry

from sekat.redis_url import CLUSTER_SCHEMES, cluster_seeds, is_cluster

try:  # redis-py >= 7: ``driver_info=None`` sends no CLIENT SETINFO; before, ``lib_name``/``lib_version`` None
    from redis.driver_info import DriverInfo  # noqa: F401
    _NO_SETINFO: dict[str, Any] = {"driver_info": None}
except ImportError:  # pragma: no cover - older redis-py
    _NO_SETINFO = {"lib_name": None, "lib_version": None}

SLOTS = 16384  # hash slots of a Redis Cluster
# Redis not answering, or answering with an error: what every caller catches. A cluster client none of whose
# nodes answers raises RedisClusterUnreachableError, which is not a RedisError.
REDIS_DOWN = (RedisError, RedisClusterException, OSError)
AnyRedis = aioredis.Redis | aioredis.RedisCluster
AnySyncRedis = redis.Redis | redis.RedisCluster

TIMEOUT_MS = 500  # SEKAT_REDIS_TIMEOUT_MS's default: a hung Redis delays a batch about this long
SCAN_TIMEOUT_MS = 30_000  # a reader of the whole index (start-up, stored snapshots): SCAN/MGET of thousands of keys
INDEX_TIMEOUT_MS = 5000  # writes of a whole batch of reports, imports and rebuilds: large pipelines and scripts
HEALTH_CHECK_S = 30  # a connection idle this long is PINGed before use (a dead peer is found before a command)
PROBE_TIMEOUT_S = 2.0  # a health probe's wait for PING: /healthz answers well inside its caller's timeout
QUIET_AFTER_TIMEOUT_S = 2.0  # after a timeout, a hot-path user does not ask Redis again for this long


def client_options(timeout_ms: int = TIMEOUT_MS, blocking_ms: int = 0, sync: bool = False) -> dict[str, Any]:
    """The options every client is made with: ``timeout_ms`` per command (plus ``blocking_ms`` for a client
    that waits on purpose, XREAD BLOCK) and to connect, no retries inside redis-py (a hung Redis would cost
    four timeouts a command), idle connections checked before use, and no ``CLIENT SETINFO`` on connecting:
    the ACL users of ``sekat.redis_acl`` are not granted it (Redis 7.0 does not know it, and on 7.2 each
    refusal would be an entry in the ACL log)."""
    timeout = timeout_ms / 1000
    return {"socket_timeout": timeout + blocking_ms / 1000, "socket_connect_timeout": timeout,
            "health_check_interval": HEALTH_CHECK_S,
            "retry": Retry(NoBackoff(), 0) if sync else AsyncRetry(NoBackoff(), 0), **_NO_SETINFO}


def timed_out(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is Redis not answering in time, as opposed to refusing or failing."""
    while exc is not None:
        if isinstance(exc, (RedisTimeout, TimeoutError)):
            return True
        exc = exc.__cause__  # type: ignore[assignment]
    return False


class Unanswered:
    """A hot-path user's memory of Redis timing out: after a timeout it does not ask again for ``quiet_s``.

    A refusing Redis fails at once, but a hung one costs every command its timeout; a batch makes several
    commands (evidence, rule state read and write), so it would pay several timeouts. While ``quiet`` the user
    answers without Redis (the replica from its own status, rule state degraded), as if Redis had refused.
    """

    def __init__(self, quiet_s: float = QUIET_AFTER_TIMEOUT_S, clock: Any = time.monotonic) -> None:
        self.quiet_s = quiet_s
        self._clock = clock
        self._until = 0.0

    @property
    def quiet(self) -> bool:
        return self._clock() < self._until

    def failed(self, exc: BaseException) -> None:
        """Note a failed command: a timeout starts a quiet period."""
        if timed_out(exc):
            self._until = self._clock() + self.quiet_s


def _credentials(url: str) -> dict[str, Any]:
    parsed = urlparse(url)
    creds: dict[str, Any] = {}
    if "@" in parsed.netloc:
        userinfo = parsed.netloc.rpartition("@")[0]
        user, sep, password = userinfo.partition(":")
        if sep:
            creds["password"] = unquote(password)
            if user:
                creds["username"] = unquote(user)
        else:
            creds["password"] = unquote(user)
    if CLUSTER_SCHEMES[parsed.scheme]:
        creds["ssl"] = True
    return creds


class _Packer:
    """Commands packed by hiredis in one C call: redis-py's own packer runs two Python generators over every
    argument, which on the hot path (a batch's window arguments and MGET keys) cost more than Redis takes to
    answer. Anything hiredis does not take (a memoryview, a bool, None) goes to redis-py's packer, which
    packs or refuses it as before."""

    def __init__(self, fallback: Any) -> None:
        self._fallback = fallback

    def pack(self, *args: Any) -> list[bytes]:
        if type(args[0]) is str and " " not in args[0]:
            try:
                return [hiredis.pack_command(args)]
            except TypeError:
                pass
        return self._fallback.pack(*args)  # type: ignore[no-any-return]


def _fast_packing(connection_class: type) -> type:
    """``connection_class`` (TCP, TLS or Unix socket: whatever the URL chose) with ``_Packer``."""
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        connection_class.__init__(self, *args, **kwargs)
        if getattr(self, "_command_packer", None) is not None:
            self._command_packer = _Packer(self._command_packer)
    return type(f"Fast{connection_class.__name__}", (connection_class,), {"__init__": __init__})


def async_client(url: str, timeout_ms: int = TIMEOUT_MS, blocking_ms: int = 0, **options: Any) -> AnyRedis:
    """An asyncio client for ``url`` with ``client_options`` (``options`` override them); no connection is
    made until the first command."""
    options = {**client_options(timeout_ms, blocking_ms), **options}
    if not is_cluster(url):
        client = aioredis.Redis.from_url(url, **options)
        pool = client.connection_pool
        pool.connection_class = _fast_packing(pool.connection_class)
        return client
    nodes = [AsyncClusterNode(host, port) for host, port in cluster_seeds(url)]
    return aioredis.RedisCluster(startup_nodes=nodes, **_credentials(url), **options)


def sync_client(url: str, timeout_ms: int = INDEX_TIMEOUT_MS, **options: Any) -> AnySyncRedis:
    """A blocking client for ``url`` (threads, the CLI, benchmarks, tests) with ``client_options``
    (``options`` override them)."""
    options = {**client_options(timeout_ms, sync=True), **options}
    if not is_cluster(url):
        return redis.Redis.from_url(url, **options)
    nodes = [ClusterNode(host, port) for host, port in cluster_seeds(url)]
    return redis.RedisCluster(startup_nodes=nodes, **_credentials(url), **options)


def by_slot(keys: Sequence[str | bytes]) -> dict[int, list[int]]:
    """Positions of ``keys`` grouped by hash slot, slots in first-seen order."""
    groups: dict[int, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key_slot(key.encode() if isinstance(key, str) else key), []).append(i)
    return groups


@lru_cache(maxsize=None)
def spread_tags(n: int) -> tuple[str, ...]:
    """``n`` hash tags, the g-th one hashing into the g-th n-th of the slot space (its slots ``g*16384//n`` on).

    A key whose name holds ``{tag}`` is stored in the tag's slot, whatever else the name says; with tags spread
    like this, ``n`` groups of keys land on every master of an evenly split cluster (3 masters, 16 groups: 5 or
    6 groups each), and group g sits with the keys whose own slots are in the same range (``slot_group``).
    """
    tags: list[str] = []
    for g in range(n):
        low, high = g * SLOTS // n, (g + 1) * SLOTS // n
        i = 0
        while not low <= key_slot(str(i).encode()) < high:
            i += 1
        tags.append(str(i))
    return tuple(tags)


def slot_group(key: str, n: int) -> int:
    """Which of ``n`` groups (see ``spread_tags``) ``key`` belongs to: the n-th of the slot space its slot is in."""
    return key_slot(key.encode()) * n // SLOTS


async def mget(client: AnyRedis, keys: Sequence[str | bytes]) -> list[Any]:
    """MGET on one server; on a cluster one MGET per slot, pipelined, replies in the order of ``keys``."""
    if not keys:
        return []
    if isinstance(client, aioredis.RedisCluster):
        return list(await client.mget_nonatomic(list(keys)))
    return list(await client.mget(list(keys)))


def sync_mget(client: AnySyncRedis, keys: Sequence[str | bytes]) -> list[Any]:
    if not keys:
        return []
    if isinstance(client, redis.RedisCluster):
        return list(client.mget_nonatomic(list(keys)))
    return list(client.mget(list(keys)))


async def scan_keys(client: AnyRedis, match: str, count: int = 1000) -> AsyncIterator[list[bytes]]:
    """Every key matching ``match`` (on a cluster: on every primary), in batches of about ``count``."""
    batch: list[bytes] = []
    async for key in client.scan_iter(match=match, count=count):
        batch.append(key)
        if len(batch) >= count:
            yield batch
            batch = []
    if batch:
        yield batch


def sync_scan_keys(client: AnySyncRedis, match: str, count: int = 1000) -> Iterator[list[bytes]]:
    """Every key matching ``match`` (on a cluster: on every primary, one after the other), a batch per SCAN reply
    (about ``count`` keys).

    Each reply is a batch as it comes, with no key-by-key regrouping: the replica's start-up scans 10 M keys
    through here on a cluster.
    """
    servers = ([client.get_redis_connection(node) for node in client.get_primaries()]
               if isinstance(client, redis.RedisCluster) else [client])
    for server in servers:
        cursor = 0
        while True:
            cursor, keys = server.scan(cursor, match=match, count=count)
            if keys:
                yield keys
            if cursor == 0:
                break


class SlotPipeline:
    """A non-transactional pipeline whose multi-key commands work on a cluster too.

    ``mget`` and ``evalsha_per_key`` each stand for one reply in ``execute()``'s result, whatever the
    topology: on one server they are one command; on a cluster they are split into one command per hash
    slot (sent to the slots' nodes in parallel by redis-py's cluster pipeline) and the parts' replies are
    put back in the order of the keys. Any other command is queued as is (single-key commands only).
    """

    def __init__(self, client: AnyRedis) -> None:
        self._cluster = isinstance(client, aioredis.RedisCluster)
        self._pipe = client.pipeline(transaction=False)
        self._parts: list[tuple[int, list[list[int]] | None]] = []  # per reply: (commands queued, key groups)

    def __getattr__(self, name: str) -> Any:
        command = getattr(self._pipe, name)

        def queue(*args: Any, **kwargs: Any) -> "SlotPipeline":
            command(*args, **kwargs)
            self._parts.append((1, None))
            return self
        return queue

    def mget(self, keys: Sequence[str]) -> "SlotPipeline":
        if not self._cluster:
            self._pipe.mget(list(keys))
            self._parts.append((1, None))
            return self
        groups = list(by_slot(keys).values())
        for positions in groups:
            # redis-py's cluster pipeline refuses .mget()/.evalsha() outright; sent as raw commands, each
            # single-slot one is routed to its slot's node
            self._pipe.execute_command("MGET", *(keys[i] for i in positions))
        self._parts.append((len(groups), groups))
        return self

    def evalsha_per_key(self, sha: str, keys: Sequence[str], head: Sequence[Any],
                        per_key: Sequence[Sequence[Any]]) -> "SlotPipeline":
        """EVALSHA of a script whose ARGV is ``head`` then one segment per key and whose reply is one item per key."""
        groups = list(by_slot(keys).values()) if self._cluster else [list(range(len(keys)))]
        for positions in groups:
            args = list(head)
            for i in positions:
                args.extend(per_key[i])
            self._pipe.execute_command("EVALSHA", sha, len(positions), *(keys[i] for i in positions), *args)
        self._parts.append((len(groups), groups if self._cluster else None))
        return self

    async def execute(self) -> list[Any]:
        raw = await self._pipe.execute()
        out: list[Any] = []
        pos = 0
        for n, groups in self._parts:
            if groups is None:
                out.append(raw[pos])
            else:
                joined: list[Any] = [None] * sum(len(g) for g in groups)
                for positions, reply in zip(groups, raw[pos:pos + n]):
                    for i, value in zip(positions, reply):
                        joined[i] = value
                out.append(joined)
            pos += n
        return out
