"""Appeals against a listing: the appeal record, how it moves through its stages, and where it is kept.

    received ── an agency acknowledges ──> under_review ─┬─ upheld:   the entry is revoked (api/appeals.py files
                                                          │            the revocation; release commands follow)
                                                          └─ rejected: the appellant may appeal again after
                                                                       SEKAT_APPEAL_REAPPEAL_DAYS

An appeal is routed to the agencies whose reports keep the entry listed (``agencies``). When several did, the
decision follows ``SEKAT_APPEAL_RULE`` (docs/appeals.md):

    own-report  each agency decides for its own report. An uphold is recorded; the appeal is upheld (and the
                entry revoked) once no agency that has not upheld still has a confirmed report standing on the
                entry. A rejection rejects the appeal: that agency's report stands, so the entry stays listed.
    any-agency  the first decision of any of the agencies decides the appeal.

``transition`` functions are pure: they take the appeal, who acts and ``now``, and return the new appeal or
raise ``AppealConflict`` naming why not. Every step is kept in ``events`` (who, with which API key, when, why):
the appeal's audit trail, carried whole in every record on ``sekat.appeals`` (compacted, keyed by appeal id).

Redis (``AppealStore``), every key under the prefix and one hash tag, so a MULTI holds them on a cluster too:

    {prefix}{appeals}:ap-<id>            string: the appeal as JSON (what the topic holds, the token's hash too)
    {prefix}{appeals}:open:<stage>       sorted set: open appeal ids in stage received / under_review, by filed_at
    {prefix}{appeals}:agency:<AGENCY>    sorted set: open appeal ids routed to the agency, by filed_at
    {prefix}{appeals}:on:<identifier>    string: the latest appeal id on the identifier
    {prefix}{appeals}:all:<identifier>   set: every appeal id on the identifier (what an erasure or a purge removes)
    {prefix}{appeals}:decided            sorted set: decided appeal ids, by decided_at (what the purge reads for
                                         SEKAT_RETENTION_APPEALS_DAYS)
    {prefix}{appeals}:lock:<name>        string with an expiry: one writer at a time per appeal or identifier
    {prefix}{appeals}:backfill:decided   string: when the decided appeals Redis held were last all filed under
                                         ``decided`` (``backfill_decided``; appeals decided before that index
                                         existed were not)

The appellant's contact details are personal data: they are stored here and on the topic, shown to the agencies
the appeal is routed to, and never logged (log lines name the appeal id and a masked identifier).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import msgspec
import redis.asyncio as aioredis

from sekat.blocklist.connection import REDIS_DOWN, scan_keys
from sekat.blocklist.lifecycle import known_reports
from sekat.errors import BlocklistUnavailable, SekatError
from sekat.records import Entry, Status, iso

Stage = Literal["received", "under_review", "upheld", "rejected"]
OPEN: tuple[Stage, ...] = ("received", "under_review")
Outcome = Literal["upheld", "rejected"]
LOCK_S = 30  # the longest one decision may hold its appeal (a Kafka send with acks=all, bounded at 10 s, twice)


class AppealConflict(SekatError):
    """The appeal cannot take this step now (already decided, not acknowledged yet, decided by this agency), or
    cannot be filed now: ``reason`` then says why (``open``, or ``rejected`` with ``reappeal_after``)."""

    def __init__(self, field: str, message: str, reason: str = "", reappeal_after: str = "") -> None:
        super().__init__(message)
        self.field = field
        self.reason = reason
        self.reappeal_after = reappeal_after


class Contact(msgspec.Struct, frozen=True, kw_only=True):
    """How to reach the appellant: personal data (module docstring)."""

    name: str
    email: str = ""
    phone: str = ""


class AppealEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One step of an appeal: ``filed`` by the appellant, ``review``, ``upheld`` or ``rejected`` by an agency."""

    action: Literal["filed", "review", "upheld", "rejected"]
    at: str
    by: str  # the agency, or the appellant's kind (person, bank, telco) for ``filed``
    key_id: str = ""  # the agency's API key
    reason: str = ""


