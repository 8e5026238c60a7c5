"""Appeal routes of the agency API: a listed person (or their bank or telco) appeals; the agencies decide.

    POST /v1/appeals                          public: file an appeal on a listed identifier; answers its id and a
                                              token (shown once), rate-limited per client address
    GET  /v1/appeals/{appeal_id}/status       public, with the token in ``X-Appeal-Token``: the stage and its
                                              dates (when rejected, from when it may be appealed again); no
                                              personal data
    GET  /v1/appeals                          scope appeal: the open appeals routed to the key's agency
    POST /v1/appeals/{appeal_id}/review       scope appeal: acknowledge (received -> under_review)
    POST /v1/appeals/{appeal_id}/decision     scope appeal: upheld or rejected, with a reason

Only an identifier the public check answers ``listed`` for can be appealed (the same answer, so filing tells
no one more than ``GET /v1/status``); the appeal goes to the agencies whose reports keep it listed. An upheld
appeal files the revocation through the revocation route's own path (``reports.publish``), so the entry is
revoked with the appeal as its reason and the release sweep sends the release commands. How several agencies'
decisions combine is ``SEKAT_APPEAL_RULE`` (``sekat.blocklist.appeals``, docs/appeals.md).

Each step is written to ``sekat.appeals`` (acks=all) before Redis, so nothing Kafka has no record of takes
effect; one step at a time per appeal (a lock with an expiry), a 409 to a second one meanwhile. Log lines
name the appeal id, the masked identifier and the agency's key; never the contact details or the grounds.
"""

# No `from __future__ import annotations`: FastAPI resolves the endpoints' annotations at run time.

import logging
from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from sekat.api.auth import Caller
from sekat.api.clients import Clients, ClientsDep
from sekat.api.entries import lookup_key, publicly_listed, too_many
from sekat.api.errors import error_responses, field_error
from sekat.api.keys import RULE_SOURCES, ApiKey
from sekat.api.limits import client_bucket
from sekat.api.reports import Bank, Kind, RevocationIn, Value, publish, report_from
from sekat.blocklist.appeals import (Appeal, AppealConflict, AppealStore, Contact, acknowledged, confirmed_by, decided,
                                     filed, may_file_again, new_appeal_id, new_token, token_matches,
                                     with_revocation)
from sekat.blocklist.lifecycle import standing
from sekat.errors import BlocklistUnavailable
from sekat.identifiers import mask
from sekat.records import Entry, Status

log = logging.getLogger("sekat.api")


class FilingRefused(HTTPException):
    """The 409 to a filing on ``value``, with why as a code the public appeal page words: ``not_listed``,
    ``busy`` (another filing on it is in progress), ``open`` or ``rejected`` (``reappeal_after`` says when)."""

    def __init__(self, reason: str, message: str, reappeal_after: str = "") -> None:
        super().__init__(409, detail=field_error(409, "value", message).detail)
        self.reason = reason
        self.reappeal_after = reappeal_after


router = APIRouter()

AppealId = Annotated[str, Field(max_length=64)]
GROUNDS_MAX = 4000


class ContactIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=128)
    email: str = Field("", max_length=254, pattern=r"^$|^[^@\s]+@[^@\s]+\.[^@\s]+$")
    phone: str = Field("", max_length=32)


class AppealIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Kind = Field(description="phone or account (needs bank)")
    value: Value = Field(description="the listed phone number or account number")
    bank: Bank = Field(None, description="BIC of the account's bank (accounts only)")
    appellant: Literal["person", "bank", "telco"] = Field(
        "person", description="the listed person, or their bank or telco filing on their behalf")
    contact: ContactIn = Field(description="how the agencies reach the appellant (an e-mail address or a phone "
                                           "number at least); personal data, shown only to those agencies")
    grounds: str = Field(min_length=1, max_length=GROUNDS_MAX, description="why the listing is wrong")
    evidence_ref: str = Field("", max_length=256, description="a reference to evidence held elsewhere")


