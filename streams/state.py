"""Rule state in Redis: what behaviour rules keep between events, shared by every worker.

Calls are partitioned by caller and transfers by payer, so the cross-channel
join (calls *to* a customer, transfers *from* them) and the per-payee window
can never be co-partitioned: the state lives in Redis, not in the process, so
it survives a restart and every worker of the group sees the same.

Each rule declares what it keeps on its ``RuleSpec.state`` (``sekat.rules.registry``);
this store knows two kinds and no rule:

    {prefix}rs:{family}:{width ms}:{key}  zset of a ``Window``: "{party}|{slot}l" and "{party}|{slot}h"
                                          -> the party's earliest and latest event ms in each slot of
                                          ``width`` (``sekat.rules.windows`` shows why that is exact);
                                          and "#" -> NOTED + the start of the latest window found
                                          holding the threshold's worth of parties
    {prefix}rs:{family}:{key}             string of a ``Values`` family, written by the rule's writer

A batch costs two round trips whatever its size: the read is one pipeline of
one Lua call (every window key of the batch: add the batch's events, trim,
refresh the TTL and answer for each event, atomically) and one MGET per
values family; the write is one pipeline after the batch's output is
acknowledged. The script adds a key's events in one ZADD per flag (the
batch's earliest and latest point of each party and slot), then answers per
event with a flag, "1" when some window holding the event reaches the
threshold (the sweep stops there), and per key with a bare 0 when no event
of the key does: the common reply is a few bytes whatever a key's history,
and the work per event is bounded by the threshold. A window found full
stays full until its points are trimmed (points are only ever added, and a
party's earliest and latest point in a slot stay in any window that held one
of its points), so the key notes the latest one's start ("#", ignored once
the start is older than the trim's cutoff, as the window's first point is): a
busy key's events inside it are answered from that note, in this batch and
the next ones, without reading a point. The note's score is its start plus
``NOTED`` (~31,700 years in ms), beyond any event time, so no window's range
read ever meets it: a worker running a script from before the note reads the
same points as before (its only trace there is one more member in ZCARD,
which can only make it sweep a key it would have skipped, to the same
answer). Adding before answering, in one atomic script, means two workers
adding to one payee at once each see the other's transfer; a re-processed
event changes nothing (a party is kept once per slot), so redelivery never
double-counts. Windows are on event time (``occurred_at``); observations
older than twice the window (by the wall clock, at least 10 minutes) are
trimmed, so an event later than that is judged on what is left. A window's
key names its width, so a policy that changes the width starts that window
afresh.

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

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from redis.exceptions import NoScriptError
from sekat.blocklist.connection import REDIS_DOWN, TIMEOUT_MS, AnyRedis, SlotPipeline, Unanswered, async_client
from sekat.rules.policy import Policy
from sekat.rules.registry import Observations, StateWrite, Values

from sekat.errors import BlocklistUnavailable, NotAsked
from sekat.records import Call, Sms, Transfer

MIN_RETENTION_MS = 10 * 60_000

# KEYS: window keys. ARGV: cutoff ms, ttl ms, then per key: width ms, threshold, n, (event ms, party) * n.
# Per key it returns 0 when no event of the key reaches the threshold, else a string of one flag per event ("1":
# reached). Points are read in pages, so a busy key costs what the threshold needs; a window found full is noted
# on the key ("#") and answers for the events it holds without a read.
WINDOW_LUA = """
local PAGE = 32
local FULL = '#'  -- member whose score is NOTED + the start of the latest window found holding cap parties
local NOTED = 1e15  -- beyond every event time: no window's ZRANGEBYSCORE ever reads the note
local function party(member)
  return string.sub(member, 1, string.find(member, '|', 1, true) - 1)
end
-- Distinct parties in the fullest window of width w holding t (own at t included), stopping at cap; and the
-- start of the window that reached cap (nil when none did).
local function fullest(key, t, own, w, cap)
  local s, m, p, n = {}, {}, {}, 0
  local off, done, pending = 0, false, true
  local function more()
    if done then return false end
    local before = n
    local page = redis.call('ZRANGEBYSCORE', key, t - w, t + w, 'WITHSCORES', 'LIMIT', off, PAGE)
    off = off + #page / 2
    if #page < 2 * PAGE then done = true end
    for k = 1, #page, 2 do
      local member = page[k]
      local at = tonumber(page[k + 1])
      if pending and at > t then n = n + 1; s[n] = t; p[n] = own; pending = false end
      n = n + 1; s[n] = at; m[n] = page[k]
    end
    if done and pending then n = n + 1; s[n] = t; p[n] = own; pending = false end
    return n > before
  end
  local inside, distinct, best, right, left = {}, 0, 0, 1, 1
  while left <= n or more() do
    local start = s[left]
    if start > t then break end
    local edge = start + w
    while right <= n or more() do
      if s[right] > edge then break end
      local q = p[right]
      if not q then q = party(m[right]); p[right] = q end
      local c = inside[q]
      if c then inside[q] = c + 1 else
        inside[q] = 1; distinct = distinct + 1
        if distinct >= cap then return cap, start end
      end
      right = right + 1
    end
    if distinct > best then best = distinct end
    local q = p[left]
    local c = inside[q]
    if c == 1 then inside[q] = nil; distinct = distinct - 1 else inside[q] = c - 1 end
    left = left + 1
  end
  return best, nil
