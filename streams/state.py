"""Rule state in Redis: the windows and histories behaviour rules need, shared by every worker.

Calls are partitioned by caller and transfers by payer, so the cross-channel
join (calls *to* a customer, transfers *from* them) and the per-payee window
can never be co-partitioned: the state lives in Redis, not in the process, so
it survives a restart and every worker of the group sees the same.

Keys (under the worker's prefix, default ``sekat:``), all with TTLs:

    {prefix}rs:in:{payee key}     zset  "{payer key}|{event_id}" -> event time ms   (mule_inflow)
    {prefix}rs:out:{caller key}   zset  "{callee key}|{event_id}" -> event time ms  (call_burst)
    {prefix}rs:warn:{phone key}   zset  "{caller}|{call event_id}|{why}" -> ms     (cross_channel)
    {prefix}rs:paid:{payer key}   set   payee keys paid before                      (cross_channel)
    {prefix}rs:auto:{rule}|{key}  string: a rule already reported this identifier

One batch costs two round trips: ``read_*`` (one pipeline) and ``write`` (one
pipeline, after the batch's output is acknowledged). ``read_*`` first *adds*
the batch's own observations to the windows, then reads them back, so two
workers adding to one payee at once each see the other's transfer; members
carry the event id, so a re-processed event is not counted twice. Windows are
on event time (``occurred_at``); observations older than twice the window
(by the wall clock) are trimmed, so an event later than that is judged on
what is left.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from rules import call_burst, cross_channel, mule_inflow
from rules.mule_inflow import payee_key
from rules.policy import Policy
from rules.registry import CallWarning, Observations, StateWrite
from sekat.errors import BlocklistUnavailable
from sekat.records import Call, Transfer

READ_CAP = 5000  # most observations read per key and batch; bounds a batch's cost on a busy merchant
MIN_RETENTION_MS = 10 * 60_000


def _ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


class RuleStateStore:
    def __init__(self, client: aioredis.Redis, prefix: str = "sekat:") -> None:
        self._redis = client
        self._p = f"{prefix}rs:"

    @classmethod
    def from_url(cls, url: str, prefix: str = "sekat:") -> "RuleStateStore":
        client = aioredis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0,
                                         health_check_interval=30)
        return cls(client, prefix)

    async def close(self) -> None:
        await self._redis.aclose()

    async def _run(self, pipe: Any) -> list[Any]:
        try:
            return list(await pipe.execute())
        except (RedisError, OSError) as exc:
            raise BlocklistUnavailable(f"rule state: {type(exc).__name__}") from exc

    def _window(self, pipe: Any, plan: list[Any], key: str, adds: dict[str, int], times: list[int], width: int,
                now_ms: int, tag: tuple[str, str]) -> None:
        retention = max(2 * width, MIN_RETENTION_MS)
        if adds:
            pipe.zadd(key, adds)
            plan.append(None)
        pipe.zremrangebyscore(key, "-inf", now_ms - retention)
        pipe.pexpire(key, retention)
        pipe.zrangebyscore(key, min(times) - width, max(times) + width, start=0, num=READ_CAP, withscores=True)
        plan.extend((None, None, tag))

    async def read_transfers(self, transfers: Sequence[Transfer], policy: Policy, now: datetime) -> Observations:
        mule = policy.params(mule_inflow.ID)
        cc = policy.params(cross_channel.ID)
        if (mule is None and cc is None) or not transfers:
            return Observations()
        now_ms = _ms(now)
        pipe = self._redis.pipeline(transaction=False)
        plan: list[Any] = []
        if mule is not None:
            adds: dict[str, dict[str, int]] = defaultdict(dict)
            times: dict[str, list[int]] = defaultdict(list)
            for t in transfers:
                payee = payee_key(t)
                if payee is not None and t.payer.account is not None:
                    adds[payee][f"{t.payer.account.key}|{t.event_id}"] = _ms(t.occurred_at)
                    times[payee].append(_ms(t.occurred_at))
            for payee in adds:
                self._window(pipe, plan, f"{self._p}in:{payee}", adds[payee], times[payee],
                             mule.window_minutes * 60_000, now_ms, ("inflow", payee))
                pipe.exists(f"{self._p}auto:{mule_inflow.ID}|{payee}")
                plan.append(("auto", f"{mule_inflow.ID}|{payee}"))
        if cc is not None:
            span: dict[str, list[int]] = defaultdict(list)
            pairs: set[tuple[str, str]] = set()
            for t in transfers:
                payee = payee_key(t)
                if t.payer.phone is not None and payee is not None and t.payer.account is not None:
                    span[t.payer.phone.key].append(_ms(t.occurred_at))
                    pairs.add((t.payer.account.key, payee))
            lookback = cc.lookback_minutes * 60_000
            for phone, ts in span.items():
                pipe.zrangebyscore(f"{self._p}warn:{phone}", min(ts) - lookback, max(ts), start=0, num=READ_CAP,
                                   withscores=True)
                plan.append(("warn", phone))
            for payer, payee in pairs:
                pipe.sismember(f"{self._p}paid:{payer}", payee)
                plan.append(("paid", (payer, payee)))
        return self._observations(plan, await self._run(pipe))

    async def read_calls(self, calls: Sequence[Call], policy: Policy, now: datetime) -> Observations:
        burst = policy.params(call_burst.ID)
        if burst is None or not calls:
            return Observations()
        pipe = self._redis.pipeline(transaction=False)
        plan: list[Any] = []
        adds: dict[str, dict[str, int]] = defaultdict(dict)
        times: dict[str, list[int]] = defaultdict(list)
        for c in calls:
            if not c.caller.protected:
                adds[c.caller.key][f"{c.callee.key}|{c.event_id}"] = _ms(c.occurred_at)
                times[c.caller.key].append(_ms(c.occurred_at))
        for caller in adds:
            self._window(pipe, plan, f"{self._p}out:{caller}", adds[caller], times[caller],
                         burst.window_seconds * 1000, _ms(now), ("outbound", caller))
            pipe.exists(f"{self._p}auto:{call_burst.ID}|{caller}")
            plan.append(("auto", f"{call_burst.ID}|{caller}"))
        return self._observations(plan, await self._run(pipe))

    @staticmethod
    def _observations(plan: list[Any], replies: list[Any]) -> Observations:
        inflow: dict[str, list[tuple[int, str]]] = {}
        outbound: dict[str, list[tuple[int, str]]] = {}
        warnings: dict[str, list[CallWarning]] = {}
        paid: set[tuple[str, str]] = set()
        auto: set[str] = set()
        for tag, reply in zip(plan, replies):
            if tag is None:
                continue
            kind, key = tag
            if kind in ("inflow", "outbound"):
                points = [(int(score), _text(member).rpartition("|")[0]) for member, score in reply]
                (inflow if kind == "inflow" else outbound)[key] = points
            elif kind == "warn":
                found = []
                for member, score in reply:
                    caller, event_id, why = (_text(member).split("|", 2) + ["", ""])[:3]
                    found.append(CallWarning(int(score), caller, event_id, why))
                warnings[key] = found
            elif kind == "paid" and reply:
                paid.add(key)
            elif kind == "auto" and reply:
                auto.add(key)
        return Observations(inflow=inflow, outbound=outbound, warnings=warnings, paid_before=frozenset(paid),
                            auto_reported=frozenset(auto))

    async def write(self, writes: Sequence[StateWrite]) -> None:
        if not writes:
            return
        pipe = self._redis.pipeline(transaction=False)
        for w in writes:
            if w.kind == "warned":
                key = f"{self._p}warn:{w.key}"
                pipe.zadd(key, {w.member: w.score})
                pipe.expire(key, w.ttl_s)
            elif w.kind == "paid":
                key = f"{self._p}paid:{w.key}"
                pipe.sadd(key, w.member)
                pipe.expire(key, w.ttl_s)
            elif w.kind == "reported":
                pipe.set(f"{self._p}auto:{w.key}", b"1", ex=w.ttl_s)
        await self._run(pipe)
