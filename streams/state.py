"""Rule state in Redis: the windows and histories behaviour rules need, shared by every worker.

Calls are partitioned by caller and transfers by payer, so the cross-channel
join (calls *to* a customer, transfers *from* them) and the per-payee window
can never be co-partitioned: the state lives in Redis, not in the process, so
it survives a restart and every worker of the group sees the same.

Keys (under the worker's prefix, default ``sekat:``), all with TTLs:

    {prefix}rs:in:{payee key}            zset "{payer key}|{event_id}" -> event ms  (mule_inflow)
    {prefix}rs:out:{caller key}          zset "{callee key}|{event_id}" -> event ms (call_burst)
    {prefix}rs:warn:{phone key}          string "{ms}|{caller}|{call event_id}|{why}": the customer's latest
                                         warning call (cross_channel)
    {prefix}rs:paid:{payer}|{payee key}  string: this payer has paid this payee before (cross_channel)
    {prefix}rs:auto:{rule}|{key}         string: a rule already reported this identifier
    {prefix}rs:trail:{account key}       string ``TrailMark.encode()``: the money trail reached this account
                                         (follow_money; read for every payer and payee of a batch, one MGET)

A batch costs two round trips whatever its size, with a handful of commands
each: ``read_*`` is one pipeline of one Lua script (for every window key of
the batch: add the batch's observations, trim, refresh the TTL and read the
range back, atomically) and one MGET per kind of flag; ``write`` is one
pipeline after the batch's output is acknowledged. Adding before reading, in
one atomic script, means two workers adding to one payee at once each see the
other's transfer; members carry the event id, so a re-processed event is not
counted twice. Windows are on event time (``occurred_at``); observations older
than twice the window (by the wall clock, at least 10 minutes) are trimmed,
so an event later than that is judged on what is left. Only a customer's
latest warning call is kept (a later call replaces it).

Under Redis Cluster (``redis+cluster://``) every key stays in its own slot, so
the state of different payees and callers spreads over every shard: the batch
is still one pipeline, but the window script runs once per hash slot (on the
slot's node, the nodes in parallel) and each MGET once per slot
(``sekat.blocklist.connection.SlotPipeline``). Every key of one script call is in
one slot, so each call stays atomic; the script only ever relates a key to
itself, so splitting the call changes nothing a rule sees. Hash-tagging all
of it into one slot would put every rule-state write on one shard.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from redis.exceptions import NoScriptError, RedisError
from sekat.blocklist.connection import TIMEOUT_MS, AnyRedis, SlotPipeline, Unanswered, async_client
from sekat.rules import call_burst, cross_channel, follow_money, mule_inflow
from sekat.rules.mule_inflow import payee_key
from sekat.rules.policy import Policy
from sekat.rules.registry import CallWarning, Observations, StateWrite, TrailMark

from sekat.errors import BlocklistUnavailable, NotAsked
from sekat.records import Call, Transfer

READ_CAP = 256  # most observations read per key and batch; bounds a batch's cost on a busy merchant
MIN_RETENTION_MS = 10 * 60_000

# KEYS: window keys. ARGV: cutoff, ttl_ms, cap, then per key: n, (score, member) * n, lo, hi.
# Per key it returns the range read back, or 0 when the range holds only what this batch just added
# (the common case of a payee or caller seen once): the caller knows those already, and a short reply
# is most of the saving, since redis-py parses replies in Python.
WINDOW_LUA = """
local cutoff, ttl, cap = ARGV[1], ARGV[2], tonumber(ARGV[3])
local pos, out = 4, {}
for i, key in ipairs(KEYS) do
  local n = tonumber(ARGV[pos]); pos = pos + 1
  local added = {}
  for _ = 1, n do
    redis.call('ZADD', key, ARGV[pos], ARGV[pos + 1]); added[ARGV[pos + 1]] = true; pos = pos + 2
  end
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. cutoff)
  redis.call('PEXPIRE', key, ttl)
  local range = redis.call('ZRANGEBYSCORE', key, ARGV[pos], ARGV[pos + 1], 'WITHSCORES', 'LIMIT', 0, cap)
  pos = pos + 2
  local only_added = true
  for j = 1, #range, 2 do
    if not added[range[j]] then only_added = false; break end
  end
  if only_added then out[i] = 0 else out[i] = range end
