"""Filing routes of the agency API: report, revoke and renew an identifier.

Each filing is a ``Report`` the API publishes to the reports topic and
acknowledges (202) only once Kafka has it with acks=all; the reports agent
applies it to the index. A report's ``source`` is always the key's agency,
and every filing counts against its key's per-minute limit, so a stolen key
can file only so fast.
"""

# No `from __future__ import annotations`: FastAPI resolves the endpoints' annotations at run time.

import logging
from datetime import datetime, timedelta
from typing import Annotated, Literal

import orjson
from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from sekat.api.auth import Caller, require
from sekat.api.clients import Clients, ClientsDep
from sekat.api.errors import error_responses, field_error
from sekat.api.keys import ApiKey
from sekat.blocklist.filing import file_report
from sekat.errors import InvalidReport
from sekat.expiry import MAX_DAYS, ExpiryPolicy
from sekat.identifiers import mask
from sekat.records import Entry, Report, Status, iso

log = logging.getLogger("sekat.api")
router = APIRouter(tags=["agencies"])

# The limits every filing body shares, stated once; each body adds its own descriptions.
Kind = Literal["phone", "account", "wallet", "proxy", "sender", "url", "domain"]
Value = Annotated[str, Field(min_length=1, max_length=512)]
Bank = Annotated[str | None, Field(max_length=16)]
CaseRef = Annotated[str, Field(max_length=128)]
Reason = Annotated[str, Field(max_length=512)]
Source = Annotated[str | None, Field(max_length=64)]


class LinkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Kind = Field(description="phone, account (needs bank), wallet (PROVIDER:ID), proxy (TYPE:value), sender "
                                   "(SMS sender ID), url or domain")
    value: Value
    bank: Bank = Field(None, description="BIC of the account's bank (accounts only)")


class ReportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Kind = Field(description="phone (E.164 or local), account (needs bank), wallet, proxy, sender (an SMS "
                                   "sender ID), url (a link: one page) or domain (a host and everything under it)")
    value: Value = Field(description="the phone number, the account number, an e-wallet as PROVIDER:ID "
                         "(TNG:0123456789), a DuitNow proxy as TYPE:value (NRIC:900101-14-5678; NRIC, PASSPORT "
                         "or BRN), which is hashed here and never stored or sent in clear, a sender ID, a link "
                         "or a domain")
    bank: Bank = Field(None, description="BIC of the account's bank (accounts only)")
    status: Literal["reported", "confirmed"] = Field("reported", description="confirmed needs the confirm scope")
    case_ref: CaseRef = ""
    reason: Reason = ""
    ttl_days: int | None = Field(None, ge=0, le=MAX_DAYS, description="expire after this many days; 0: no expiry; "
                                 "absent: the expiry policy's days for this status and agency")
    source: Source = Field(None, description="optional; must be the key's agency")
    links: list[LinkIn] = Field([], max_length=20, description="other identifiers of the same scam (mule "
                                "accounts, phone numbers, a DuitNow proxy): a confirmation of any acts on all")


class IdentifierIn(BaseModel):
    """The identifier a renewal or a revocation names: a phone number, an account number with its bank, an
    e-wallet (PROVIDER:ID) or a DuitNow proxy (TYPE:value, hashed here)."""
    model_config = ConfigDict(extra="forbid")
    kind: Kind
    value: Value
    bank: Bank = None


class RenewalIn(IdentifierIn):
    reason: Reason = Field(min_length=1, description="why it must stay listed")
    case_ref: CaseRef = ""
    ttl_days: int | None = Field(None, ge=1, le=MAX_DAYS, description="days from now; absent: the expiry policy's")
    source: Source = None


class RevocationIn(IdentifierIn):
    reason: Reason = Field(min_length=1, description="why the appeal was upheld")
    case_ref: CaseRef = ""
    source: Source = None


class Accepted(BaseModel):
    report_id: str
    key: str
    status: str
    source: str
    reported_at: str
    partition: int
    offset: int


def report_from(clients: Clients, body: ReportIn | RevocationIn | RenewalIn, status: str, key: ApiKey,
                ttl_days: int | None = 0, renewal: bool = False) -> Report:
    """The validated, normalised report ``key`` files with ``body``: 403 for another agency's ``source``, 422
    naming any other field at fault."""
    if body.source is not None and body.source.strip().upper() != key.agency:
        raise field_error(403, "source", f"a key of {key.agency} cannot file for another agency")
    links = [link.model_dump() for link in body.links] if isinstance(body, ReportIn) else []
    try:
        return file_report(body.kind, body.value, status, key.agency, clients.clock(), bank=body.bank,
                           case_ref=body.case_ref, reason=body.reason, ttl_days=ttl_days,
                           filed_by=f"api:{key.key_id}", region=clients.settings.phone_region,
                           protected=clients.protected, links=links, expiry=clients.expiry, renewal=renewal,
                           hasher=clients.proxy_hasher)
    except InvalidReport as exc:
        raise field_error(422, exc.field, str(exc).split(": ", 1)[-1]) from None