class Appeal(msgspec.Struct, frozen=True, kw_only=True):
    appeal_id: str
    identifier: str  # the entry's key: phone:+60..., account:BIC8:number
    status: Stage
    appellant: Literal["person", "bank", "telco"]
    contact: Contact
    grounds: str
    evidence_ref: str
    agencies: tuple[str, ...]
    rule: Literal["own-report", "any-agency"]
    filed_at: str
    acknowledge_by: str
    decide_by: str
    token_sha256: str
    events: tuple[AppealEvent, ...]
    decided_at: str = ""
    reason: str = ""  # the deciding agency's reason
    revocation_id: str = ""  # upheld: the revoking report's id
    reappeal_after: str = ""  # rejected: from when the identifier may be appealed again

    @property
    def open(self) -> bool:
        return self.status in OPEN

    def upheld_by(self) -> set[str]:
        return {e.by for e in self.events if e.action == "upheld"}

    def decided_by(self) -> set[str]:
        return {e.by for e in self.events if e.action in ("upheld", "rejected")}

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = msgspec.to_builtins(self)
        return out

    def for_agency(self) -> dict[str, Any]:
        """What an agency the appeal is routed to sees: all of it but the token's hash."""
        body = self.to_json()
        del body["token_sha256"]
        return body

    def for_appellant(self) -> dict[str, Any]:
        """What the appellant's status check answers: the stage and its dates, no personal data."""
        body: dict[str, Any] = {"appeal_id": self.appeal_id, "status": self.status, "filed_at": self.filed_at,
                                "decide_by": self.decide_by}
        if self.decided_at:
            body["decided_at"] = self.decided_at
        if self.reappeal_after:
            body["reappeal_after"] = self.reappeal_after
        return body


def decode(raw: bytes | str) -> Appeal:
    return msgspec.json.decode(raw, type=Appeal)


def new_appeal_id() -> str:
    return f"ap-{secrets.token_hex(8)}"


def new_token() -> tuple[str, str]:
    """(token given to the appellant once, its SHA-256 kept): 192 random bits, so a fast hash is enough."""
    token = secrets.token_urlsafe(24)
    return token, digest(token)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(appeal: Appeal, token: str) -> bool:
    return hmac.compare_digest(appeal.token_sha256, digest(token))


# -- the stages (pure) -------------------------------------------------------------------------------------------------
def filed(appeal_id: str, identifier: str, agencies: tuple[str, ...], appellant: str, contact: Contact, grounds: str,
          evidence_ref: str, token_sha256: str, rule: str, now: datetime, acknowledge_s: int,
          decide_s: int) -> Appeal:
    """A new appeal, ``received``, with its deadlines counted from ``now``."""
    at = iso(now)
    return Appeal(appeal_id=appeal_id, identifier=identifier, status="received",
                  appellant=appellant, contact=contact, grounds=grounds,  # type: ignore[arg-type]
                  evidence_ref=evidence_ref, agencies=agencies, rule=rule,  # type: ignore[arg-type]
                  filed_at=at, acknowledge_by=iso(now + timedelta(seconds=acknowledge_s)),
                  decide_by=iso(now + timedelta(seconds=decide_s)), token_sha256=token_sha256,
                  events=(AppealEvent(action="filed", at=at, by=appellant),))


def may_file_again(latest: Appeal | None, now: datetime) -> None:
    """Raise ``AppealConflict`` if the identifier's latest appeal is still open, or was rejected less than
    SEKAT_APPEAL_REAPPEAL_DAYS ago."""
    if latest is None:
        return
    if latest.open:
        raise AppealConflict("value", "has an open appeal; its appellant can follow it with the appeal id", "open")
    if latest.status == "rejected" and latest.reappeal_after and now < datetime.fromisoformat(latest.reappeal_after):
        raise AppealConflict("value", f"an appeal on it was rejected; it may be appealed again from "
                                      f"{latest.reappeal_after}", "rejected", latest.reappeal_after)