class AppealFiled(BaseModel):
    appeal_id: str
    token: str = Field(description="shown once: with the appeal id, it reads the appeal's status")
    status: str
    acknowledge_by: str
    decide_by: str


class AppealStatusOut(BaseModel):
    """What the appellant's status check answers: the stage and its dates, no personal data."""
    appeal_id: str
    status: str = Field(description="received, under_review, upheld or rejected")
    filed_at: str
    decide_by: str
    decided_at: str = ""
    reappeal_after: str = Field("", description="rejected: from when the identifier may be appealed again")


class AppealOut(BaseModel):
    """An appeal as the agencies it is routed to see it (all of it but the token's hash)."""
    model_config = ConfigDict(extra="allow")
    appeal_id: str
    identifier: str
    status: str = Field(description="received, under_review, upheld or rejected")
    agencies: list[str]
    filed_at: str
    acknowledge_by: str
    decide_by: str
    overdue: list[str] = Field([], description="the deadlines it has passed: acknowledge, decide")


class OpenAppealsOut(BaseModel):
    appeals: list[AppealOut]


class AppealStepOut(BaseModel):
    appeal_id: str
    status: str
    revocation_id: str = Field("", description="upheld: the revoking report's id")
    reappeal_after: str = Field("", description="rejected: from when the identifier may be appealed again")
    awaiting: list[str] = Field([], description="still open: the agencies whose decision it awaits")


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcome: Literal["upheld", "rejected"]
    reason: str = Field(min_length=1, max_length=480, description="why; an upheld appeal's revocation carries it")


def reporting_agencies(entry: Entry, now: datetime) -> tuple[str, ...]:
    """The agencies (not the rules' automatic sources) whose reports keep ``entry`` listed now."""
    return tuple(sorted(source for source, until in standing(entry).items()
                        if source.upper() not in RULE_SOURCES and (not until or datetime.fromisoformat(until) > now)))


def masked(identifier: str) -> str:
    kind, _, rest = identifier.partition(":")
    bank, _, number = rest.rpartition(":")
    return f"{kind}:{bank + ':' if bank else ''}{mask(number)}"


async def record(clients: Clients, store: AppealStore, appeal: Appeal) -> None:
    """Write ``appeal`` to its topic (acks=all), then to Redis: what Kafka has not acknowledged never takes effect."""
    await clients.send(clients.settings.topic_appeals, orjson.dumps(appeal.to_json()), appeal.appeal_id.encode(),
                       "Kafka did not acknowledge the appeal")
    await store.put(appeal)


def overdue(appeal: Appeal, now: datetime) -> list[str]:
    """The deadlines ``appeal`` has passed while open: acknowledge (still received), decide."""
    late = []
    if appeal.status == "received" and now > datetime.fromisoformat(appeal.acknowledge_by):
        late.append("acknowledge")
    if appeal.open and now > datetime.fromisoformat(appeal.decide_by):
        late.append("decide")
    return late


@router.post("/v1/appeals", status_code=202, response_model=AppealFiled, tags=["public"],
             responses=error_responses(409, 413, 422, 429, 503))
