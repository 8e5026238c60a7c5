"""What institutions said about the commands they received, kept beside the entries the commands came from.

Data model (under the configured prefix):

    {prefix}sent:{command_id}        JSON of a ``SentCommand``: the institution it was addressed to, its action,
                                     when it was issued, the entries behind it and the ISO 20022 payment ids it
                                     named; expires SEKAT_FEEDBACK_WINDOW_DAYS after it was written
    {prefix}sent:pay:{id}            command_id of the HOLD_TRANSFER that named payment ``id`` (its UETR,
                                     transaction id or end-to-end id); same expiry
    {prefix}fb:{entry key}           hash command_id -> JSON of the latest feedback on that command (an entry's
                                     feedback history: one line per command, the last word on each)
    {prefix}fb:flag:review:{entry}   JSON: the entry was put into review by false_positive feedback (set once)
    {prefix}fb:flag:victim:{entry}   JSON: a mule account's holder was reported a victim (set once)

Writers: the screening worker, once per batch after its commands are acknowledged (``record_sent``, one
pipeline of SETs; nothing is read on the hot path); the agency API for ``POST /v1/feedback``, and the
worker for a pacs.002 status report, after the feedback record is on SEKAT_TOPIC_FEEDBACK (``add``).
Every command names one key and no pipeline is a transaction, so it runs unchanged on a Redis Cluster.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec
import orjson

from sekat.blocklist.connection import REDIS_DOWN, TIMEOUT_MS, AnyRedis, async_client
from sekat.errors import BlocklistUnavailable

OUTCOMES = ("executed", "not_found", "already_closed", "false_positive", "customer_is_victim",
            "accepted", "rejected", "pending")  # the last three: a bank's pacs.002 on a held payment
PAYMENT_IDS = ("end_to_end_id", "tx_id", "uetr")
# Buckets of the histograms from a command to feedback on it (seconds; the API's and the worker's): seconds when
# an institution's systems act on a webhook, days when a person does. 900 (15 minutes) is what the recording
# rule of commands without feedback reads.
ACT_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400, 259200, 604800)


class SentCommand(msgspec.Struct, frozen=True):
    """A command as feedback needs it: who it was for, what it did, and which entries it acted on."""

    command_id: str
    action: str
    institution: str
    issued_at: str
    entries: tuple[str, ...] = ()
    payment: dict[str, str] = {}  # end_to_end_id / tx_id / uetr it named (ISO 20022 input only)


_DECODE_SENT = msgspec.json.Decoder(SentCommand)
FLAGS = ("review", "victim")


def feedback_keys(prefix: str, key: str) -> tuple[str, ...]:
    """The Redis keys that hold entry ``key``'s feedback and flags: they go when the entry is purged or erased."""
    return (f"{prefix}fb:{key}", *(f"{prefix}fb:flag:{kind}:{key}" for kind in FLAGS))