end
return out
"""


def _ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


class Windows:
    """The window observations of one batch, grouped by key, as script arguments."""

    def __init__(self) -> None:
        self.adds: dict[str, dict[str, int]] = defaultdict(dict)

    def add(self, key: str, member: str, at_ms: int) -> None:
        self.adds[key][member] = at_ms

    def script_args(self, prefix: str, width_ms: int, now_ms: int) -> tuple[list[str], list[Any], list[list[Any]]]:
        """KEYS, the ARGV head, and each key's ARGV segment (so a cluster can split the call by slot)."""
        retention = max(2 * width_ms, MIN_RETENTION_MS)
        keys: list[str] = []
        head: list[Any] = [now_ms - retention, retention, READ_CAP]
        per_key: list[list[Any]] = []
        for key, members in self.adds.items():
            keys.append(prefix + key)
            args: list[Any] = [len(members)]
            for member, at in members.items():
                args.extend((at, member))
            args.extend((min(members.values()) - width_ms, max(members.values()) + width_ms))
            per_key.append(args)
        return keys, head, per_key


def _points(reply: Any, added: dict[str, int]) -> list[tuple[int, str]]:
    """The script's reply for one key as sorted (ms, party) pairs; members are "{party}|{event_id}"."""
    if reply == 0:  # only this batch's own observations are in range
        points = [(at, member.rpartition("|")[0]) for member, at in added.items()]
    else:
        points = [(int(float(reply[i + 1])), _text(reply[i]).rpartition("|")[0]) for i in range(0, len(reply), 2)]
    points.sort()
    return points