end

local cutoff, ttl = ARGV[1], ARGV[2]
local cutoff_ms = tonumber(cutoff)
local CHUNK = 2000  -- arguments per ZADD: well inside Lua's stack
-- the batch's earliest (or latest) point of each party and slot, in one ZADD LT (or GT) per CHUNK arguments
local function add(key, flag, points, suffix)
  local args, m = {}, 0
  for member, at in pairs(points) do
    args[m + 1] = at; args[m + 2] = member .. suffix; m = m + 2
    if m >= CHUNK then redis.call('ZADD', key, flag, unpack(args, 1, m)); m = 0 end
  end
  if m > 0 then redis.call('ZADD', key, flag, unpack(args, 1, m)) end
end
local pos, out = 3, {}
for i, key in ipairs(KEYS) do
  local w, cap, n = tonumber(ARGV[pos]), tonumber(ARGV[pos + 1]), tonumber(ARGV[pos + 2])
  local base = pos + 3
  local lo, hi = {}, {}
  for j = base, base + 2 * n - 1, 2 do
    local t = tonumber(ARGV[j])
    local member = ARGV[j + 1] .. '|' .. math.floor(t / w)
    local l = lo[member]
    if not l then lo[member] = t; hi[member] = t
    elseif t < l then lo[member] = t
    elseif t > hi[member] then hi[member] = t end
  end
  add(key, 'LT', lo, 'l')
  add(key, 'GT', hi, 'h')
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. cutoff)
  redis.call('PEXPIRE', key, ttl)
  local flags, reached, full = {}, false, {}  -- full: starts of windows found holding cap parties
  -- each party kept holds two members per slot: fewer than 2 * cap members cannot make cap parties
  if redis.call('ZCARD', key) >= 2 * cap then
    -- a full window stays full until its points are trimmed: its note holds until its start is past the cutoff
    local noted = redis.call('ZSCORE', key, FULL)
    noted = noted and tonumber(noted) - NOTED
    if noted and noted < cutoff_ms then noted = nil end  -- some of its points may be trimmed: judge afresh
    if noted then full[1] = noted end
    local latest = noted
    for j = base, base + 2 * n - 1, 2 do
      local t, c = tonumber(ARGV[j]), nil
      for _, start in ipairs(full) do  -- a window already found full that holds t answers for t as well
        if start <= t and t <= start + w then c = cap; break end
      end
      if not c then
        local start
        c, start = fullest(key, t, ARGV[j + 1], w, cap)
        if start then
          full[#full + 1] = start
          if not latest or start > latest then latest = start end
        end
      end
      if c >= cap then reached = true; flags[#flags + 1] = '1' else flags[#flags + 1] = '0' end
    end
    if latest and latest ~= noted then redis.call('ZADD', key, NOTED + latest, FULL) end
  end
  if reached then out[i] = table.concat(flags) else out[i] = 0 end
  pos = base + 2 * n
end
return out
"""


# KEYS: keys to set. ARGV: ttl s, then one value per key; replies 1 per key. One command for a batch's values of
# one TTL: redis-py spends more packing a command than Redis spends running it.
SET_LUA = """
local ttl, out = ARGV[1], {}
for i, key in ipairs(KEYS) do redis.call('SET', key, ARGV[i + 1], 'EX', ttl); out[i] = 1 end
return out
"""


def _ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


class _Windows:
    """One batch's window observations, grouped by Redis key, as the script's arguments."""

    def __init__(self) -> None:
        self.keys: dict[str, tuple[str, int, list[Any], list[str]]] = {}  # key -> (family, threshold, args, ids)

    def add(self, family: str, prefix: str, width: int, threshold: int,
            observations: Iterable[tuple[str, str, int, str]]) -> None:
        """(key, party, event ms, event id) of one window's events: each counted in ``prefix + key``."""
        keys = self.keys
        for key, party, at_ms, event_id in observations:
            got = keys.get(prefix + key)
            if got is None:
                got = keys[prefix + key] = (family, threshold, [width, threshold, 0], [])
            args = got[2]
            args.append(at_ms)
            args.append(party)
            got[3].append(event_id)

    def arguments(self) -> list[list[Any]]:
        """Each key's segment of the script's arguments: width, threshold, n, then n (event ms, party)."""
        out = []
        for _, _, args, ids in self.keys.values():
            args[2] = len(ids)
            out.append(args)
        return out

    def answers(self, replies: Sequence[Any]) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {}
        for (family, threshold, _, ids), reply in zip(self.keys.values(), replies):
            if reply == 0:  # no event of this key reached the threshold: the common case
                continue
            mine = counts.setdefault(family, {})
            for event_id, flag in zip(ids, reply):
                if flag == 49:  # b"1": some window holding the event reached the threshold
                    mine[event_id] = threshold
        return counts


class RuleStateStore:
    def __init__(self, client: AnyRedis, prefix: str = "sekat:") -> None:
        self._redis = client
        self._p = f"{prefix}rs:"
        self._sha = ""
        self._set_sha = ""
        self._staged: dict[str, StateWrite] = {}  # decided, not yet written: Redis key -> write
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
                    self._set_sha = await self._redis.script_load(SET_LUA)
                pipe = SlotPipeline(self._redis)
                build(pipe)
                return list(await pipe.execute())
            except NoScriptError:
                self._sha = ""  # Redis restarted or flushed its scripts: load again and redo
                if attempt == 2:
                    raise BlocklistUnavailable("rule state: window script could not be loaded") from None
            except REDIS_DOWN as exc:
                self._unanswered.failed(exc)
                raise BlocklistUnavailable(f"rule state: {type(exc).__name__}") from exc
        raise AssertionError("unreachable")

    async def read(self, stream: str, events: Sequence[Any], policy: Policy, now: datetime) -> Observations:
        """The state every rule of ``policy`` keeps on ``stream``, for ``events``, with their windows updated."""
        rules = policy.keeping_state(stream)
        if not rules or not events:
            return Observations()
        windows = _Windows()
        values: dict[str, dict[str, None]] = {}
        retention = MIN_RETENTION_MS
        p = self._p
        stamps: list[int] = []  # each event's ms, once for every window of the stream
        for rule in rules:
            for state in rule.spec.state:
                if state.stream != stream:
                    continue
                if isinstance(state, Values):
                    keys = values.setdefault(state.family, {})
                    for named in map(state.keys, events):
                        for k in named:
                            keys[k] = None
                    continue
                width, threshold = state.width_ms(rule.params), state.threshold(rule.params)
                retention = max(retention, 2 * width)
                if not stamps:
                    stamps = [_ms(event.occurred_at) for event in events]
                key_of, party_of, when, params = state.key, state.party, state.when, rule.params
                windows.add(state.family, f"{p}{state.family}:{width}:", width, threshold, (
                    (key, party, at_ms, event.event_id) for event, at_ms in zip(events, stamps)
                    if (when is None or when(event, params)) and (key := key_of(event)) is not None
                    and (party := party_of(event)) is not None))
        families = [(family, list(keys)) for family, keys in values.items() if keys]
        if not windows.keys and not families:
            return Observations()
        head = [_ms(now) - retention, retention]

        def build(pipe: Any) -> None:
            if windows.keys:
                keys = list(windows.keys)
                pipe.evalsha_per_key(self._sha, keys, head, windows.arguments())
            for family, keys in families:
                named = f"{p}{family}:"
                pipe.mget([named + k for k in keys])

        replies = iter(await self._pipeline(build))
        counts = windows.answers(next(replies)) if windows.keys else {}
        found: dict[str, dict[str, str]] = {}
        staged = self._staged
        for family, keys in families:
            got = found[family] = {k: _text(v) for k, v in zip(keys, next(replies)) if v is not None}
            if staged:
                for k in keys:
                    w = staged.get(f"{p}{family}:{k}")
                    if w is not None:
                        got[k] = w.member
        return Observations(counts=counts, values=found)

    async def read_transfers(self, transfers: Sequence[Transfer], policy: Policy, now: datetime) -> Observations:
        return await self.read("transfers", transfers, policy, now)

    async def read_calls(self, calls: Sequence[Call], policy: Policy, now: datetime) -> Observations:
        return await self.read("calls", calls, policy, now)

    async def read_sms(self, messages: Sequence[Sms], policy: Policy, now: datetime) -> Observations:
        return await self.read("sms", messages, policy, now)

    def _latest(self, writes: Sequence[StateWrite]) -> dict[str, StateWrite]:
        """Of one batch's writes to each key, the one with the highest score (the latest on ties)."""
        latest: dict[str, StateWrite] = {}
        p = self._p
        for w in writes:
            key = f"{p}{w.kind}:{w.key}"
            old = latest.get(key)
            if old is None or w.score >= old.score:
                latest[key] = w
        return latest

    def stage(self, writes: Sequence[StateWrite]) -> None:
        """A decided batch's writes, which ``write`` sends once its output is acknowledged: until then this
        worker's reads see them as if written, so the next batch need not wait for the round trips (a batch
        is judged as if the batches before it had run one after the other)."""
        self._staged.update(self._latest(writes))

    async def write(self, writes: Sequence[StateWrite]) -> None:
        if not writes:
            return
        latest = self._latest(writes)
        try:
            await self._write(latest)
        finally:  # written, or given up on: a later batch's write to the same key stays staged
            staged = self._staged
            for key, w in latest.items():
                if staged.get(key) is w:
                    del staged[key]

    async def _write(self, latest: dict[str, StateWrite]) -> None:
        by_ttl: dict[int, tuple[list[str], list[list[str]]]] = {}
        for key, w in latest.items():
            keys, values = by_ttl.setdefault(w.ttl_s, ([], []))
            keys.append(key)
            values.append([w.member])

        def build(pipe: Any) -> None:
            for ttl, (keys, values) in by_ttl.items():
                pipe.evalsha_per_key(self._set_sha, keys, [ttl], values)

        await self._pipeline(build)
