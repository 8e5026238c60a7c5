"""Look-up routes of the agency API: one entry for an agency, listed or not for the public.

An identifier is asked about by ``phone``, by ``account`` with ``bank``, by ``wallet`` (``PROVIDER:ID``), by
``proxy`` (``TYPE:value``, an NRIC, passport or business registration number, hashed here before the look-up),
or by ``sender`` (an SMS sender ID), ``url`` or ``domain``. The public check of a ``url`` answers for the link
and for its host and parent domains: someone asking about a link they were sent wants to know whether the
site is listed.
A protected identifier (a bank's own hotline, say) is never listed, so both
routes answer as for an identifier that is not on the blocklist.

The public check answers ``listed`` only for an entry an agency stands behind:
one of the reports keeping it listed (since its last revocation, not yet
expired) was filed by an agency. A rule's automatic ``reported`` entry
(source ``SEKAT-RULE`` or ``SEKAT-FOLLOW``, ``api.keys.RULE_SOURCES``) is a
suspicion the banks act on, not a public finding: answering it would tell a
scammer which of their accounts Sekat has noticed (docs/threat-model.md).

Every agency read names its ``purpose`` (required: 422 without it) and is
audited before it answers: a ``read`` record on ``SEKAT_TOPIC_AUDIT`` (who,
when, the identifier's keyed hash, why, found or not; ``sekat.audit``) that
Kafka must acknowledge, or the read answers 503 and shows nothing.
"""

# No `from __future__ import annotations`: FastAPI resolves the endpoints' annotations at run time.

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from sekat.api.auth import Caller
from sekat.api.clients import ClientsDep
from sekat.api.errors import error_responses, field_error
from sekat.api.feedback import entry_feedback
from sekat.api.keys import RULE_SOURCES, ApiKey
from sekat.api.limits import client_bucket
from sekat.audit import entry_read, purpose_of
from sekat.blocklist.filing import identifier, key_of
from sekat.blocklist.lifecycle import standing
from sekat.blocklist.store import BlocklistStore
from sekat.errors import InvalidReport
from sekat.identifiers import NO_PROXY_HASHER, ProxyHasher, parse_key
from sekat.records import Entry, key_object

router = APIRouter()

MAX_GROUP = 200  # members shown for one linked group

Phone = Annotated[str | None, Query(max_length=64, description="phone number in any common format")]
Account = Annotated[str | None, Query(max_length=64, description="account number; needs bank")]
Bank = Annotated[str | None, Query(max_length=16, description="BIC of the account's bank")]
Wallet = Annotated[str | None, Query(max_length=64, description="e-wallet as PROVIDER:ID, e.g. TNG:0123456789")]
ProxyQ = Annotated[str | None, Query(max_length=64, description=(
    "DuitNow proxy as TYPE:value (NRIC, PASSPORT or BRN), e.g. NRIC:900101-14-5678; hashed, never stored"))]
Purpose = Annotated[str | None, Query(max_length=200, description=(
    "why the entry is read, e.g. a case reference (required; recorded in the audit trail)"))]
Sender = Annotated[str | None, Query(max_length=32, description="SMS sender ID (or use phone for a number)")]
Url = Annotated[str | None, Query(max_length=512, description="a link, as received")]
Domain = Annotated[str | None, Query(max_length=269, description="a domain name")]


class StatusOut(BaseModel):
    listed: bool


class IdentifierOut(BaseModel):
    kind: str = Field(description="phone, account, wallet or proxy")
    value: str = Field(description="normalised: E.164 for a phone, the account number for an account")
    bank: str | None = Field(None, description="BIC8 of the account's bank (accounts only)")


class HistoryItem(BaseModel):
    """One report on the entry: who filed what, when and why."""
    model_config = ConfigDict(extra="allow")
    report_id: str
    reported_at: str
    status: str = Field(description="reported, confirmed or revoked")
    source: str = Field(description="the agency (or rule) that filed it")
    case_ref: str
    reason: str
    ttl_days: int = Field(description="0: no expiry")
    filed_by: str = Field(description="api:{key id}, cli, or the rule that filed it")
    links: list[IdentifierOut] | None = None
    origin: str | None = None
    origin_key: str | None = None
    renewal: bool | None = None