async def file_appeal(body: AppealIn, request: Request, clients: ClientsDep) -> AppealFiled | JSONResponse:
    """Appeal a listing. Keep the token: with the appeal id it reads the appeal's status."""
    settings = clients.settings
    client = client_bucket(request.client.host if request.client else "unknown")
    allowed, reset = await clients.allow_appeal(client, settings.appeal_rate_per_minute)
    if not allowed:
        return too_many(f"at most {settings.appeal_rate_per_minute} appeals a minute from one address", reset)
    if not body.contact.email and not body.contact.phone:
        raise field_error(422, "contact", "give an e-mail address or a phone number to be reached at")
    ident = lookup_key(body.value if body.kind == "phone" else None,
                       body.value if body.kind == "account" else None, body.bank, settings.phone_region)
    now = clients.clock()
    found = await clients.store.get(ident) if ident is not None else None
    if ident is None or found is None or not publicly_listed(found, now):
        raise FilingRefused("not_listed", "is not listed by an agency; there is nothing to appeal")
    store = clients.appeals
    async with store.lock(ident) as held:
        if not held:
            raise FilingRefused("busy", "an appeal on it is being filed; retry in a moment")
        try:
            may_file_again(await store.latest_on(ident), now)
        except AppealConflict as exc:
            raise FilingRefused(exc.reason, str(exc), exc.reappeal_after) from None
        token, token_sha256 = new_token()
        contact = Contact(name=body.contact.name, email=body.contact.email, phone=body.contact.phone)
        appeal = filed(new_appeal_id(), ident, reporting_agencies(found, now), body.appellant, contact, body.grounds,
                       body.evidence_ref, token_sha256, settings.appeal_rule, now, settings.appeal_acknowledge_s,
                       settings.appeal_decide_s)
        await record(clients, store, appeal)
    log.info("appeal %s filed by a %s on %s, routed to %s", appeal.appeal_id, appeal.appellant, masked(ident),
             ",".join(appeal.agencies))
    return AppealFiled(appeal_id=appeal.appeal_id, token=token, status=appeal.status,
                       acknowledge_by=appeal.acknowledge_by, decide_by=appeal.decide_by)


@router.get("/v1/appeals/{appeal_id}/status", tags=["public"], response_model=AppealStatusOut,
            response_model_exclude_unset=True, responses=error_responses(404, 422, 429, 503))
async def appeal_status(appeal_id: str, request: Request, clients: ClientsDep,
                        x_appeal_token: Annotated[str, Header(max_length=64)] = "") -> Any:
    """An appeal's stage and dates, for the appellant (the token given when it was filed)."""
    settings = clients.settings
    client = client_bucket(request.client.host if request.client else "unknown")
    allowed, reset = await clients.allow_status_check(client, settings.status_rate_per_minute)
    if not allowed:
        return too_many(f"at most {settings.status_rate_per_minute} status checks a minute from one address", reset)
    appeal = await clients.appeals.get(appeal_id)
    if appeal is None or not x_appeal_token or not token_matches(appeal, x_appeal_token):
        raise field_error(404, "appeal_id", "no such appeal, or X-Appeal-Token does not match it")
    return appeal.for_appellant()


@router.get("/v1/appeals", tags=["agencies"], response_model=OpenAppealsOut, response_model_exclude_unset=True,
            responses=error_responses(401, 403, 503))
async def open_appeals(key: Annotated[ApiKey, Depends(Caller("appeal"))], clients: ClientsDep) -> dict[str, Any]:
    """The open appeals routed to this key's agency that it has not decided, oldest first, with the deadlines
    each has passed."""
    now = clients.clock()
    found = await clients.appeals.open_for(key.agency)
    return {"appeals": [{**a.for_agency(), "overdue": overdue(a, now)} for a in found]}


async def routed(store: AppealStore, appeal_id: str, key: ApiKey) -> Appeal:
    """The appeal, if it is routed to the key's agency; else 404 (another agency's appeal is not shown)."""
    appeal = await store.get(appeal_id)
    if appeal is None or key.agency not in appeal.agencies:
        raise field_error(404, "appeal_id", f"no appeal routed to {key.agency} has this id")
    return appeal


@router.post("/v1/appeals/{appeal_id}/review", tags=["agencies"], response_model=AppealStepOut,
             response_model_exclude_unset=True, responses=error_responses(401, 403, 404, 409, 422, 503))