def acknowledged(appeal: Appeal, agency: str, key_id: str, now: datetime) -> Appeal:
    """``received`` -> ``under_review`` by one of the agencies it is routed to."""
    if appeal.status != "received":
        raise AppealConflict("appeal_id", f"is {appeal.status}, not received")
    event = AppealEvent(action="review", at=iso(now), by=agency, key_id=key_id)
    return msgspec.structs.replace(appeal, status="under_review", events=(*appeal.events, event))


def decided(appeal: Appeal, agency: str, key_id: str, outcome: Outcome, reason: str, confirmed: set[str],
            now: datetime, reappeal_days: int) -> Appeal:
    """The appeal after ``agency`` decides ``outcome``; its status says whether that decided it.

    ``confirmed`` are the agencies whose confirmed reports keep the entry listed now (``confirmed_by``). Under
    ``own-report`` an uphold decides the appeal once no agency outside those that have upheld is among them;
    otherwise it is recorded and the appeal stays under review.
    """
    if appeal.status == "received":
        raise AppealConflict("appeal_id", "is received: acknowledge it (POST .../review) before deciding")
    if not appeal.open:
        raise AppealConflict("appeal_id", f"is already {appeal.status}")
    if agency in appeal.decided_by():
        raise AppealConflict("appeal_id", f"{agency} has already decided it; the other agencies' decisions are "
                                          "awaited")
    at = iso(now)
    events = (*appeal.events, AppealEvent(action=outcome, at=at, by=agency, key_id=key_id, reason=reason))
    if outcome == "rejected":
        return msgspec.structs.replace(appeal, status="rejected", events=events, decided_at=at, reason=reason,
                                       reappeal_after=iso(now + timedelta(days=reappeal_days)))
    standing = confirmed - appeal.upheld_by() - {agency}
    if appeal.rule == "own-report" and standing:
        return msgspec.structs.replace(appeal, events=events)
    return msgspec.structs.replace(appeal, status="upheld", events=events, decided_at=at, reason=reason)


def past_retention(appeal: Appeal, now: datetime, retention_days: int) -> bool:
    """Whether decided ``appeal`` is due for the purge: decided more than ``retention_days`` ago
    (SEKAT_RETENTION_APPEALS_DAYS), and, rejected, past the day its identifier may be appealed again (until
    then it is what refuses an earlier appeal)."""
    if appeal.open or not appeal.decided_at:
        return False
    if datetime.fromisoformat(appeal.decided_at) + timedelta(days=retention_days) > now:
        return False
    return not appeal.reappeal_after or datetime.fromisoformat(appeal.reappeal_after) <= now


def with_revocation(appeal: Appeal, report_id: str) -> Appeal:
    return msgspec.structs.replace(appeal, revocation_id=report_id)


def confirmed_by(entry: Entry, now: datetime) -> set[str]:
    """Sources with a confirmed report keeping ``entry`` listed now: filed since its last revocation, not expired.

    Reports folded into the entry's summary count through the summary's state: the source of the report that
    set its status, when that is ``confirmed``."""
    until: dict[str, str] = {}
    summary = entry.summary
    if summary is not None and summary.status is Status.CONFIRMED:
        held = {s.source: s.until for s in summary.standing}
        if summary.decisive.source in held:
            until[summary.decisive.source] = held[summary.decisive.source]
    for report in known_reports(entry):
        if report.status is Status.REVOKED:
            until = {}
        elif report.status is Status.CONFIRMED:
            ends = iso(report.reported_at + timedelta(days=report.ttl_days)) if report.ttl_days > 0 else ""
            held_until = until.get(report.source)
            until[report.source] = "" if held_until == "" or not ends else max(held_until or "", ends)
    return {source for source, ends in until.items() if not ends or datetime.fromisoformat(ends) > now}


# -- Redis -------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AppealCounts:
    """Open appeals by stage, and those past a deadline (``overdue``: by ``acknowledge`` and by ``decide``)."""

    received: int
    under_review: int
    overdue_acknowledge: int
    overdue_decide: int