class LinkOut(IdentifierOut):
    key: str
    report_id: str = Field(description="the report on this entry that names the link")
    source: str
    reported_at: str
    via: str = Field(description="for a link learnt through another member: that member's key")


class GroupMember(IdentifierOut):
    key: str
    status: str = Field(description="reported, confirmed, revoked or not listed")
    active: bool


class EntryOut(BaseModel):
    """One entry with its history, links and linked group."""
    model_config = ConfigDict(extra="allow")
    key: str
    status: str = Field(description="reported, confirmed or revoked")
    source: str
    reason: str
    case_ref: str
    report_id: str
    reported_at: str
    expires_at: str = Field(description="empty: never expires")
    sources: list[str]
    report_count: int
    case_refs: list[str]
    first_seen: str
    last_seen: str
    history: list[HistoryItem]
    links: list[LinkOut]
    renewals: int
    summary: dict[str, Any] | None = Field(None, description="the reports older than the history kept, folded")
    active: bool = Field(description="in effect now (not revoked, not expired)")
    group: list[GroupMember] = Field(description="every identifier linked to it, directly or through others")


def lookup_key(phone: str | None, account: str | None, bank: str | None, region: str, wallet: str | None = None,
               proxy: str | None = None, hasher: ProxyHasher | None = None,
               web: dict[str, str | None] | None = None) -> str | None:
    """The index key asked about, or None for a protected identifier; 422 naming the field at fault.

    ``web``: the ``sender``, ``url`` and ``domain`` parameters."""
    given = [(name, value) for name, value in (("phone", phone), ("account", account), ("wallet", wallet),
                                                ("proxy", proxy), *(web or {}).items()) if value is not None]
    if len(given) != 1:
        raise field_error(422, "phone", "give exactly one of phone, account (with bank), wallet, proxy, sender, url "
                                        "or domain")
    kind, value = given[0]
    try:
        bank_code, number = identifier(kind, value, bank if kind == "account" else None, region,
                                       hasher=hasher or NO_PROXY_HASHER)
        return key_of(kind, bank_code, number)
    except InvalidReport as exc:
        if exc.reason == "protected":
            return None
        raise field_error(422, kind if exc.field == "value" else exc.field, str(exc).split(": ", 1)[-1]) from None


def publicly_listed(entry: Entry, now: datetime) -> bool:
    """Whether the public check may say ``entry`` is listed: it is active, and a report keeping it listed (since
    the last revocation, not expired) was filed by an agency rather than by a rule."""
    if not entry.active_at(now):
        return False
    return any(source.upper() not in RULE_SOURCES and (not until or datetime.fromisoformat(until) > now)
               for source, until in standing(entry).items())


async def linked_group(store: BlocklistStore, start: Entry, now: datetime) -> list[dict[str, Any]]:
    """Every identifier linked to ``start``, directly or through others (one MGET per hop)."""
    seen: dict[str, Entry | None] = {start.key: start}
    frontier = [link.key for link in start.links]
    while frontier and len(seen) < MAX_GROUP:
        wanted = [k for k in dict.fromkeys(frontier) if k not in seen][:MAX_GROUP - len(seen)]
        found = await store.lookup_many(wanted)
        frontier = []
        for key in wanted:
            entry = found.get(key)
            seen[key] = entry
            if entry is not None:
                frontier.extend(link.key for link in entry.links)
    return [{**key_object(k), "key": k, "status": e.status.value if e else "not listed",
             "active": bool(e and e.active_at(now))} for k, e in seen.items() if k != start.key]


@router.get("/v1/entries", tags=["agencies"], response_model=EntryOut, response_model_exclude_unset=True,
            responses=error_responses(401, 403, 404, 413, 422, 503))
