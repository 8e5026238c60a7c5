"""Redis ACL users for Sekat's processes: which keys and commands each may use, least privilege.

``redis_acl_plan`` is the one statement of the access model (docs/security.md), for three users:

- the worker (default ``sekat``) reads and writes the blocklist index and its change stream, the index
  marker and rebuild lock, the stored replica snapshot, rule state, the safety brake's counts, trips and
  log, who acted on which entry, what was sent to whom and institutions' feedback (a pacs.002 status
  report); it cannot read or write API keys or the API's rate counters;
- the agency API (default ``sekat-api``, ``SEKAT_API_REDIS_URL``) reads index entries and API keys and
  nothing else of the index, and which institutions acted on an entry (the analyst console shows them); it
  counts its rate limits and re-arms the brake (clears a trip and its counts, writes the brake's log),
  keeps the appeals, reads what was sent to whom, keeps institutions' feedback and puts an entry into
  review (a brake trip): it cannot write an entry, announce a change, mint or disable a key;
- the operators' CLI (default ``sekat-admin``) does what the worker does (``sekat blocklist rebuild``
  replays the index), manages API keys (``sekat apikey``), restores the appeals (``sekat appeals restore``)
  and erases an identifier's rule state (``sekat privacy erase``).

Each grant is one purpose: key patterns under ``SEKAT_REDIS_PREFIX``, read-only (``%R~``) or read-write
(``~``), and the commands that purpose sends, the commands inside its Lua scripts included (Redis checks
those too). A grant with keys is a selector ``(...)``, so a command is allowed only on the keys of a grant
that lists it; the keyless grants (connection, transactions, SCAN) are the user's root permissions, which
name no key. Selectors and ``%R~`` need Redis 7.0 or later.

``acl_lines`` renders the plan as ``user`` lines for ``users.acl`` or ``redis.conf`` (``ACL SETUSER``
takes the same rules); ``sekat redis-acls`` prints them and the secured local stack starts Redis with them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from sekat.errors import ConfigError

ROLES = ("worker", "api", "admin")
DEFAULT_USERS = {"worker": "sekat", "api": "sekat-api", "admin": "sekat-admin"}

# Every client: authenticate, check the connection, choose the database of the URL; a Redis Cluster client also
# learns the slots and the commands' key positions, and follows a slot being migrated (ASKING). Sekat's clients
# send no CLIENT SETINFO (``sekat.blocklist.connection.client_options``).
_CONNECT = ("auth", "hello", "ping", "select", "cluster|slots", "command", "asking")


@dataclass(frozen=True)
class Grant:
    """One purpose: ``commands`` on the keys under the prefix matching ``keys`` (none: keyless commands)."""

    purpose: str
    keys: tuple[str, ...]
    commands: tuple[str, ...]
    read_only: bool = False


@dataclass(frozen=True)
class RedisUser:
    role: str  # worker, api or admin
    name: str
    grants: tuple[Grant, ...]


CONNECTION = Grant("connect (redis-py's handshake, cluster discovery)", (), _CONNECT)
INDEX = Grant("blocklist index: entries and change stream, the built marker, the entry count and the removals "
              "it does not count yet, the rebuild lock (its compare-and-act scripts); the purge trims the stream",
              ("bl:*", "index:*"),
              ("get", "mget", "set", "mset", "del", "exists", "watch", "xadd", "xread", "xrevrange", "xinfo|stream",
               "eval", "pexpire", "incrby", "decrby", "xtrim"))
RETENTION = Grant("retention: ended entries by when they ended (the purge's due entries)", ("retention:*",),
                  ("zadd", "zrem", "zrangebyscore"))
SNAPSHOT = Grant("stored replica snapshot: chunks, description, writer lock", ("replica:*",),
                 ("get", "set", "del", "exists", "expire", "pexpire", "persist"))
REPLICA_POSITIONS = Grant("replica positions: each worker's change-stream id (``sekat blocklist import "
                          "--wait-applied`` reads them)", ("replica:seen",), ("hset", "hgetall"))
RULE_STATE = Grant("rule state: window and value scripts, value reads", ("rs:*",),
                   ("evalsha", "mget", "zadd", "zrangebyscore", "zremrangebyscore", "zcard", "pexpire", "set"))
BRAKE_WORKER = Grant("safety brake: count commands per target, trip, log the trip", ("brake:*",),
                     ("hincrby", "hmget", "expire", "hsetnx", "hgetall", "lpush", "ltrim"))
ACTED = Grant("who acted on which entry, the release sweep's schedule (scripts), revoked entries marked due",
              ("acted:*",), ("evalsha", "sadd", "srem", "scard", "smembers", "zadd", "zscore", "zrem", "zrangebyscore"))
WORKER_KEYLESS = Grant("transactions, script loading, index scans", (),
                       ("multi", "exec", "discard", "unwatch", "script|load", "scan", "dbsize"))
ENTRIES_READ = Grant("read index entries (lookups, status checks, linked groups)", ("bl:*",), ("get", "mget"),
                     read_only=True)
KEYS_READ = Grant("verify an API key", ("apikeys",), ("hget",), read_only=True)
RATE_LIMITS = Grant("rate limits: count in a one-minute window (redis-py's INCR is INCRBY), expire it", ("rl:*",),
                    ("incrby", "expire"))
# The brake's keys one by one: a list pushed where the workers keep a hash would stop them counting or tripping.
BRAKE_TRIPS = Grant("safety brake: list trips, re-arm one (remove its trip)", ("brake:tripped",),
                    ("hget", "hgetall", "hdel"))
BRAKE_COUNTS = Grant("safety brake: a re-arm forgets the target's recent counts", ("brake:n:*",), ("hdel",))
BRAKE_LOG = Grant("safety brake: read the log, log a re-arm", ("brake:log",), ("lrange", "lpush", "ltrim"))
APPEALS = Grant("appeals: keep them, their stage, agency and identifier indexes, count them for the deadline "
                "gauges, lock one while it is decided; an erasure deletes an identifier's", ("{appeals}:*",),
                ("get", "mget", "set", "del", "zadd", "zrem", "zrange", "zcard", "zcount", "sadd", "smembers"))
APPEALS_PURGE = Grant("the purge: a purged entry's appeals, and decided appeals past their retention, leave Redis; "
                      "decided appeals not yet filed by when they were decided are filed once",
                      ("{appeals}:*",), ("get", "mget", "set", "smembers", "zrangebyscore", "zrem", "del", "srem",
                                         "zadd"))
ACTED_READ = Grant("see which institutions acted on an entry (the analyst console)", ("acted:*",), ("smembers",),
                   read_only=True)
SENT_WRITE = Grant("what was sent to whom: each command's institution and entries, for feedback", ("sent:*",),
                   ("set",))
SENT_READ = Grant("match feedback to its command", ("sent:*",), ("get",), read_only=True)
FEEDBACK = Grant("institutions' feedback on an entry's commands, its review and victim-mule flags", ("fb:*",),
                 ("hset", "hgetall", "hexists", "get", "set"))
FEEDBACK_FORGET = Grant("an entry purged or erased takes its feedback and flags with it", ("fb:*",), ("del",))
SENT_ERASE = Grant("erasure: delete the sent records that name the identifier", ("sent:*",), ("del",))
BRAKE_FORGET = Grant("safety brake: a purged or erased entry's trip goes, and its log events are kept without it "
                     "(a script)", ("brake:tripped", "brake:log"), ("hdel", "eval", "lrange", "lset"))
BRAKE_REVIEW = Grant("safety brake: an entry put into review by feedback goes to shadow mode", ("brake:tripped",),
                     ("hsetnx",))
API_KEYLESS = Grant("the rate limiter's transaction", (), ("multi", "exec", "discard"))
KEYS_ADMIN = Grant("create, list and disable API keys", ("apikeys",), ("hget", "hgetall", "hset"))
RULE_STATE_ERASE = Grant("erasure: delete one identifier's rule state (``sekat privacy erase``)", ("rs:*",), ("del",))

PLAN: dict[str, tuple[Grant, ...]] = {
    "worker": (CONNECTION, WORKER_KEYLESS, INDEX, RETENTION, SNAPSHOT, REPLICA_POSITIONS, RULE_STATE, BRAKE_WORKER,
               ACTED, SENT_WRITE, SENT_READ, FEEDBACK, FEEDBACK_FORGET, APPEALS_PURGE, BRAKE_FORGET),
    "api": (CONNECTION, API_KEYLESS, ENTRIES_READ, KEYS_READ, RATE_LIMITS, BRAKE_TRIPS, BRAKE_COUNTS, BRAKE_LOG,
            APPEALS, ACTED_READ, SENT_READ, FEEDBACK, BRAKE_REVIEW),
    "admin": (CONNECTION, WORKER_KEYLESS, INDEX, RETENTION, SNAPSHOT, REPLICA_POSITIONS, RULE_STATE, BRAKE_WORKER,
              ACTED, KEYS_ADMIN, RULE_STATE_ERASE, APPEALS, SENT_WRITE, SENT_READ, FEEDBACK, FEEDBACK_FORGET,
              SENT_ERASE, BRAKE_FORGET),
}

_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def redis_acl_plan(users: Mapping[str, str] | None = None) -> list[RedisUser]:
    """The three users (role -> user name; ``DEFAULT_USERS`` for any not given) with their grants."""
    names = {**DEFAULT_USERS, **(users or {})}
    unknown = set(names) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown Redis ACL roles: {', '.join(sorted(unknown))}")
    for name in names.values():
        if not _NAME_RE.match(name):
            raise ValueError(f"Redis ACL user {name!r}: 1-64 letters, digits, '.', '_' or '-'")
    if len(set(names.values())) != len(names):
        raise ValueError("each Redis ACL role needs its own user")
    return [RedisUser(role, names[role], PLAN[role]) for role in ROLES]


def _pattern(prefix: str, key: str) -> str:
    """``prefix`` + ``key`` as a Redis glob: the prefix's own glob characters escaped."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", prefix) + key