class RuleStateStore:
    def __init__(self, client: AnyRedis, prefix: str = "sekat:") -> None:
        self._redis = client
        self._p = f"{prefix}rs:"
        self._sha = ""
        self._unanswered = Unanswered()  # after a timeout, fail at once for a moment: one timeout per batch at most

    @classmethod
    def from_url(cls, url: str, prefix: str = "sekat:", timeout_ms: int = TIMEOUT_MS) -> "RuleStateStore":
        return cls(async_client(url, timeout_ms), prefix)

    async def close(self) -> None:
        await self._redis.aclose()

    async def _pipeline(self, build: Callable[[Any], None]) -> list[Any]:
        """Run the commands ``build`` queues in one round trip (loading the script once if Redis lost it)."""
        if self._unanswered.quiet:
            raise NotAsked("rule state: Redis timed out a moment ago; not asked")
        for attempt in (1, 2):
            try:
                if not self._sha:
                    self._sha = await self._redis.script_load(WINDOW_LUA)
                pipe = SlotPipeline(self._redis)
                build(pipe)
                return list(await pipe.execute())
            except NoScriptError:
                self._sha = ""  # Redis restarted or flushed its scripts: load again and redo
                if attempt == 2:
                    raise BlocklistUnavailable("rule state: window script could not be loaded") from None
            except (RedisError, OSError) as exc:
                self._unanswered.failed(exc)
                raise BlocklistUnavailable(f"rule state: {type(exc).__name__}") from exc
        raise AssertionError("unreachable")

    async def read_transfers(self, transfers: Sequence[Transfer], policy: Policy, now: datetime) -> Observations:
        mule = policy.params(mule_inflow.ID)
        cc = policy.params(cross_channel.ID)
        follow = policy.params(follow_money.ID)
        if (mule is None and cc is None and follow is None) or not transfers:
            return Observations()
        accounts = list(dict.fromkeys(a.key for t in transfers for a in (t.payer.account, t.payee.account)
                                      if a is not None)) if follow is not None else []
        windows = Windows()
        phones: list[str] = []
        pairs: list[tuple[str, str]] = []
        for t in transfers:
            payee = payee_key(t)
            if payee is None or t.payer.account is None:
                continue
            if mule is not None:
                windows.add(f"in:{payee}", f"{t.payer.account.key}|{t.event_id}", _ms(t.occurred_at))
            if cc is not None:
                pairs.append((t.payer.account.key, payee))  # read for all, so a repeat payment writes nothing
                if t.payer.phone is not None:
                    phones.append(t.payer.phone.key)
        phones = list(dict.fromkeys(phones))
        pairs = list(dict.fromkeys(pairs))
        marks = [f"{mule_inflow.ID}|{k[3:]}" for k in windows.adds] if mule is not None else []
        keys, head, per_key = windows.script_args(self._p, mule.window_minutes * 60_000 if mule else 0, _ms(now))

        def build(pipe: Any) -> None:
            if keys:
                pipe.evalsha_per_key(self._sha, keys, head, per_key)
            if marks:
                pipe.mget([f"{self._p}auto:{m}" for m in marks])
            if phones:
                pipe.mget([f"{self._p}warn:{p}" for p in phones])
            if pairs:
                pipe.mget([f"{self._p}paid:{payer}|{payee}" for payer, payee in pairs])
            if accounts:
                pipe.mget([f"{self._p}trail:{a}" for a in accounts])

        replies = iter(await self._pipeline(build))
        inflow = {k[3:]: _points(r, windows.adds[k]) for k, r in zip(windows.adds, next(replies))} if keys else {}
        auto = {m for m, v in zip(marks, next(replies)) if v} if marks else set()
        warnings: dict[str, list[CallWarning]] = {}
        if phones:
            for phone, raw in zip(phones, next(replies)):
                if raw:
                    at, caller, event_id, why = (_text(raw).split("|", 3) + ["", "", ""])[:4]
                    warnings[phone] = [CallWarning(int(at), caller, event_id, why)]
        paid = {pair for pair, v in zip(pairs, next(replies)) if v} if pairs else set()
        trail: dict[str, TrailMark] = {}
        if accounts:
            for account, raw in zip(accounts, next(replies)):
                mark = TrailMark.decode(_text(raw)) if raw else None
                if mark is not None:
                    trail[account] = mark
        return Observations(inflow=inflow, warnings=warnings, paid_before=frozenset(paid),
                            auto_reported=frozenset(auto), trail=trail)

    async def read_calls(self, calls: Sequence[Call], policy: Policy, now: datetime) -> Observations:
        burst = policy.params(call_burst.ID)
        if burst is None or not calls:
            return Observations()
        windows = Windows()
        for c in calls:
            if not c.caller.protected:
                windows.add(f"out:{c.caller.key}", f"{c.callee.key}|{c.event_id}", _ms(c.occurred_at))
        if not windows.adds:
            return Observations()
        marks = [f"{call_burst.ID}|{k[4:]}" for k in windows.adds]
        keys, head, per_key = windows.script_args(self._p, burst.window_seconds * 1000, _ms(now))

        def build(pipe: Any) -> None:
            pipe.evalsha_per_key(self._sha, keys, head, per_key)
            pipe.mget([f"{self._p}auto:{m}" for m in marks])

        windows_reply, auto_reply = await self._pipeline(build)
        outbound = {k[4:]: _points(r, windows.adds[k]) for k, r in zip(windows.adds, windows_reply)}
        auto = {m for m, v in zip(marks, auto_reply) if v}
        return Observations(outbound=outbound, auto_reported=frozenset(auto))

    async def write(self, writes: Sequence[StateWrite]) -> None:
        if not writes:
            return
        latest: dict[str, StateWrite] = {}
        for w in writes:
            if w.kind == "warned" and (w.key not in latest or w.score > latest[w.key].score):
                latest[w.key] = w

        def build(pipe: Any) -> None:
            for w in latest.values():
                pipe.set(f"{self._p}warn:{w.key}", f"{w.score}|{w.member}", ex=w.ttl_s)
            for w in writes:
                if w.kind == "paid":
                    pipe.set(f"{self._p}paid:{w.key}|{w.member}", b"1", ex=w.ttl_s)
                elif w.kind == "reported":
                    pipe.set(f"{self._p}auto:{w.key}", b"1", ex=w.ttl_s)
                elif w.kind == "trail":
                    pipe.set(f"{self._p}trail:{w.key}", w.member, ex=w.ttl_s)

        await self._pipeline(build)
