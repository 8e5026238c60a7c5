"""The agency HTTP API (``sekat api``): file, revoke, look up; public status check.

    POST /v1/reports        file a report (scope report; status confirmed also needs confirm)
    POST /v1/revocations    revoke an identifier (scope revoke; reason required)
    POST /v1/renewals       renew an entry before it expires (scope confirm; at most SEKAT_RENEWALS_MAX times)
    GET  /v1/entries        one entry with its history, its links and its linked group (scope read)
    GET  /v1/status         public: listed / not listed, rate-limited per client address
    GET  /v1/brake, POST /v1/brake/rearm   the safety brake (brake/routes.py)
    GET  /openapi.json      the OpenAPI document (/docs renders it)

Keys go in the ``X-API-Key`` header. A report's ``source`` is always the
key's agency: a key cannot file for another agency. Reports are acknowledged
(202) only once Kafka has them with acks=all; the reports agent applies them
to the index. Bad requests get a 4xx whose body names the field; Kafka or
Redis being unreachable gives 503. Identifiers are masked in logs, and the
access log (which would show query strings) is off.
"""

# No `from __future__ import annotations`: FastAPI resolves the endpoints' annotations at run time.

import logging
import ssl
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Literal

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, ConfigDict, Field
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException as StarletteHTTPException

from sekat.api.keys import ApiKey, ApiKeyStore
from sekat.blocklist.filing import file_report, identifier
from sekat.blocklist.store import BlocklistStore
from sekat.brake.routes import add_brake_routes
from sekat.errors import BlocklistUnavailable, InvalidReport
from sekat.identifiers import mask
from sekat.records import Entry, Report, Status, iso, key_object
from sekat.settings import Settings

log = logging.getLogger("sekat.api")
Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class LinkIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    kind: Literal["phone", "account"] = Field(description="phone or account (needs bank)")
    value: str = Field(min_length=1, max_length=64)
    bank: str | None = Field(None, max_length=16, description="BIC of the account's bank (accounts only)")


class ReportIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    kind: Literal["phone", "account"] = Field(description="phone (E.164 or local) or account (needs bank)")
    value: str = Field(min_length=1, max_length=64, description="the phone number or account number")
    bank: str | None = Field(None, max_length=16, description="BIC of the account's bank (accounts only)")
    status: Literal["reported", "confirmed"] = Field("reported", description="confirmed needs the confirm scope")
    case_ref: str = Field("", max_length=128)
    reason: str = Field("", max_length=512)
    ttl_days: int | None = Field(None, ge=0, le=3650, description="expire after this many days; 0: no expiry; "
                                 "absent: the expiry policy's days for this status and agency")
    source: str | None = Field(None, max_length=64, description="optional; must be the key's agency")
    links: list[LinkIn] = Field([], max_length=20, description="other identifiers of the same scam (mule "
                                "accounts, phone numbers, a DuitNow proxy): a confirmation of any acts on all")


class RenewalIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    kind: Literal["phone", "account"]
    value: str = Field(min_length=1, max_length=64)
    bank: str | None = Field(None, max_length=16)
    reason: str = Field(min_length=1, max_length=512, description="why it must stay listed")
    case_ref: str = Field("", max_length=128)
    ttl_days: int | None = Field(None, ge=1, le=3650, description="days from now; absent: the expiry policy's")
    source: str | None = Field(None, max_length=64)


class RevocationIn(BaseModel):
    model_config = ConfigDict(extra="ignore")
    kind: Literal["phone", "account"]
    value: str = Field(min_length=1, max_length=64)
    bank: str | None = Field(None, max_length=16)
    reason: str = Field(min_length=1, max_length=512, description="why the appeal was upheld")
    case_ref: str = Field("", max_length=128)
    source: str | None = Field(None, max_length=64)


class Accepted(BaseModel):
    report_id: str
    key: str
    status: str
    source: str
    reported_at: str
    partition: int
    offset: int


class StatusOut(BaseModel):
    listed: bool


def _field_error(status: int, field: str, message: str) -> HTTPException:
    return HTTPException(status, detail={"field": field, "message": f"{field}: {message}"})