class FeedbackStore:
    def __init__(self, client: AnyRedis, prefix: str = "sekat:") -> None:
        self._redis = client
        self._sent = f"{prefix}sent:"
        self._fb = f"{prefix}fb:"

    @classmethod
    def from_url(cls, url: str, prefix: str = "sekat:", timeout_ms: int = TIMEOUT_MS) -> "FeedbackStore":
        return cls(async_client(url, timeout_ms), prefix)

    async def close(self) -> None:
        await self._redis.aclose()

    async def _run(self, queue: Any) -> list[Any]:
        try:
            pipe = self._redis.pipeline(transaction=False)
            queue(pipe)
            return list(await pipe.execute())
        except REDIS_DOWN as exc:
            raise BlocklistUnavailable(f"feedback store unavailable: {type(exc).__name__}") from exc

    async def forget_sent(self, key: str) -> int:
        """Delete every ``sent`` record whose command acted on entry ``key`` (and its payments' ids): an erasure's
        part of what feedback keeps. Reads every ``sent`` record (one SCAN), as an operator's command may; the
        purge leaves them to their expiry, which SEKAT_FEEDBACK_WINDOW_DAYS keeps within the retentions."""
        try:
            found = [k async for k in self._redis.scan_iter(match=self._sent + "*", count=1000)
                     if not k.decode().startswith(self._sent + "pay:")]
            doomed: list[str] = []
            for rkey in found:
                raw = await self._redis.get(rkey)
                if raw is None:
                    continue
                sent = _DECODE_SENT.decode(raw)
                if key in sent.entries:
                    doomed += [rkey.decode(), *(f"{self._sent}pay:{v}" for v in sent.payment.values())]
            for rkey in doomed:  # one key a command: as it is on a cluster
                await self._redis.delete(rkey)
            return len(doomed)
        except REDIS_DOWN as exc:
            raise BlocklistUnavailable(f"feedback store failed: {type(exc).__name__}") from exc

    async def held_on(self, key: str) -> dict[bytes, bytes]:
        """The latest feedback record of each command that acted on entry ``key``, by command id (raw JSON)."""
        [raw] = await self._run(lambda pipe: pipe.hgetall(self._fb + key))
        return {(k if isinstance(k, bytes) else k.encode()): (v if isinstance(v, bytes) else v.encode())
                for k, v in raw.items()}

    async def rewrite(self, records: Mapping[bytes, bytes | None]) -> int:
        """Replace each record (by command id) in the feedback history of every entry it still names, where that
        history holds the command (an entry left out of a record keeps its history until it goes itself); how
        many histories were written."""
        written = 0
        for command_id, value in records.items():
            if value is None:
                continue
            entries = [str(e) for e in orjson.loads(value).get("entries", ())]
            held = await self._run(lambda pipe: [pipe.hexists(self._fb + e, command_id) for e in entries])
            mine = [e for e, h in zip(entries, held) if h]
            if mine:
                await self._run(lambda pipe: [pipe.hset(self._fb + e, command_id, value) for e in mine])
                written += len(mine)
        return written

    async def record_sent(self, commands: Iterable[SentCommand], ttl_s: int) -> None:
        """Remember each command's addressee and entries for ``ttl_s`` seconds (one pipeline)."""
        commands = list(commands)
        if not commands:
            return

        def queue(pipe: Any) -> None:
            for c in commands:
                pipe.set(self._sent + c.command_id, msgspec.json.encode(c), ex=ttl_s)
                for value in dict.fromkeys(c.payment.values()):
                    pipe.set(f"{self._sent}pay:{value}", c.command_id, ex=ttl_s)

        await self._run(queue)

    async def sent(self, command_id: str) -> SentCommand | None:
        [raw] = await self._run(lambda pipe: pipe.get(self._sent + command_id))
        return None if raw is None else _DECODE_SENT.decode(raw)

    async def by_payment(self, ids: Sequence[str]) -> SentCommand | None:
        """The command that held the payment named by the first of ``ids`` (most specific first) found, or None."""
        ids = [i for i in dict.fromkeys(ids) if i]
        if not ids:
            return None
        found = await self._run(lambda pipe: [pipe.get(f"{self._sent}pay:{i}") for i in ids])
        command_id = next((c for c in found if c is not None), None)
        return None if command_id is None else await self.sent(command_id.decode())

    async def add(self, feedback: Mapping[str, Any], entries: Sequence[str]) -> bool:
        """Keep ``feedback`` (its ``command_id``'s latest) on each of ``entries``; True if it is the first
        feedback on that command."""
        if not entries:
            return True
        body = orjson.dumps(dict(feedback))
        replies = await self._run(lambda pipe: [pipe.hset(self._fb + key, feedback["command_id"], body)
                                               for key in entries])
        return bool(replies[0])

    async def of_entry(self, key: str) -> list[dict[str, Any]]:
        """The feedback on ``key``'s commands, oldest first."""
        [raw] = await self._run(lambda pipe: pipe.hgetall(self._fb + key))
        return sorted((orjson.loads(v) for v in raw.values()), key=lambda f: (f["received_at"], f["command_id"]))

    async def flag(self, kind: str, key: str, record: Mapping[str, Any]) -> bool:
        """Set the entry's ``kind`` flag (review, victim) unless it is set; True if this call set it."""
        [created] = await self._run(lambda pipe: pipe.set(f"{self._fb}flag:{kind}:{key}", orjson.dumps(dict(record)),
                                                           nx=True))
        return bool(created)

    async def flags(self, key: str) -> dict[str, Any]:
        """The entry's flags by kind (review, victim)."""
        kinds = FLAGS
        raw = await self._run(lambda pipe: [pipe.get(f"{self._fb}flag:{kind}:{key}") for kind in kinds])
        return {kind: orjson.loads(v) for kind, v in zip(kinds, raw) if v is not None}


def false_positive_institutions(history: Iterable[Mapping[str, Any]]) -> set[str]:
    """The institutions whose latest word on one of the entry's commands is ``false_positive``."""
    return {f["institution"] for f in history if f.get("outcome") == "false_positive"}