def _grant_rules(grant: Grant, prefix: str) -> list[str]:
    mark = "%R~" if grant.read_only else "~"
    return [f"{mark}{_pattern(prefix, k)}" for k in grant.keys] + [f"+{c}" for c in grant.commands]


def user_rules(user: RedisUser, prefix: str) -> list[str]:
    """The ACL rules of ``user`` after its password: no channels, no command, then the keyless grants' commands,
    then one selector per grant with keys (see the module docstring).

    ``prefix`` is ``SEKAT_REDIS_PREFIX``; it may not hold spaces, quotes or parentheses (they would split a rule)."""
    if not prefix or re.search(r"[\s()\"']", prefix):
        raise ConfigError("SEKAT_REDIS_PREFIX", "an ACL key pattern needs a prefix without spaces, quotes or "
                                                "parentheses, such as sekat:")
    rules = ["resetchannels", "-@all"]
    rules += [rule for grant in user.grants if not grant.keys for rule in _grant_rules(grant, prefix)]
    rules += [f"({' '.join(_grant_rules(grant, prefix))})" for grant in user.grants if grant.keys]
    return rules


def acl_lines(plan: list[RedisUser], prefix: str, passwords: Mapping[str, str] | None = None) -> list[str]:
    """``user NAME reset on >PASSWORD RULES`` per user, for ``users.acl``/``redis.conf``.

    ``passwords`` maps a role to its password; a role without one gets the placeholder ``>PASSWORD``."""
    lines = []
    for user in plan:
        password = (passwords or {}).get(user.role, "PASSWORD")
        if not password or any(c.isspace() for c in password):
            raise ValueError(f"the {user.role} user's password may not be empty or hold spaces")
        lines.append(f"user {user.name} reset on >{password} {' '.join(user_rules(user, prefix))}")
    return lines