async def publish(clients: Clients, report: Report, key: ApiKey) -> Accepted:
    """Publish ``report`` once its key is within its filing limit (else 429); answer where Kafka put it."""
    per_minute = clients.settings.filing_rate_per_minute
    allowed, reset = await clients.allow_filing(key.key_id, per_minute)
    if not allowed:
        log.warning("key %s of %s is over %d filings a minute: refused", key.key_id, key.agency, per_minute)
        raise field_error(429, "X-API-Key", f"at most {per_minute} filings a minute per key; retry later",
                          {"Retry-After": str(reset)})
    meta = await clients.send(clients.settings.topic_reports, orjson.dumps(report.to_json()), report.key.encode(),
                              "Kafka did not acknowledge the report")
    log.info("accepted %s %s on %s:%s by %s (key %s)", report.status.value, report.report_id,
             report.kind, mask(report.value), report.source, key.key_id)
    return Accepted(report_id=report.report_id, key=report.key, status=report.status.value,
                    source=report.source, reported_at=iso(report.reported_at), partition=meta.partition,
                    offset=meta.offset)


def renewal_days(found: Entry, requested: int | None, agency: str, expiry: ExpiryPolicy,
                 now: datetime) -> int:
    """The days a renewal lists ``found`` for from ``now``, or the 409/422 that says why it cannot be renewed."""
    if found.status is Status.REVOKED:
        raise field_error(409, "value", "is revoked; file a new confirmed report to list it again")
    if not found.active_at(now):
        raise field_error(409, "value", "has expired; file a new report to list it again")
    if not found.expires_at:
        raise field_error(409, "value", "does not expire; there is nothing to renew")
    if found.renewals >= expiry.max_renewals:
        raise field_error(409, "renewals", f"already renewed {found.renewals} times "
                                           f"(at most SEKAT_RENEWALS_MAX={expiry.max_renewals})")
    ttl = requested or expiry.days(found.status.value, agency)
    if ttl <= 0:
        raise field_error(422, "ttl_days", f"is required: the expiry policy gives {found.status.value} "
                                           f"reports of {agency} no expiry")
    if now + timedelta(days=ttl) <= datetime.fromisoformat(found.expires_at):
        raise field_error(409, "ttl_days", f"{ttl} days from now would not extend the expiry ({found.expires_at})")
    return ttl


@router.post("/v1/reports", status_code=202, response_model=Accepted,
             responses=error_responses(401, 403, 413, 422, 429, 503))
async def file(body: ReportIn, key: Annotated[ApiKey, Depends(Caller("report"))], clients: ClientsDep) -> Accepted:
    """File a report; acknowledged once Kafka has it (acks=all)."""
    if body.status == "confirmed":
        require(key, "confirm")
    return await publish(clients, report_from(clients, body, body.status, key, body.ttl_days), key)


@router.post("/v1/revocations", status_code=202, response_model=Accepted,
             responses=error_responses(401, 403, 413, 422, 429, 503))
async def revoke(body: RevocationIn, key: Annotated[ApiKey, Depends(Caller("revoke"))],
                 clients: ClientsDep) -> Accepted:
    """Revoke an identifier (appeal upheld): never acted on again unless a newer report confirms it."""
    return await publish(clients, report_from(clients, body, Status.REVOKED.value, key), key)


@router.post("/v1/renewals", status_code=202, response_model=Accepted,
             responses=error_responses(401, 403, 404, 409, 413, 422, 429, 503))
async def renew(body: RenewalIn, key: Annotated[ApiKey, Depends(Caller("confirm"))], clients: ClientsDep) -> Accepted:
    """Renew an entry before it expires: its expiry moves to now + ttl_days (default: the policy's days).

    An authority (scope ``confirm``) may renew one entry at most SEKAT_RENEWALS_MAX times between two
    revocations; each renewal is a report in the entry's history (who, when, why).
    """
    draft = report_from(clients, body, Status.REPORTED.value, key)  # validates and normalises the identifier
    found = await clients.store.get(draft.key)
    if found is None:
        raise field_error(404, "value", "not on the blocklist")
    ttl = renewal_days(found, body.ttl_days, key.agency, clients.expiry, clients.clock())
    return await publish(clients, report_from(clients, body, found.status.value, key, ttl, renewal=True), key)