class AppealStore:
    def __init__(self, client: aioredis.Redis, prefix: str = "sekat:") -> None:
        self._redis = client
        self._base = f"{prefix}{{appeals}}:"

    def _key(self, *parts: str) -> str:
        return self._base + ":".join(parts)

    async def get(self, appeal_id: str) -> Appeal | None:
        if not appeal_id.startswith("ap-") or len(appeal_id) > 64:
            return None
        raw = await self._call(self._redis.get(self._key(appeal_id)))
        return decode(raw) if raw is not None else None

    async def latest_on(self, identifier: str) -> Appeal | None:
        appeal_id = await self._call(self._redis.get(self._key("on", identifier)))
        return await self.get(appeal_id.decode() if isinstance(appeal_id, bytes) else appeal_id) \
            if appeal_id is not None else None

    async def put(self, appeal: Appeal) -> None:
        """Keep ``appeal`` and file it under its stage, its agencies and its identifier, in one MULTI."""
        score = datetime.fromisoformat(appeal.filed_at).timestamp()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._key(appeal.appeal_id), msgspec.json.encode(appeal))
            pipe.set(self._key("on", appeal.identifier), appeal.appeal_id)
            pipe.sadd(self._key("all", appeal.identifier), appeal.appeal_id)
            for stage in OPEN:
                if appeal.status == stage:
                    pipe.zadd(self._key("open", stage), {appeal.appeal_id: score})
                else:
                    pipe.zrem(self._key("open", stage), appeal.appeal_id)
            for agency in appeal.agencies:
                if appeal.open and agency not in appeal.decided_by():
                    pipe.zadd(self._key("agency", agency), {appeal.appeal_id: score})
                else:
                    pipe.zrem(self._key("agency", agency), appeal.appeal_id)
            if appeal.decided_at:
                pipe.zadd(self._key("decided"), {appeal.appeal_id: datetime.fromisoformat(appeal.decided_at).timestamp()})
            await self._call(pipe.execute())

    async def ids_on(self, identifier: str) -> set[str]:
        """Every appeal id on ``identifier`` that Redis holds."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.smembers(self._key("all", identifier))
            pipe.get(self._key("on", identifier))
            every, latest = await self._call(pipe.execute())
        ids = {i.decode() if isinstance(i, bytes) else i for i in every}
        if latest is not None:
            ids.add(latest.decode() if isinstance(latest, bytes) else latest)
        return ids

    async def forget(self, identifier: str, appeal_ids: set[str]) -> int:
        """Delete ``appeal_ids`` (the identifier's appeals) with their stage and agency index entries and the
        identifier's own keys, in one MULTI (an erasure); the number of appeals Redis held."""
        appeals = [a for a in [await self.get(i) for i in sorted(appeal_ids)] if a is not None]
        agencies = {agency for a in appeals for agency in a.agencies}
        async with self._redis.pipeline(transaction=True) as pipe:
            for appeal_id in appeal_ids:
                pipe.delete(self._key(appeal_id))
                for stage in OPEN:
                    pipe.zrem(self._key("open", stage), appeal_id)
                for agency in agencies:
                    pipe.zrem(self._key("agency", agency), appeal_id)
                pipe.zrem(self._key("decided"), appeal_id)
            pipe.delete(self._key("on", identifier))
            pipe.delete(self._key("all", identifier))
            await self._call(pipe.execute())
        return len(appeals)

    async def decided_before(self, before: float, limit: int) -> list[Appeal]:
        """Up to ``limit`` appeals decided before ``before`` (epoch seconds), the longest decided first; an id
        whose appeal is gone leaves the index."""
        ids = [i.decode() if isinstance(i, bytes) else i for i in
               await self._call(self._redis.zrangebyscore(self._key("decided"), "-inf", before, start=0, num=limit))]
        if not ids:
            return []
        raws = await self._call(self._redis.mget([self._key(i) for i in ids]))
        gone = [i for i, raw in zip(ids, raws) if raw is None]
        if gone:
            await self._call(self._redis.zrem(self._key("decided"), *gone))
        return [decode(raw) for raw in raws if raw is not None]

    async def drop(self, appeal: Appeal) -> bool:
        """Delete decided ``appeal`` (past its retention) and its index entries, in one MULTI; the identifier's
        latest-appeal pointer goes only if it names this appeal. Holds the identifier's lock, as a new filing
        does; False if a filing held it (the next run tries again)."""
        on = self._key("on", appeal.identifier)
        async with self.lock(appeal.identifier) as held:
            if not held:
                return False
            latest = await self._call(self._redis.get(on))
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(self._key(appeal.appeal_id))
                pipe.zrem(self._key("decided"), appeal.appeal_id)
                pipe.srem(self._key("all", appeal.identifier), appeal.appeal_id)
                if latest is not None and (latest.decode() if isinstance(latest, bytes) else latest) == appeal.appeal_id:
                    pipe.delete(on)
                await self._call(pipe.execute())
            return True

    async def backfill_decided(self, now: datetime) -> int | None:
        """File every decided appeal Redis holds under ``decided`` (by when it was decided), unless that was done
        already (``backfill:decided`` set); how many were missing, or None when it was done already.

        Appeals decided before that index existed were never filed under it, so the purge would never find them.
        Each is added only if missing (ZADD NX), so a run cut short and run again, or two runs at once, change
        nothing twice; the mark is set once every appeal was read.
        """
        mark = self._key("backfill", "decided")
        if await self._call(self._redis.get(mark)) is not None:
            return None
        added = 0
        async for batch in scan_keys(self._redis, f"{self._base}ap-*"):
            raws = await self._call(self._redis.mget(batch))
            scores = {a.appeal_id: datetime.fromisoformat(a.decided_at).timestamp()
                      for a in (decode(raw) for raw in raws if raw is not None) if a.decided_at}
            if scores:
                added += int(await self._call(self._redis.zadd(self._key("decided"), scores, nx=True)))
        await self._call(self._redis.set(mark, iso(now)))
        return added

    async def open_for(self, agency: str, limit: int = 500) -> list[Appeal]:
        """The open appeals routed to ``agency`` that it has not decided, oldest first."""
        ids = await self._call(self._redis.zrange(self._key("agency", agency), 0, limit - 1))
        if not ids:
            return []
        raws = await self._call(self._redis.mget([self._key(i.decode() if isinstance(i, bytes) else i)
                                                  for i in ids]))
        return [decode(raw) for raw in raws if raw is not None]

    async def counts(self, now: datetime, acknowledge_s: int, decide_s: int) -> AppealCounts:
        epoch = now.timestamp()
        received, review = self._key("open", "received"), self._key("open", "under_review")
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zcard(received)
            pipe.zcard(review)
            pipe.zcount(received, "-inf", epoch - acknowledge_s)
            pipe.zcount(received, "-inf", epoch - decide_s)
            pipe.zcount(review, "-inf", epoch - decide_s)
            n_received, n_review, late_ack, late_received, late_review = await self._call(pipe.execute())
        return AppealCounts(int(n_received), int(n_review), int(late_ack), int(late_received) + int(late_review))

    @asynccontextmanager
    async def lock(self, name: str) -> AsyncIterator[bool]:
        """Whether this caller holds ``name`` (an appeal id or an identifier) for up to ``LOCK_S``; released on
        exit if held."""
        key, mine = self._key("lock", name), secrets.token_hex(8)
        held = bool(await self._call(self._redis.set(key, mine, nx=True, ex=LOCK_S)))
        try:
            yield held
        finally:
            if held:
                await self._call(self._redis.delete(key))

    @staticmethod
    async def _call(awaitable: Awaitable[Any]) -> Any:
        try:
            return await awaitable
        except REDIS_DOWN as exc:
            raise BlocklistUnavailable(f"appeal store unavailable: {type(exc).__name__}") from exc