async def entry(key: Annotated[ApiKey, Depends(Caller("read"))], clients: ClientsDep, phone: Phone = None,
                account: Account = None, bank: Bank = None, wallet: Wallet = None, proxy: ProxyQ = None,
                sender: Sender = None, url: Url = None, domain: Domain = None,
                purpose: Purpose = None) -> dict[str, Any]:
    """One entry with its full history (who filed what, when and why) and institutions' feedback on it; the read
    is audited with its purpose."""
    why = required_purpose(purpose, "this entry is read")
    web = {"sender": sender, "url": url, "domain": domain}
    ident = lookup_key(phone, account, bank, clients.settings.phone_region, wallet, proxy, clients.proxy_hasher,
                       web)
    found = await clients.store.get(ident) if ident is not None else None
    if ident is not None:  # a protected identifier is never listed: nobody's entry was read
        await audit_read(clients, key, ident, why, found is not None)
    if found is None:
        asked = next(n for n, v in (("phone", phone), ("account", account), ("wallet", wallet), ("proxy", proxy),
                                    *web.items()) if v is not None)
        raise field_error(404, asked, "not on the blocklist")
    body = found.to_json()
    body["active"] = found.active_at(clients.clock())
    body["group"] = await linked_group(clients.store, found, clients.clock())
    body.update(await entry_feedback(clients, found.key))
    return body


def required_purpose(purpose: str | None, what: str) -> str:
    """The caller's ``purpose``, stripped; 422 naming it when it is missing or shorter than 3 characters."""
    try:
        return purpose_of(purpose, what)
    except ValueError as exc:
        raise field_error(422, "purpose", f"is required: {exc}") from None


async def audit_read(clients: Any, key: ApiKey, ident: str, purpose: str, found: bool) -> None:
    """The ``read`` audit record, acknowledged by Kafka before the read answers (503 otherwise)."""
    settings = clients.settings
    if not settings.audit_key:
        raise field_error(503, "purpose", "entry reads cannot be audited: SEKAT_AUDIT_KEY is not set")
    record_key, value = entry_read(settings.audit_key, ident, f"api:{key.agency}:{key.key_id}", clients.clock(),
                                   purpose, found)
    await clients.send(settings.topic_audit, value, record_key, "not read: Kafka did not acknowledge the audit record")


@router.get("/v1/status", response_model=StatusOut, tags=["public"], responses=error_responses(413, 422, 429, 503))
async def status(request: Request, clients: ClientsDep, phone: Phone = None, account: Account = None,
                 bank: Bank = None, wallet: Wallet = None, proxy: ProxyQ = None, sender: Sender = None,
                 url: Url = None, domain: Domain = None) -> StatusOut | JSONResponse:
    """Public check: has an agency listed this one number, account, e-wallet, proxy, sender ID, link or domain (a
    link: or its site)? Reveals nothing else."""
    settings = clients.settings
    client = client_bucket(request.client.host if request.client else "unknown")
    allowed, reset = await clients.allow_status_check(client, settings.status_rate_per_minute)
    if not allowed:
        return too_many(f"at most {settings.status_rate_per_minute} status checks a minute from one address", reset)
    allowed, reset = await clients.allow_any_status_check(settings.status_global_rate_per_minute)
    if not allowed:
        return too_many(f"at most {settings.status_global_rate_per_minute} status checks a minute from all "
                        "addresses together", reset)
    ident = lookup_key(phone, account, bank, settings.phone_region, wallet, proxy, clients.proxy_hasher,
                       {"sender": sender, "url": url, "domain": domain})
    if ident is None:
        return StatusOut(listed=False)
    keys = [ident]
    if ident.startswith("url:"):  # the link's site too: its host and parent domains
        keys += [d.key for d in parse_key(ident).domains()]
    found = await clients.store.lookup_many(keys)
    now = clients.clock()
    return StatusOut(listed=any(publicly_listed(e, now) for e in found.values()))


def too_many(limit: str, reset: int) -> JSONResponse:
    """429 for a status check over ``limit``, with ``Retry-After``."""
    return JSONResponse(status_code=429, headers={"Retry-After": str(reset)},
                        content={"detail": {"message": f"{limit}; retry later"}})