class Clients:
    """The API's clients: one Kafka producer (acks=all), the index and the key store on one Redis client."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = BlocklistStore.from_url(settings.redis_url, settings.redis_prefix)
        self.keys = ApiKeyStore(self.store.client, settings.redis_prefix)
        self.protected = settings.protected_keys()
        self._producer: AIOKafkaProducer | None = None

    async def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = AIOKafkaProducer(**self.settings.aiokafka_config(), acks="all", request_timeout_ms=10000,
                                        linger_ms=0)
            try:
                await producer.start()
            except (KafkaError, OSError) as exc:
                await producer.stop()
                raise BlocklistUnavailable(f"Kafka unavailable: {type(exc).__name__}") from exc
            self._producer = producer
        return self._producer

    async def publish(self, report: Report) -> Any:
        producer = await self.producer()
        try:
            return await producer.send_and_wait(self.settings.topic_reports, orjson.dumps(report.to_json()),
                                                key=report.key.encode())
        except (KafkaError, OSError) as exc:
            raise BlocklistUnavailable(f"Kafka did not acknowledge the report: {type(exc).__name__}") from exc

    async def allow_status_check(self, client: str, per_minute: int) -> tuple[bool, int]:
        """Fixed one-minute window per client address: (allowed, seconds until the window resets)."""
        return await self.allow("status", client, per_minute)

    async def allow(self, bucket: str, who: str, per_minute: int) -> tuple[bool, int]:
        """Fixed one-minute window per ``who`` in ``bucket``: (allowed, seconds until the window resets)."""
        window = int(time.time() // 60)
        rkey = f"{self.settings.redis_prefix}rl:{bucket}:{who}:{window}"
        try:
            async with self.store.client.pipeline(transaction=True) as pipe:
                pipe.incr(rkey)
                pipe.expire(rkey, 120)
                count, _ = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise BlocklistUnavailable(f"rate limiter unavailable: {type(exc).__name__}") from exc
        return int(count) <= per_minute, 60 - int(time.time()) % 60

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
        await self.store.close()


MAX_GROUP = 200  # members shown for one linked group


async def linked_group(store: BlocklistStore, start: Entry, now: datetime) -> list[dict[str, Any]]:
    """Every identifier linked to ``start``, directly or through others (one MGET per hop)."""
    seen = {start.key: start}
    frontier = [link.key for link in start.links]
    while frontier and len(seen) < MAX_GROUP:
        wanted = [k for k in dict.fromkeys(frontier) if k not in seen][:MAX_GROUP - len(seen)]
        found = await store.lookup_many(wanted)
        frontier = []
        for key in wanted:
            entry = found.get(key)
            seen[key] = entry  # type: ignore[assignment]
            if entry is not None:
                frontier.extend(link.key for link in entry.links)
    return [{**key_object(k), "key": k, "status": e.status.value if e else "not listed",
             "active": bool(e and e.active_at(now))} for k, e in seen.items() if k != start.key]


def create_api(settings: Settings, clock: Clock = utcnow) -> FastAPI:
    intake = Clients(settings)
    expiry = settings.expiry_policy()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await intake.producer()
        except BlocklistUnavailable as exc:  # start anyway; each report retries and answers 503 meanwhile
            log.warning("%s; reports will answer 503 until Kafka answers", exc)
        yield
        await intake.close()

    app = FastAPI(title="Sekat agency API", version="1", lifespan=lifespan,
                  description="File, revoke and look up blocklist reports; public listed/not-listed check.")
    api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                                  description="per-agency key from `sekat apikey create`")

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "header", "path")]
            errors.append({"field": ".".join(loc) or "body", "message": str(err.get("msg", "invalid"))})
        first = errors[0] if errors else {"field": "body", "message": "invalid request"}
        return JSONResponse(status_code=422, content={"detail": {
            "field": first["field"], "message": f"{first['field']}: {first['message']}", "errors": errors}})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail
        if not isinstance(detail, dict):  # FastAPI's own (e.g. an unparsable body): name the body
            detail = {"field": "body" if exc.status_code < 500 else "", "message": f"body: {detail}"}
        return JSONResponse(status_code=exc.status_code, content={"detail": detail}, headers=exc.headers)

    @app.exception_handler(BlocklistUnavailable)
    async def unavailable(request: Request, exc: BlocklistUnavailable) -> JSONResponse:
        log.warning("answering 503: %s", exc)
        return JSONResponse(status_code=503, content={"detail": {"message": str(exc)}},
                            headers={"Retry-After": "5"})

    async def caller(token: Annotated[str | None, Depends(api_key_header)]) -> ApiKey:
        if not token:
            raise HTTPException(401, detail={"field": "X-API-Key", "message": "X-API-Key: header is required"},
                                headers={"WWW-Authenticate": "ApiKey"})
        key = await intake.keys.verify(token)
        if key is None:
            raise HTTPException(401, detail={"field": "X-API-Key", "message": "X-API-Key: unknown or disabled key"},
                                headers={"WWW-Authenticate": "ApiKey"})
        return key

    def require(key: ApiKey, scope: str) -> None:
        if scope not in key.scopes:
            raise _field_error(403, "X-API-Key", f"this key lacks the '{scope}' scope")

    def as_agency(key: ApiKey, source: str | None) -> str:
        if source is not None and source.strip().upper() != key.agency:
            raise _field_error(403, "source", f"a key of {key.agency} cannot file for another agency")
        return key.agency

    async def publish(report: Report, key: ApiKey) -> Accepted:
        # A stolen key can file only so fast: every filing (report, confirm, revoke) counts against its key.
        allowed, reset = await intake.allow("filing", key.key_id, settings.filing_rate_per_minute)
        if not allowed:
            log.warning("key %s of %s is over %d filings a minute: refused", key.key_id, key.agency,
                        settings.filing_rate_per_minute)
            raise HTTPException(429, headers={"Retry-After": str(reset)}, detail={
                "field": "X-API-Key", "message": f"X-API-Key: at most {settings.filing_rate_per_minute} "
                                                 "filings a minute per key; retry later"})
        meta = await intake.publish(report)
        log.info("accepted %s %s on %s:%s by %s (key %s)", report.status.value, report.report_id,
                 report.kind, mask(report.value), report.source, key.key_id)
        return Accepted(report_id=report.report_id, key=report.key, status=report.status.value,
                        source=report.source, reported_at=iso(report.reported_at), partition=meta.partition,
                        offset=meta.offset)

    def build(body: ReportIn | RevocationIn | RenewalIn, status: str, key: ApiKey, ttl_days: int | None = 0,
              renewal: bool = False) -> Report:
        links = [link.model_dump() for link in body.links] if isinstance(body, ReportIn) else []
        try:
            return file_report(body.kind, body.value, status, as_agency(key, body.source), clock(), bank=body.bank,
                               case_ref=body.case_ref, reason=body.reason, ttl_days=ttl_days,
                               filed_by=f"api:{key.key_id}", region=settings.phone_region,
                               protected=intake.protected, links=links, expiry=expiry, renewal=renewal)
        except InvalidReport as exc:
            raise _field_error(422, exc.field, str(exc).split(": ", 1)[-1]) from None

    @app.post("/v1/reports", status_code=202, response_model=Accepted, tags=["agencies"],
              responses={401: {}, 403: {}, 422: {}, 429: {}, 503: {}})
    async def file(body: ReportIn, key: Annotated[ApiKey, Depends(caller)]) -> Accepted:
        """File a report; acknowledged once Kafka has it (acks=all)."""
        require(key, "report")
        if body.status == "confirmed":
            require(key, "confirm")
        return await publish(build(body, body.status, key, body.ttl_days), key)

    @app.post("/v1/revocations", status_code=202, response_model=Accepted, tags=["agencies"],
              responses={401: {}, 403: {}, 422: {}, 429: {}, 503: {}})
    async def revoke(body: RevocationIn, key: Annotated[ApiKey, Depends(caller)]) -> Accepted:
        """Revoke an identifier (appeal upheld): never acted on again unless a newer report confirms it."""
        require(key, "revoke")
        return await publish(build(body, Status.REVOKED.value, key), key)

    @app.post("/v1/renewals", status_code=202, response_model=Accepted, tags=["agencies"],
              responses={401: {}, 403: {}, 404: {}, 409: {}, 422: {}, 503: {}})
    async def renew(body: RenewalIn, key: Annotated[ApiKey, Depends(caller)]) -> Accepted:
        """Renew an entry before it expires: its expiry moves to now + ttl_days (default: the policy's days).

        An authority (scope ``confirm``) may renew one entry at most SEKAT_RENEWALS_MAX times between two
        revocations; each renewal is a report in the entry's history (who, when, why).
        """
        require(key, "confirm")
        draft = build(body, Status.REPORTED.value, key)  # validates and normalises the identifier
        found = await intake.store.get(draft.key)
        now = clock()
        if found is None:
            raise _field_error(404, "value", "not on the blocklist")
        if found.status is Status.REVOKED:
            raise _field_error(409, "value", "is revoked; file a new confirmed report to list it again")
        if not found.active_at(now):
            raise _field_error(409, "value", "has expired; file a new report to list it again")
        if not found.expires_at:
            raise _field_error(409, "value", "does not expire; there is nothing to renew")
        if found.renewals >= expiry.max_renewals:
            raise _field_error(409, "renewals", f"already renewed {found.renewals} times "
                                                f"(at most SEKAT_RENEWALS_MAX={expiry.max_renewals})")
        ttl = body.ttl_days or expiry.days(found.status.value, key.agency)
        if ttl <= 0:
            raise _field_error(422, "ttl_days", f"is required: the expiry policy gives {found.status.value} "
                                                f"reports of {key.agency} no expiry")
        if now + timedelta(days=ttl) <= datetime.fromisoformat(found.expires_at):
            raise _field_error(409, "ttl_days", f"{ttl} days from now would not extend the expiry "
                                                f"({found.expires_at})")
        return await publish(build(body, found.status.value, key, ttl, renewal=True), key)

    def lookup_key(phone: str | None, account: str | None, bank: str | None) -> str:
        if (phone is None) == (account is None):
            raise _field_error(422, "phone", "give exactly one of phone or account (with bank)")
        try:
            if phone is not None:
                _, number = identifier("phone", phone, None, settings.phone_region)
                return f"phone:{number}"
            bank_code, number = identifier("account", account or "", bank, settings.phone_region)
            return f"account:{bank_code}:{number}"
        except InvalidReport as exc:
            field = "account" if exc.field == "value" and account is not None else \
                "phone" if exc.field == "value" else exc.field
            if exc.reason == "protected":  # a protected identifier is simply never listed
                raise _NotListed() from None
            raise _field_error(422, field, str(exc).split(": ", 1)[-1]) from None

    Phone = Annotated[str | None, Query(max_length=64, description="phone number in any common format")]
    Account = Annotated[str | None, Query(max_length=64, description="account number; needs bank")]
    Bank = Annotated[str | None, Query(max_length=16, description="BIC of the account's bank")]

    @app.get("/v1/entries", tags=["agencies"], responses={401: {}, 403: {}, 404: {}, 422: {}, 503: {}})
    async def entry(key: Annotated[ApiKey, Depends(caller)], phone: Phone = None, account: Account = None,
                    bank: Bank = None) -> dict[str, Any]:
        """One entry with its full history (who filed what, when and why)."""
        require(key, "read")
        try:
            ident = lookup_key(phone, account, bank)
        except _NotListed:
            raise _field_error(404, "phone" if phone is not None else "account", "not on the blocklist") from None
        found = await intake.store.get(ident)
        if found is None:
            raise _field_error(404, "phone" if phone is not None else "account", "not on the blocklist")
        body = found.to_json()
        body["active"] = found.active_at(clock())
        body["group"] = await linked_group(intake.store, found, clock())
        return body

    @app.get("/v1/status", response_model=StatusOut, tags=["public"], responses={422: {}, 429: {}, 503: {}})
    async def status(request: Request, phone: Phone = None, account: Account = None,
                     bank: Bank = None) -> StatusOut | JSONResponse:
        """Public check: is this one number or account listed? Reveals nothing else."""
        client = request.client.host if request.client else "unknown"
        allowed, reset = await intake.allow_status_check(client, settings.status_rate_per_minute)
        if not allowed:
            return JSONResponse(status_code=429, headers={"Retry-After": str(reset)}, content={"detail": {
                "message": f"at most {settings.status_rate_per_minute} status checks a minute; retry later"}})
        try:
            ident = lookup_key(phone, account, bank)
        except _NotListed:
            return StatusOut(listed=False)
        found = await intake.store.get(ident)
        return StatusOut(listed=found is not None and found.active_at(clock()))

    add_brake_routes(app, intake, caller, require, settings, clock)
    app.state.intake = intake
    return app


class _NotListed(Exception):
    """A protected identifier was asked about: it is never listed."""


def serve(settings: Settings) -> None:
    import uvicorn

    uvicorn.run(create_api(settings), host=settings.api_host, port=settings.api_port,
                log_level=settings.log_level.lower(), access_log=False)