async def review(appeal_id: str, key: Annotated[ApiKey, Depends(Caller("appeal"))],
                 clients: ClientsDep) -> dict[str, Any]:
    """Acknowledge an appeal: it is under review."""
    store = clients.appeals
    async with store.lock(appeal_id) as held:
        if not held:
            raise field_error(409, "appeal_id", "another step of this appeal is being taken; retry in a moment")
        appeal = await routed(store, appeal_id, key)
        try:
            appeal = acknowledged(appeal, key.agency, key.key_id, clients.clock())
        except AppealConflict as exc:
            raise field_error(409, exc.field, str(exc)) from None
        await record(clients, store, appeal)
    log.info("appeal %s under review by %s (key %s)", appeal_id, key.agency, key.key_id)
    return {"appeal_id": appeal.appeal_id, "status": appeal.status}


@router.post("/v1/appeals/{appeal_id}/decision", tags=["agencies"], response_model=AppealStepOut,
             response_model_exclude_unset=True, responses=error_responses(401, 403, 404, 409, 413, 422, 429, 503))
async def decide(appeal_id: str, body: DecisionIn, key: Annotated[ApiKey, Depends(Caller("appeal"))],
                 clients: ClientsDep) -> dict[str, Any]:
    """Uphold or reject an appeal routed to this agency. Upheld: the entry is revoked with the appeal as the
    reason (under SEKAT_APPEAL_RULE=own-report, once no other agency's confirmed report keeps it listed)."""
    store = clients.appeals
    now = clients.clock()
    async with store.lock(appeal_id) as held:
        if not held:
            raise field_error(409, "appeal_id", "another step of this appeal is being taken; retry in a moment")
        appeal = await routed(store, appeal_id, key)
        entry = await clients.store.get(appeal.identifier)
        confirmed = {s for s in confirmed_by(entry, now) if s.upper() not in RULE_SOURCES} if entry else set()
        try:
            appeal = decided(appeal, key.agency, key.key_id, body.outcome, body.reason, confirmed, now,
                             clients.settings.appeal_reappeal_days)
        except AppealConflict as exc:
            raise field_error(409, exc.field, str(exc)) from None
        if appeal.status == "upheld":
            revocation = await publish(clients, report_from(clients, revocation_of(appeal, body.reason),
                                                            Status.REVOKED.value, key), key)
            appeal = with_revocation(appeal, revocation.report_id)
        await record(clients, store, appeal)
    log.info("appeal %s: %s by %s (key %s), now %s", appeal_id, body.outcome, key.agency, key.key_id, appeal.status)
    answer: dict[str, Any] = {"appeal_id": appeal.appeal_id, "status": appeal.status}
    if appeal.revocation_id:
        answer["revocation_id"] = appeal.revocation_id
    if appeal.reappeal_after:
        answer["reappeal_after"] = appeal.reappeal_after
    if appeal.open:
        answer["awaiting"] = sorted(confirmed - appeal.upheld_by())
    return answer


def revocation_of(appeal: Appeal, reason: str) -> RevocationIn:
    """The revocation an upheld ``appeal`` files: on its identifier, the appeal id as the case reference."""
    kind, _, rest = appeal.identifier.partition(":")
    bank, _, value = rest.rpartition(":")
    return RevocationIn(kind=kind, value=value, bank=bank or None,  # type: ignore[arg-type]
                        reason=f"appeal {appeal.appeal_id} upheld: {reason}", case_ref=appeal.appeal_id)


async def refresh_gauges(clients: Clients) -> None:
    """Set the appeal gauges (api/metrics.py) from Redis; left as they were while Redis does not answer."""
    settings = clients.settings
    try:
        counts = await clients.appeals.counts(clients.clock(), settings.appeal_acknowledge_s,
                                                  settings.appeal_decide_s)
    except BlocklistUnavailable:
        return
    metrics = clients.metrics
    metrics.appeals.labels("received").set(counts.received)
    metrics.appeals.labels("under_review").set(counts.under_review)
    metrics.appeals_overdue.labels("acknowledge").set(counts.overdue_acknowledge)
    metrics.appeals_overdue.labels("decide").set(counts.overdue_decide)
